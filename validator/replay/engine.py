"""Replay a parsed ftrace log against the spec's transition relation (Python engine).

The trace is judged on two counts.  Conformance: every observed event must be
a step the design's Next allows from some candidate state.  Safety: the
states the trace reaches must satisfy the safety properties; a property is
reported violated when some candidate state consistent with the trace breaks
it (see `Replay._judge`).

What the trace cannot show is left open as a set of candidate states, and
hidden steps are composed in front of the observed one (as CCF's trace
validation composes actions), limited to the event's own folio: every guard
of an observed action reads only that folio's pages and the VM-wide state.
The hidden steps are the host's unmap/pin/unpin (no probe), the conversion
request (the guest's MapGPA or the VMM's decision), and the truncation that
precedes a free (punch hole or inode eviction; the punch_hole probe fires on
entry, before the zaps it causes, so truncation is taken when the free shows).

Which folio and page an event is about is the planner's (validator/replay/planner.py,
shared with the TLC engine); which steps it stands for is validator/replay/meaning.py's
(the TLC engine has its own, in spec/PoisonTrace.tla): folios appear when they
enter guest_memfd's page cache; events on pfns guest_memfd never held in the
trace are not guest_memfd's and are skipped (counted); a trace with no event
about a folio is inconclusive (validator/replay/evidence.py).  Fault budgets are
unbounded: the trace decides how many faults happen.  The
conversion request variable, which exists for liveness property 7, is
projected away: request and conversion are one composed step.

The candidate set is kept factored, so that the cost of an event does not
depend on how many folios the trace has shown.  A model.State splits into a
VM-wide part G = (vm, tdx, otherTds, fd, convReq) and one part per folio
X_f = (folioLoc[f] and the f's pages of tdxRefs, attr, sept, mirror,
hostMap, hostPin, hwpoison, bad, unreset).  The set is a union of *branches*, each a
product {G} x S_1 x ... x S_n of one VM-wide part and one non-empty set of
parts per folio (`_Branch`).  This is exact, not an approximation:

* every observed step (with its hidden steps) on folio f reads and writes
  only G and X_f (the mirror's actions index pages of f only), except
  KvmGmemBuggyCleanup, which also poisons and unmaps every other folio in
  guest_memfd: a function of each X_h alone, applied to every S_h;
* so a step maps {G} x S_f x (rest) to the union over G' of
  {G'} x S'_f(G') x (rest'), where rest' is rest, or rest mapped folio by
  folio by the cleanup: again a union of products, computed from S_f alone;
* the state properties are a conjunction over folios of conditions on
  (G.tdx, X_f), and of G alone (NoHostAccessToTdPage reads sept, unreset, tdx
  and the folio's host access, and G.otherTds; NoPrivateHostMapping and
  RefcountSound read one folio each; a step sees G in its own view), and
  PoisonContained compares one folio before and after; since every S_h is
  non-empty, "some candidate breaks a property" is "some branch has some
  folio part that breaks it", and only the parts a step changed (or all
  parts of a branch whose tdx changed to or from "off") need a look;
* removeFailures and memErrors are not kept: with unbounded budgets no guard
  reads them, so they never change which step fits (candidate states in a
  verdict show them as null).

Transitions are computed on a one-folio view of the state (the mirror's own
functions, on a Config with one folio) and memoised by (step, G, S_f); sets
of folio parts are interned, so the usual event costs a dictionary lookup.
Folios seen before lost events are dropped: their events are skipped from
then on, and nothing that happens to them can change a verdict (see
`_forget_known_folios`).  validator/replay/reference.py keeps the unfactored
engine, a set of whole states, as the reference the tests compare against.
"""

from __future__ import annotations

from itertools import chain
from typing import Callable, Iterable, NamedTuple, TypeVar

from validator.ftrace import Event, LostMarker
from validator.model import mirror as model
from validator.replay import evidence, meaning
from validator.replay.candidates import (MEMO_LIMIT, NOTES_PER_KIND, PROPERTY_BITS, UNBOUNDED,
                                         _Branch, _changes_others, _Context, _context,
                                         _folio_part, _localize, _view, _vm_part)
from validator.replay.planner import NeedsSurvey, PlanInputError, Planner, SlotPlan, Unrelated
from validator.replay.meaning import Planned
from validator.replay.resolved import Resolved
from validator.replay.steps import _first_reasons, _StepFailed, build_step, host_closure
from validator.replay.verdict import Coverage, Verdict
from validator.replay.vocabulary import (INFORMATIONAL, INFORMATIONAL_RUN, RELEVANT_NAMES,
                                         Observed, observe)

T = TypeVar("T")


class ResolvedLine(NamedTuple):
    """A resolved event with the line it came from: what the TLC engine gets."""
    resolved: Resolved
    line: int
    raw: str                # the traced line
    event: str              # its protocol event name


class Replay:
    """Feed events in order; `result()` gives the verdict."""

    def __init__(self, design: str, added=(), disabled=(), judge: bool = True,
                 raw_of: Callable[[int], str | None] | None = None,
                 gmem_dev: tuple[int, int] | None = None,
                 features: frozenset = model.DEFAULT_FEATURES,
                 slot_plan: SlotPlan | None = None, survey: bool = False):
        self.design = design
        self.features = frozenset(features)     # the spec's Features (a run's, for its traces)
        self.raw_of = raw_of        # line number -> text, for Observed items without raw
        self.judge = judge and not survey   # False: only resolve the events (TLC engine)
        self.survey = survey        # only name the pages of big folios (survey_slots)
        self.added, self.disabled = frozenset(added), frozenset(disabled)
        self.planner = Planner(self._new_folio, self._note, gmem_dev, slot_plan, survey)
        self.verdict = Verdict(design)
        self.lost_at: int | None = None
        self.skipped: dict[str, int] = {}
        self.steps: list[ResolvedLine] = []    # TLC's input, kept when not judging
        self.coverage = Coverage()
        self.done = False
        self._cfg: tuple[int, model.Config] | None = None
        self.branches: list[_Branch] = []      # the candidate set, a union of products
        self._ctx: _Context | None = None
        self._init_part: int | None = None
        self._dropped = 0                      # folios forgotten so far
        self._covered: dict[int, tuple] = {}   # transitions already in self.coverage
        self._notes: dict[str, int] = {}       # notes per kind (see _note)
        self._meanings: dict[Resolved, list[Planned]] = {}     # meaning.steps, remembered
        self._more: list[str] = []

    # ---- the world: folios and pages as the trace reveals them (see planner.py) -------

    @property
    def folios(self) -> list:
        return self.planner.folios

    @property
    def pages_per_folio(self) -> int | None:
        return self.planner.pages_per_folio

    def _config(self, folios: int, pages: int) -> model.Config:
        backing = "buddy" if pages == 1 else "hugetlb"
        return model.Config(self.design, backing, folios=folios, pages_per_folio=pages,
                            max_remove_failures=UNBOUNDED, max_mem_errors=UNBOUNDED,
                            disabled=self.disabled, added=self.added, features=self.features)

    @property
    def cfg(self) -> model.Config | None:
        """The whole configuration so far: one folio per folio the trace showed."""
        if self.pages_per_folio is None:
            return None
        n = len(self.folios)
        if self._cfg is None or self._cfg[0] != n:
            self._cfg = (n, self._config(n, self.pages_per_folio))
        return self._cfg[1]

    def _new_folio(self, pages: int) -> None:
        """The planner found a folio: the candidate set grows by its Init part."""
        if len(self.folios) == 1:
            self._start(pages)
        self._add_folio(pages)

    def _start(self, pages: int) -> None:
        """The first folio: the candidate set becomes Init (of no folio yet), or keeps the
        VM-wide parts the events before any folio reached (see _judge)."""
        if self.judge:
            ctx = self._ctx = _context(self.design, pages, self.added, self.disabled,
                                       self.features)
            gs = [b.g for b in self.branches] or [_vm_part(model.init(ctx.vm_only))]
            self.branches = [_Branch(ctx.g(g), []) for g in dict.fromkeys(gs)]
            self._init_part = ctx.intern(frozenset({_folio_part(model.init(ctx.local))}))

    def _add_folio(self, pages: int) -> None:
        for b in self.branches:
            b.parts.append(self._init_part)

    # ---- feeding -------------------------------------------------------------

    def feed(self, item: Event | Observed | LostMarker) -> bool:
        """Replay one item; return False once a violation is found."""
        if self.done:
            return False
        if type(item) is Observed:
            name = item.protocol
            if name in INFORMATIONAL:   # the most common item: only counted
                self.skipped[name] = self.skipped.get(name, 0) + 1
                return True
            if name == INFORMATIONAL_RUN:
                for name, count in item.fields.items():
                    self.skipped[name] = self.skipped.get(name, 0) + count
                return True
        elif isinstance(item, LostMarker):
            if self.lost_at is None:
                self.lost_at = self.verdict.accepted_prefix
                self.verdict.notes.append(
                    f"events were lost after line {self.lost_at}: folios seen before are not "
                    f"checked from there on")
            self._forget_known_folios()
            return True
        else:
            item = observe(item)
            if item is None:
                return True
            name = item.protocol
            if name in INFORMATIONAL:
                self._skip(name)
                return True
        try:
            resolved = self.planner.resolve(name, item)
        except Unrelated as why:
            self._skip(str(why))
            return True
        if not resolved:
            return True
        verdict = self.verdict
        verdict.events += 1
        if resolved[-1].folio is not None:     # a block's events all name a folio
            verdict.folio_events += 1
        line = item.line_no
        if not self.judge:
            for r in resolved:
                if r.ret and (said := meaning.remark(r, line)) is not None:
                    self._note(*said)
                if not self.survey:
                    self.steps.append(ResolvedLine(r, line, self._raw(item), name))
            return True
        meanings = self._meanings
        for r in resolved:
            if r.ret and (said := meaning.remark(r, line)) is not None:
                self._note(*said)
            planned = meanings.get(r)       # equal events mean the same: computed once
            if planned is None:
                if len(meanings) >= MEMO_LIMIT:
                    meanings.clear()
                planned = meanings[r] = meaning.steps(r)
            for desc, folio in planned:
                self._judge(item, name, desc, folio)
                if self.done:
                    return False
        return True

    def _note(self, kind: str, text: str) -> None:
        """A note per event, the first NOTES_PER_KIND of a kind (memory stays flat)."""
        seen = self._notes.get(kind, 0)
        self._notes[kind] = seen + 1
        if seen < NOTES_PER_KIND:
            self.verdict.notes.append(text)
        elif seen == NOTES_PER_KIND:
            self._more.append(kind)

    def _skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def _forget_known_folios(self) -> None:
        """After lost events nothing is known of the folios seen so far: their
        events are skipped from now on.  Their parts are dropped too: no step
        reads them (steps read their own folio), the cleanup and a tdx change
        can only remove host access and mappings from them, so they can neither
        refuse a step nor break a property, and after lost events no verdict
        shows candidate states."""
        n = len(self.folios)
        self.planner.forget()
        for b in self.branches:
            for h in range(self._dropped, n):
                b.parts[h] = None
        self._dropped = n

    def _judge(self, event: Event, name: str, desc: tuple, folio: int | None) -> None:
        """Take one planned step from every candidate (see the module docstring)."""
        ctx = self._ctx
        if ctx is None:
            # No folio yet: the VM-wide steps before it act on Init's VM-wide part (a
            # one-page view; the first folio sets the real size and keeps what they did).
            self._start(1)
            ctx = self._ctx
            if folio is not None:
                raise AssertionError("a folio's step before the folio")
        if folio is None:
            base, local = None, desc
        else:
            base = folio * self.pages_per_folio
            local = _localize(desc, base)
        if len(self.branches) == 1:
            # The usual case, one product whose VM-wide part the step keeps or changes
            # alone: update it in place.
            b = self.branches[0]
            g = b.g
            gl = g if g[4] is None else self._local_g(g, base)
            part = b.parts[folio] if folio is not None else None
            r = ctx.memo.get((local, gl, part))
            if r is None:
                r = ctx.transition(local, gl, part)
            groups = r[0]
            if len(groups) == 1 and not r[1]:
                gl2, part2 = groups[0]
                if gl2 is gl or not _changes_others(gl, gl2):
                    if id(r) not in self._covered:
                        if len(self._covered) >= MEMO_LIMIT:
                            self._covered.clear()
                        self._covered[id(r)] = r
                        self.coverage.actions |= r[2]
                        self.coverage.refusals |= r[3] | r[4]
                    if gl2 is not gl:
                        b.g = self._global_g(gl2, g, base)
                    if folio is not None:
                        b.parts[folio] = part2
                    self.verdict.accepted_prefix = event.line_no
                    return
        transition = ctx.transition
        results = []
        mask = 0
        alive = False
        effects = False
        for b in self.branches:
            g = b.g
            gl = g if g[4] is None else self._local_g(g, base)
            r = transition(local, gl, b.parts[folio] if folio is not None else None)
            results.append((b, gl, r))
            if r[0]:
                alive = True
                mask |= r[1]
                for gl2, _ in r[0]:
                    if gl2 is not gl and _changes_others(gl, gl2):
                        effects = True
        cov = self.coverage
        for _, _, r in results:
            if alive:
                cov.actions |= r[2]
                cov.refusals |= r[3]
            cov.refusals |= r[4]
        if not alive:
            self._fail(event, name, "step", None, self._reasons(local, folio, base),
                       lambda: self._candidates(folio))
            return
        if mask:
            taken = frozenset().union(*(r[2] for _, _, r in results))
            self._fail_property(event, name, mask, folio, taken)
            return
        new: list[_Branch] = []
        for b, gl, r in results:
            groups = r[0]
            last = len(groups) - 1
            for i, (gl2, part2) in enumerate(groups):
                g2 = b.g if gl2 is gl else self._global_g(gl2, b.g, base)
                nb = b if i == last and not effects else _Branch(g2, list(b.parts))
                nb.g = g2
                if folio is not None:
                    nb.parts[folio] = part2
                if effects and gl2 is not gl and _changes_others(gl, gl2):
                    mask |= self._others(nb, gl, gl2, folio)
                new.append(nb)
        if mask:                    # only with effects: self.branches is untouched
            self._fail_property(event, name, mask, folio)
            return
        self.branches = new if len(new) == 1 else self._merge(new, folio)
        self.verdict.accepted_prefix = event.line_no

    def _others(self, b: _Branch, gl: tuple, gl2: tuple, folio: int | None) -> int:
        """Apply a step's effect on the folios it did not name (see _changes_others)."""
        mask = 0
        other = self._ctx.other
        for h, part in enumerate(b.parts):
            if h != folio and part is not None:
                b.parts[h], broken = other(gl, gl2, part)
                mask |= broken
        return mask

    def _local_g(self, g: tuple, base: int | None) -> tuple:
        """The VM-wide part as the one-folio view of folio `base` sees it: a pending
        conversion of another folio's page becomes page -1 (it blocks requests)."""
        page, to = g[4]
        ppf = self.pages_per_folio
        local = page - base if base is not None and 0 <= page - base < ppf else -1
        return self._ctx.g(g[:4] + ((local, to),))

    def _global_g(self, gl: tuple, g: tuple, base: int | None) -> tuple:
        req = gl[4]
        if req is None:
            return gl
        if req[0] < 0:
            return self._ctx.g(gl[:4] + (g[4],))
        return self._ctx.g(gl[:4] + ((req[0] + base, req[1]),))

    def _merge(self, branches: list[_Branch], folio: int | None) -> list[_Branch]:
        """Join branches with one VM-wide part whose parts differ at most at `folio`
        ({g} x A x R  u  {g} x B x R  =  {g} x (A u B) x R)."""
        out: list[_Branch] = []
        for b in branches:
            for a in out:
                if a.g is not b.g:
                    continue
                if folio is None:
                    if a.parts == b.parts:
                        break
                    continue
                mine = b.parts[folio]
                b.parts[folio] = a.parts[folio]
                same = a.parts == b.parts
                b.parts[folio] = mine
                if same:
                    if mine != a.parts[folio]:
                        sets = self._ctx.sets
                        a.parts[folio] = self._ctx.intern(sets[a.parts[folio]] | sets[mine])
                    break
            else:
                out.append(b)
        return out

    def _fail_property(self, event, name, mask, folio, taken=frozenset()) -> None:
        prop = PROPERTY_BITS[(mask & -mask).bit_length() - 1]
        steps = f" (the steps it may stand for are {', '.join(sorted(taken))})" if taken else ""
        self._fail(event, name, "property", prop,
                   [f"a state the trace may be in after this event breaks {prop}"],
                   lambda: self._candidates(folio), steps)

    def _reasons(self, local: tuple, folio: int | None, base: int | None) -> list[str]:
        """The guards that refused the step, worded with the trace's page numbers."""
        ctx = self._ctx
        step = build_step(local, shown_base=base or 0)
        cfg = ctx.local if folio is not None else ctx.vm_only
        why: list[str] = []
        for b in self.branches:
            gl = b.g if b.g[4] is None else self._local_g(b.g, base)
            xs = sorted(ctx.sets[b.parts[folio]], key=repr) if folio is not None else [None]
            for x in xs:
                s = _view(gl, x)
                closure = host_closure(cfg, s, 0) if x is not None else [s]
                for u in sorted(closure, key=repr):
                    try:
                        step(cfg, u)
                    except _StepFailed as failed:
                        why.extend(failed.guards or [failed.reason])
        return _first_reasons(why)

    def _whole(self, g: tuple, parts: list) -> model.State:
        """The model.State of VM-wide part g and one part per folio."""
        per_page = [tuple(chain.from_iterable(x[i] for x in parts)) for i in range(1, 10)]
        return model.State(tuple(x[0] for x in parts), *per_page[:8], g[0], g[1], g[2], g[3], g[4],
                           None, None, per_page[8])

    def _candidates(self, folio: int | None, limit: int = 8) -> list[dict]:
        """Some candidate states before the failing event (the event's folio varies)."""
        cfg, sets, out = self.cfg, self._ctx.sets, []
        for b in self.branches:
            if any(p is None for p in b.parts):
                continue
            firsts = [min(sets[p], key=repr) for p in b.parts]
            for x in (sorted(sets[b.parts[folio]], key=repr) if folio is not None else [None]):
                parts = list(firsts)
                if x is not None:
                    parts[folio] = x
                out.append(model.to_tla(cfg, self._whole(b.g, parts)))
                if len(out) == limit:
                    return out
        return out

    def candidate_states(self) -> set[model.State]:
        """Every candidate state, expanded (for tests: exponential in general)."""
        from itertools import product
        sets, out = self._ctx.sets if self._ctx else [], set()
        for b in self.branches:
            for parts in product(*(sorted(sets[p], key=repr) for p in b.parts if p is not None)):
                out.add(self._whole(b.g, list(parts)))
        return out

    def _fail(self, event, name, kind, prop, guards, candidates: Callable[[], list],
              detail: str = "") -> None:
        v = self.verdict
        if self.lost_at is not None:
            v.verdict = "inconclusive"
            v.notes.append(f"line {event.line_no}: {name} does not fit, but events were lost")
            self.done = True
            return
        v.verdict, v.kind, v.property = "violation", kind, prop
        v.line, v.event, v.protocol_event = event.line_no, self._raw(event), name
        v.guards = guards
        v.reason = (f"{name} is not a step {self.design} allows: {'; '.join(guards)}"
                    if kind == "step" else f"{prop} is violated after {name}{detail}")
        v.candidates = candidates()
        self.done = True

    def result(self) -> Verdict:
        v = self.verdict
        if v.verdict == "accepted" and self.lost_at is not None:
            v.verdict = "inconclusive"
            v.reason = f"events were lost after line {self.lost_at}"
        v.folios = len(self.folios)
        v.observability = evidence.observability(self.planner, self.skipped)
        if v.verdict == "accepted" and v.folio_events == 0:
            v.verdict = "inconclusive"
            v.reason = evidence.why_no_evidence(self.planner)
        for text in evidence.notes(self.planner):
            v.notes.append(text)
        for kind in self._more:
            v.notes.append(f"{self._notes[kind] - NOTES_PER_KIND} more note(s) like "
                           f"the {kind} ones above")
        self._more = []
        for reason, count in sorted(self.skipped.items()):
            v.notes.append(f"skipped {count} event(s): {reason}")
        return v

    def _raw(self, item) -> str:
        if item.raw is None and self.raw_of is not None:
            return self.raw_of(item.line_no) or ""
        return item.raw or ""


def survey_slots(items: Iterable[Event | Observed | LostMarker], design: str,
                 gmem_dev: tuple[int, int] | None = None,
                 gmem_dev_from: str | None = None) -> SlotPlan:
    """The pages of big folios a trace names (see planner.SlotPlan): its events resolved,
    none judged.  It stops where the replay would stop on bad input."""
    engine = Replay(design, survey=True, gmem_dev=gmem_dev)
    if gmem_dev_from:
        engine.planner.gmem_dev_from = gmem_dev_from
    try:
        _feed_all(engine, items)
    except PlanInputError:
        pass
    return engine.planner.surveyed()


def judged_with_survey(judge: Callable[[SlotPlan | None], T],
                       read_again: Callable[[], Iterable[Event | Observed | LostMarker]],
                       design: str, gmem_dev: tuple[int, int] | None = None,
                       gmem_dev_from: str | None = None) -> T:
    """judge(None), or for a trace of folios bigger than planner.EXACT_PAGES (it raises
    NeedsSurvey): the survey of read_again()'s items, then judge(that SlotPlan).  Either
    engine's judge: both need the plan before the first big folio."""
    try:
        return judge(None)
    except NeedsSurvey:
        pass
    return judge(survey_slots(read_again(), design, gmem_dev, gmem_dev_from))


def replay(items: Iterable[Event | Observed | LostMarker], design: str, added=(), disabled=(),
           coverage: bool = False, raw_of: Callable[[int], str | None] | None = None,
           gmem_dev: tuple[int, int] | None = None, gmem_dev_from: str | None = None,
           features: frozenset = model.DEFAULT_FEATURES,
           slot_plan: SlotPlan | None = None) -> Verdict:
    """Judge a trace; raw_of(line_no) gives the text of Observed items read without it.
    A trace of folios bigger than planner.EXACT_PAGES needs a slot_plan: a list of items
    is surveyed here; an iterator raises NeedsSurvey (survey it, then call again, or use
    judged_with_survey).  The corpus and the report pass lists: their traces are small."""
    def judge(plan: SlotPlan | None) -> Verdict:
        return _replay(items, design, added, disabled, coverage, raw_of, gmem_dev,
                       gmem_dev_from, features, plan)
    if slot_plan is not None or not isinstance(items, (list, tuple)):
        return judge(slot_plan)
    return judged_with_survey(judge, lambda: items, design, gmem_dev, gmem_dev_from)


def _replay(items, design, added, disabled, coverage, raw_of, gmem_dev, gmem_dev_from,
            features, slot_plan) -> Verdict:
    engine = Replay(design, added, disabled, raw_of=raw_of, gmem_dev=gmem_dev,
                    features=features, slot_plan=slot_plan)
    if gmem_dev_from:
        engine.planner.gmem_dev_from = gmem_dev_from
    engine.verdict.stopped_at = _feed_all(engine, items)
    verdict = engine.result()
    if coverage:
        verdict.coverage = engine.coverage.to_json()
    return verdict


def _feed_all(engine: Replay, items: Iterable[Event | Observed | LostMarker]) -> int | None:
    """Feed the items in order until one fails: its line (None: every item fed)."""
    relevant = RELEVANT_NAMES
    for item in items:
        # protocol_of() is None for every other name: skip those without a call
        if type(item) is Event and item.name not in relevant:
            continue
        if not engine.feed(item):
            return item.line_no
    return None
