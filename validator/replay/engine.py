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

import re
import sys
from dataclasses import dataclass, field
from itertools import chain
from typing import Callable, Iterable, NamedTuple

from validator.replay import evidence
from validator.replay import meaning
from validator.model import mirror as model
from validator.ftrace import Event, LostMarker
from validator.ftrace.reader import MARKER_NAMES
from validator.replay.planner import NeedsSurvey, PlanInputError, Planner, SlotPlan, Unrelated
from validator.recording.catalogue import load_catalogue

UNBOUNDED = 1 << 30

# The mapping from trace events to protocol events: the probe catalogue's (one source).
_CATALOGUE = load_catalogue()
UPSTREAM_PROTOCOL = _CATALOGUE.tracepoint_protocols()
PROBE_PROTOCOL = _CATALOGUE.probe_protocols()
# How each probe's printed fields become the fields the planner reads (derive, values, ret).
_NORMALISERS = {s.name: s.normalise for s in _CATALOGUE.probes() if s.needs_normalising}
# The only event names protocol_of() does not map to None (markers: record's own lines).
RELEVANT_NAMES = (frozenset(PROBE_PROTOCOL) | frozenset(name for _, name in UPSTREAM_PROTOCOL)
                  | MARKER_NAMES)
# Events that carry no information the model holds (counted, and shown as observed).
INFORMATIONAL = {"page_fault", "spte_changed", "set_attributes", "set_spte", "host_unmap_range"}
# An Observed that stands for a run of INFORMATIONAL events: fields {protocol: count}
INFORMATIONAL_RUN = "informational run"
MARKER_PREFIX = "poisoncheck "


def protocol_of(event: Event) -> str | None:
    if event.system == "poisoncheck" or (event.probe is not None and event.name in PROBE_PROTOCOL):
        return PROBE_PROTOCOL.get(event.name)
    if event.name in MARKER_NAMES:
        return "marker" if _marker_text(event).startswith(MARKER_PREFIX) else None
    return UPSTREAM_PROTOCOL.get((event.system, event.name))


def _marker_text(event: Event) -> str:
    text = event.fields.get("buf") if event.name == "print" else None
    return (text if isinstance(text, str) else event.payload or "").strip()


class Observed(NamedTuple):
    """What the replay reads of a protocol event (see observe()): small, so that reader
    processes can hand it over cheaply."""

    line_no: int
    raw: str | None          # the traced line; None for INFORMATIONAL events (never shown)
                             # and where Replay's raw_of() finds it
    name: str                # the event's own name (for messages)
    protocol: str            # protocol_of(event)
    fields: dict | None      # the fields plan() reads, where the event has them


# Every field the planner reads.
PLAN_FIELDS = ("pfn", "order", "index", "ret", "start", "end", "to", "major", "minor", "ofs",
               "page")


def observe(event: Event) -> Observed | None:
    """The event as the replay sees it, or None when it is not a protocol event."""
    protocol = protocol_of(event)
    if protocol is None:
        return None
    name = sys.intern(event.name)
    if protocol in INFORMATIONAL:
        return Observed(event.line_no, None, name, protocol, None)
    if protocol == "marker":
        pairs = (word.partition("=") for word in _marker_text(event)[len(MARKER_PREFIX):].split())
        return Observed(event.line_no, event.raw, name, protocol,
                        {key: value for key, eq, value in pairs if eq})
    fields = _fields(event)
    normalise = _NORMALISERS.get(event.name) if event.probe is not None else None
    if normalise is not None:
        fields = normalise(fields)
    return Observed(event.line_no, event.raw, name, protocol,
                    {key: fields[key] for key in PLAN_FIELDS if key in fields})


ReplayInputError = PlanInputError     # the trace cannot be replayed at all (line given); exit 2


@dataclass
class Verdict:
    design: str
    verdict: str = "accepted"            # accepted | violation | inconclusive
    kind: str | None = None              # step | property
    property: str | None = None
    line: int | None = None
    event: str | None = None              # the raw trace line
    protocol_event: str | None = None
    reason: str | None = None
    accepted_prefix: int = 0              # the last line accepted before the verdict
    candidates: list[dict] = field(default_factory=list)   # before the failing event
    guards: list[str] = field(default_factory=list)        # the guards that failed
    notes: list[str] = field(default_factory=list)
    events: int = 0                       # protocol events replayed (steps judged)
    folio_events: int = 0                 # ... of them about a folio guest_memfd allocated
    folios: int = 0                       # folios (pfns) the trace showed in guest_memfd
    observability: dict = field(default_factory=dict)   # see evidence.observability()
    unparsed: int = 0                     # lines of the trace that did not parse
    stopped_at: int | None = None         # the line the replay stopped at (None: the end)
    coverage: dict | None = None          # with coverage asked for: see Coverage.to_json

    def to_json(self) -> dict:
        return {"verdict": self.verdict, "kind": self.kind, "property": self.property,
                "design": self.design, "line": self.line, "event": self.event,
                "protocol_event": self.protocol_event, "reason": self.reason,
                "accepted_prefix": self.accepted_prefix, "guards": self.guards,
                "candidates": self.candidates, "notes": self.notes, "events": self.events,
                "folio_events": self.folio_events, "folios": self.folios,
                "observability": self.observability, "unparsed_lines": self.unparsed,
                **({"coverage": self.coverage} if self.coverage is not None else {})}


class _StepFailed(Exception):
    def __init__(self, reason: str, guards: list[str]):
        super().__init__(reason)
        self.reason, self.guards = reason, guards


Step = Callable[[model.Config, model.State], list[model.State]]

# Coverage: the actions the replay took and the guards that refused a step.
# Set by Replay while it applies a step (replays run one at a time).
_TAKEN: set[str] | None = None


_REFUSED: set[str] | None = None


def _took(name: str) -> None:
    if _TAKEN is not None:
        _TAKEN.add(name)


def _refused_by(guards: list[str]) -> None:
    """Note the named checks behind a refusal the trace shows (coverage)."""
    if _REFUSED is not None:
        _REFUSED.update(m.group(1) for g in guards for m in CHECK_IN_GUARD.finditer(g)
                        if m.group(1) in model.ALL_CHECKS)


CHECK_IN_GUARD = re.compile(r"\b([a-z_]+\.[a-z_]+):")


@dataclass
class Coverage:
    actions: set[str] = field(default_factory=set)       # actions some accepted step took
    refusals: set[str] = field(default_factory=set)      # named checks that refused a step

    def to_json(self) -> dict:
        every = set(model.ACTION_NAMES)
        checks = set(model.ALL_CHECKS)
        return {"actions": sorted(self.actions), "actions_never": sorted(every - self.actions),
                "checks_refused": sorted(self.refusals),
                "checks_never": sorted(checks - self.refusals)}


# ---- the factored candidate set (see the module docstring) --------------------

PROPERTIES = tuple(name for name, _ in model.STATE_PROPERTIES) + ("PoisonContained",)
_POISON_BIT = 1 << (len(PROPERTIES) - 1)
# Descriptor kinds whose first argument is a page, or a folio: the one-folio view
# renumbers them (see _localize).
_PAGE_ARG = frozenset({"map", "aug_busy", "remove_ok", "remove_failed", "host_fault",
                       "host_fault_refused", "guest_fault_refused", "memory_failure"})
_FOLIO_ARG = frozenset({"alloc", "in_gmem", "gmem_free", "hugetlb_free", "page_free",
                        "page_alloc", "reuse", "claim_lapsed", "truncate", "free_observed"})
MEMO_LIMIT = 50_000      # transitions remembered per configuration (then forgotten at once)
NOTES_PER_KIND = 100     # notes of one kind kept in a verdict (the rest are counted)


def _localize(desc: tuple, base: int) -> tuple:
    """A descriptor of the whole state as the same step on the one-folio view."""
    kind = desc[0]
    if kind in _PAGE_ARG:
        return (kind, desc[1] - base)
    if kind in _FOLIO_ARG:
        return (kind, 0)
    if kind == "convert":
        return (kind, desc[1] - base, desc[2])
    if kind == "convert_refused":
        return (kind, tuple(p - base for p in desc[1]), desc[2])
    return desc


def _view(g: tuple, x: tuple | None) -> model.State:
    """The one-folio state of VM-wide part g and folio part x (None: no folio)."""
    if x is None:
        return model.State((), (), (), (), (), (), (), (), (), g[0], g[1], g[2], g[3], g[4], 0, 0,
                           ())
    return model.State((x[0],), x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8],
                       g[0], g[1], g[2], g[3], g[4], 0, 0, x[9])


def _vm_part(t: model.State) -> tuple:
    return (t.vm, t.tdx, t.otherTds, t.fd, t.convReq)


def _folio_part(t: model.State) -> tuple:
    return (t.folioLoc[0], t.tdxRefs, t.attr, t.sept, t.mirror, t.hostMap, t.hostPin, t.hwpoison,
            t.bad, t.unreset)


def _broken(cfg: model.Config, pre: model.State, t: model.State) -> int:
    """The properties (bits in PROPERTIES order) the step pre -> t breaks."""
    mask = 0
    for bit, (_, holds) in enumerate(model.STATE_PROPERTIES):
        if not holds(cfg, t):
            mask |= 1 << bit
    if not model.poison_contained_step(cfg, pre, t):
        mask |= _POISON_BIT
    return mask


def _checks_in(why: list[str]) -> frozenset:
    return frozenset(m.group(1) for w in why for m in CHECK_IN_GUARD.finditer(w)
                     if m.group(1) in model.ALL_CHECKS)


def _changes_others(gl: tuple, gl2: tuple) -> bool:
    """Whether a step from VM-wide part gl to gl2 touches the other folios: the
    deferred cleanup (fd bugged -> cleaned) poisons and unmaps each of them, and
    a change of tdx to or from "off" changes what NoHostAccessToTdPage says of them."""
    return (gl[3] == "bugged" and gl2[3] == "cleaned") or ((gl[1] == "off") != (gl2[1] == "off"))


class _Branch:
    """{g} x S_0 x ... x S_n: `parts[f]` is the id of S_f (None: forgotten folio)."""
    __slots__ = ("g", "parts")

    def __init__(self, g: tuple, parts: list):
        self.g, self.parts = g, parts


class _Context:
    """What the one-folio view of a configuration computes, shared by every replay
    of that configuration: interned VM-wide parts and sets of folio parts, and the
    memoised transitions."""

    def __init__(self, local: model.Config, vm_only: model.Config):
        self.local, self.vm_only = local, vm_only
        self.sets: list[frozenset] = []
        self.set_ids: dict[frozenset, int] = {}
        self.gs: dict[tuple, tuple] = {}
        self.memo: dict[tuple, tuple] = {}
        self.others: dict[tuple, tuple] = {}
        self.steps: dict[tuple, Step] = {}

    def intern(self, parts: frozenset) -> int:
        i = self.set_ids.get(parts)
        if i is None:
            i = self.set_ids[parts] = len(self.sets)
            self.sets.append(parts)
        return i

    def g(self, g: tuple) -> tuple:
        return self.gs.setdefault(g, g)

    def transition(self, local: tuple, gl: tuple, part: int | None) -> tuple:
        """The step `local` from {gl} x S_part, hidden steps on the folio first:
        (((gl', part'), ...) grouped by gl', broken-property bits, actions taken,
        checks that refused, checks named by failed guards)."""
        key = (local, gl, part)
        hit = self.memo.get(key)
        if hit is not None:
            return hit
        cfg = self.local if part is not None else self.vm_only
        step = self.steps.get(local)
        if step is None:
            step = self.steps[local] = build_step(local)
        global _TAKEN, _REFUSED
        _TAKEN, _REFUSED = taken, refused = set(), set()
        groups: dict[tuple, set] = {}
        why: list[str] = []
        mask = 0
        try:
            for x in (self.sets[part] if part is not None else (None,)):
                s = _view(gl, x)
                for u in (host_closure(cfg, s, 0) if x is not None else (s,)):
                    try:
                        pairs = step(cfg, u)
                    except _StepFailed as failed:
                        why.extend(failed.guards or [failed.reason])
                        continue
                    for pre, t in pairs:
                        groups.setdefault(self.g(_vm_part(t)), set()).add(
                            _folio_part(t) if x is not None else None)
                        mask |= _broken(cfg, pre, t)
        finally:
            _TAKEN = _REFUSED = None
        result = (tuple((g2, self.intern(frozenset(xs)) if part is not None else None)
                        for g2, xs in groups.items()),
                  mask, frozenset(taken), frozenset(refused), _checks_in(why))
        if len(self.memo) >= MEMO_LIMIT:
            self.memo.clear()
        self.memo[key] = result
        return result

    def other(self, gl: tuple, gl2: tuple, part: int) -> tuple[int, int]:
        """S_h of a folio the step did not name, after the step took gl to gl2
        (see _changes_others): (new part id, broken-property bits)."""
        gl, gl2 = gl[:4] + (None,), gl2[:4] + (None,)     # no guard here reads convReq
        key = (gl, gl2, part)
        hit = self.others.get(key)
        if hit is not None:
            return hit
        cleanup = gl[3] == "bugged" and gl2[3] == "cleaned"
        xs, mask = set(), 0
        for x in self.sets[part]:
            s = _view(gl, x)
            t = model.KvmGmemBuggyCleanup(self.local, s) if cleanup else s
            x2 = _folio_part(t)
            xs.add(x2)
            mask |= _broken(self.local, s, _view(gl2, x2))
        result = self.others[key] = (self.intern(frozenset(xs)), mask)
        return result


_CONTEXTS: dict[tuple, _Context] = {}


def _context(design: str, pages: int, added: frozenset, disabled: frozenset,
             features: frozenset = model.DEFAULT_FEATURES) -> _Context:
    key = (design, pages, added, disabled, features)
    ctx = _CONTEXTS.get(key)
    if ctx is None:
        make = lambda folios: model.Config(  # noqa: E731
            design, "buddy" if pages == 1 else "hugetlb", folios=folios, pages_per_folio=pages,
            max_remove_failures=UNBOUNDED, max_mem_errors=UNBOUNDED, disabled=disabled,
            added=added, features=features)
        ctx = _CONTEXTS[key] = _Context(make(1), make(0))
    return ctx


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
        # (Resolved, line, raw, event): TLC's input, kept when not judging
        self.steps: list[tuple] = []
        self.coverage = Coverage()
        self.done = False
        self._cfg: tuple[int, model.Config] | None = None
        self.branches: list[_Branch] = []      # the candidate set, a union of products
        self._ctx: _Context | None = None
        self._init_part: int | None = None
        self._dropped = 0                      # folios forgotten so far
        self._covered: dict[int, tuple] = {}   # transitions already in self.coverage
        self._notes: dict[str, int] = {}       # notes per kind (see _note)
        self._meanings: dict = {}              # id(Resolved) -> (it, meaning.steps(it))
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
        if resolved:
            verdict = self.verdict
            verdict.events += 1
            if resolved[-1].folio is not None:     # a block's events all name a folio
                verdict.folio_events += 1
        for r in resolved:
            if r.ret and (said := meaning.remark(r, item.line_no)) is not None:
                self._note(*said)
            if not self.judge:
                if not self.survey:
                    self.steps.append((r, item.line_no, self._raw(item), name))
                continue
            known = self._meanings.get(id(r))   # the planner interns equal events
            if known is None or known[0] is not r:
                if len(self._meanings) >= MEMO_LIMIT:
                    self._meanings.clear()
                known = self._meanings[id(r)] = (r, meaning.steps(r))
            for desc, folio in known[1]:
                self._judge(item, name, desc, folio)
                if self.done:
                    return False
        return not self.done

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
        prop = PROPERTIES[(mask & -mask).bit_length() - 1]
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


DESIGN_WHAT = {"tdx_remove_failed.mark_fd_bugged": "marks the fd bugged",
               "tdx_remove_failed.buggy_shutdown": "shuts the TDX module down",
               "tdx_remove_failed.set_hwpoison": "sets PG_hwpoison"}


def build_step(desc: tuple, shown_base: int = 0) -> Step:
    """The Python meaning of a protocol-step descriptor (the TLC engine has its own).
    `shown_base` is added to page numbers in messages (the one-folio view's pages)."""
    kind, *args = desc
    if kind == "stay":
        return _stay
    if kind == "alloc":
        return _action(model.KvmGmemAllocFolio, *args)
    if kind == "map":
        return _action(model.KvmTdpMapPrivate, *args)
    if kind == "aug_busy":          # only FolioRef's reference makes it a step
        return _either(_action(model.TdxAugBusy, *args),
                       _observe(lambda c, s: c.design != "FolioRef",
                                "AUG -EBUSY changes nothing without TDX's reference"))
    if kind == "remove_ok":
        return _action(model.TdxSeptRemoveOk, *args)
    if kind == "remove_failed":
        return _either(_with_shutdown(_action(model.TdxSeptRemoveFailed, *args)),
                       _action(model.TdxSeptRemoveAfterShutdown, *args))
    if kind == "host_fault":
        return _action(model.KvmGmemHostFault, *args)
    if kind == "host_fault_refused":
        return _refusal(model.KvmGmemHostFault, *args)
    if kind == "guest_fault_refused":
        return _refusal(model.KvmTdpMapPrivate, *args)
    if kind == "hkid_release":
        return _action(model.TdxReleaseHkid)
    if kind == "design":
        return _design_check(args[0], DESIGN_WHAT[args[0]])
    if kind == "in_gmem":
        (f,) = args
        return _observe(lambda c, s: s.folioLoc[f] == "gmem",
                        "memory_failure() reached guest_memfd: the folio is in its page cache")
    if kind == "memory_failure":
        (p,) = args
        return _either(_action(model.MemoryFailure, p), _action(model.KvmGmemBuggyCleanup),
                       _observe(lambda c, s: s.bad[p], "a repeated report of a poisoned page"))
    if kind == "gmem_free":
        return _truncate_then_free(*args)
    if kind == "hugetlb_free":
        (f,) = args
        return _either(_truncate_then_free(f, expect="pool"), _action(model.HostUserFree, f),
                       _observe(lambda c, s: s.folioLoc[f] == "pool",
                                "free_huge_folio(): the folio goes back to the pool"))
    if kind == "page_free":
        (f,) = args
        return _either(_truncate_then_free(f), _action(model.HostUserFree, f),
                       _observe(lambda c, s: s.folioLoc[f] in ("pool", "leaked"),
                                "the page was already freed"))
    if kind == "page_alloc":
        # Another user's allocation, or guest_memfd's own: a claim the planner holds the
        # trace to (a page-cache add must follow, else "claim_lapsed").
        (f,) = args
        return _either(_action(model.AllocatorReuse, f),
                       _observe(lambda c, s: model.may_hand_out(c, s, f),
                                "the allocator may hand the folio out (guest_memfd's own "
                                "allocation)"))
    if kind == "reuse":
        return _action(model.AllocatorReuse, *args)
    if kind == "claim_lapsed":
        (f,) = args
        return _observe(lambda c, s: s.folioLoc[f] != "pool",
                        "no page-cache add followed the allocation, so another user has it")
    if kind == "truncate":
        (f,) = args
        return _either(_action(model.KvmGmemPunchHole, f), _action(model.KvmGmemEvictInode, f))
    if kind == "free_observed":
        # The page cache is observed: no hidden truncation before the free.
        (f,) = args
        return _either(_action(model.FreeFolio, f), _action(model.HostUserFree, f))
    if kind == "convert":
        p, to = args
        return _convert_done([p], to)
    if kind == "convert_refused":
        pages, to = args
        return _convert_refused(list(pages), to, shown_base)
    raise AssertionError(kind)


def _fields(ev: Event):
    """The event's fields as a dict when the reader decodes them lazily (the Mapping
    interface costs a Python call per key; the replay reads several keys per event)."""
    fields = ev.fields
    decoded = getattr(fields, "_decoded", None)     # validator.ftrace.decoders._Lazy
    return decoded() if decoded is not None else fields


def _first_reasons(why: list[str]) -> list[str]:
    seen = []
    for reason in why:
        if reason not in seen:
            seen.append(reason)
    return seen[:6]


# ---- step builders: each maps (cfg, state) to (pre, post) pairs ----------------
# `pre` is the state right before the observed action (after any hidden steps),
# `post` the state after it; PoisonContained is judged on these pairs.

def _stay(cfg, s):
    return [(s, s)]


def _action(fn, *args) -> Step:
    def step(cfg, s):
        why: list[str] = []
        t = fn(cfg, s, *args, why)
        if t is None:
            raise _StepFailed(f"{fn.__name__}: guard false", [f"{fn.__name__}: {w}" for w in why])
        _took(fn.__name__)
        return [(s, t)]
    return step


def _either(*steps: Step) -> Step:
    def step(cfg, s):
        out, why = [], []
        for alternative in steps:
            try:
                out.extend(alternative(cfg, s))
            except _StepFailed as failed:
                why.extend(failed.guards)
        if not out:
            raise _StepFailed("no alternative fits", why)
        return out
    return step


def _with_shutdown(inner: Step) -> Step:
    """inner, then the rest of a buggy shutdown it started (no probe shows it): the
    failing thread finishes tdx_buggy_shutdown() before it returns, and a CPU may enter
    another TD between its WBINVD and the flag."""
    def step(cfg, s):
        out = []
        for pre, t in inner(cfg, s):
            out.append((pre, t))
            other = model.OtherTdSeamcall(cfg, t)
            if other is not None:
                _took("OtherTdSeamcall")
            for u in (t, other) if other is not None else (t,):
                done = model.TdxShutdownFlag(cfg, u)
                if done is not None:
                    _took("TdxShutdownFlag")
                    out.append((pre, done))
        return out
    return step


def _refusal(fn, *args) -> Step:
    """The kernel refused the step: nothing changes.  A refusal for a reason the
    model does not hold is allowed too; for coverage, note the check that refuses."""
    def step(cfg, s):
        why: list[str] = []
        if fn(cfg, s, *args, why) is None:
            _refused_by(why)
        return [(s, s)]
    return step


def _observe(pred, what: str) -> Step:
    def step(cfg, s):
        if not pred(cfg, s):
            raise _StepFailed(what, [f"expected: {what}"])
        return [(s, s)]
    return step


def _design_check(check: str, what: str) -> Step:
    def step(cfg, s):
        if not cfg.on(check):
            raise _StepFailed(what, [f"{cfg.design} never {what} ({check} is off)"])
        return [(s, s)]
    return step


def host_closure(cfg, s, folio) -> list[model.State]:
    """s and every state the hidden host steps (unmap, pin, unpin) reach on the folio."""
    pages = [p for p in cfg.pages_of(folio) if s.hostMap[p] or s.hostPin[p]]
    if not pages:
        return [s]
    seen, todo = {s}, [s]
    while todo:
        u = todo.pop()
        for p in pages:
            for fn in (model.HostUnmap, model.HostGup, model.HostUnpin):
                t = fn(cfg, u, p)
                if t is not None:
                    _took(fn.__name__)
                if t is not None and t not in seen:
                    seen.add(t)
                    todo.append(t)
    return list(seen)


def _truncate_then_free(folio, expect: str | None = None) -> Step:
    """The last folio_put; truncation (punch hole or eviction) may be hidden before it."""
    def step(cfg, s):
        out, why = [], []
        starts = [s]
        if s.folioLoc[folio] == "gmem":
            starts = []
            for truncate in (model.KvmGmemPunchHole, model.KvmGmemEvictInode):
                w: list[str] = []
                t = truncate(cfg, s, folio, w)
                if t is not None:
                    starts.append(t)
                    _took(truncate.__name__)
                why.extend(f"{truncate.__name__}: {x}" for x in w)
        for u in starts:
            w = []
            t = model.FreeFolio(cfg, u, folio, w)
            if t is not None and (expect is None or t.folioLoc[folio] == expect):
                out.append((u, t))
                _took("FreeFolio")
            elif t is not None:
                why.append(f"FreeFolio: {cfg.design} keeps the folio out ({t.folioLoc[folio]}),"
                           f" but the trace shows it going back to the {expect}")
            why.extend(f"FreeFolio: {x}" for x in w)
        if not out:
            raise _StepFailed("the folio cannot be freed here", why)
        return out
    return step


def _requested(cfg, s, p, to, why) -> model.State | None:
    """The state with a conversion of p to `to` pending (hidden request if needed)."""
    if s.convReq == (p, to):
        return s
    return model.VmmConvertRequest(cfg, s, p, to, why)


def _convert_done(pages, to) -> Step:
    convert = model.KvmGmemConvertPrivate if to == "private" else model.KvmGmemConvertShared

    def step(cfg, s):
        current = [(s, s)]
        for p in pages:
            nxt, why = [], []
            for _, u in current:
                if u.attr[p] == to and u.convReq is None:
                    nxt.append((u, u))
                    continue
                w: list[str] = []
                r = _requested(cfg, u, p, to, w)
                t = convert(cfg, r, w) if r is not None else None
                if t is not None and t.convReq is None:
                    nxt.append((r, t))
                    _took(convert.__name__)
                    if r is not u:
                        _took("VmmConvertRequest")
                elif t is not None:
                    why.append(f"{convert.__name__}: the refcount check refuses (-EAGAIN)")
                why.extend(f"{convert.__name__}: {x}" for x in w)
            if not nxt:
                raise _StepFailed("conversion", why)
            current = nxt
        return current
    return step


def _convert_refused(pages, to, shown_base: int = 0) -> Step:
    """-EAGAIN on the first page of the range not yet converted; the request stays."""
    convert = model.KvmGmemConvertPrivate if to == "private" else model.KvmGmemConvertShared

    def step(cfg, s):
        todo = [p for p in pages if s.attr[p] != to]
        if not todo:
            raise _StepFailed("conversion refused", ["every page is already " + to])
        p, why = todo[0], []
        r = _requested(cfg, s, p, to, why)
        if r is None:
            raise _StepFailed("conversion refused", [f"VmmConvertRequest: {x}" for x in why])
        t = convert(cfg, r, why)
        if r is not s:
            _took("VmmConvertRequest")
        if to == "private" and t is not None and t.convReq is not None:
            _took(convert.__name__)
            _refused_by(["convert.safe_refcount:" if not model.page_refs_safe(r, p)
                         else "restructure.safe_refcount:"])
            return [(r, t)]                   # refused after unmap_mapping_pages()
        if to == "shared" and t is None:
            _refused_by(why)
            return [(r, r)]
        raise _StepFailed("conversion refused", why or [
            f"{convert.__name__}: the refcount checks let page {p + shown_base} convert"])
    return step


def survey_slots(items: Iterable[Event | Observed | LostMarker], design: str,
                 gmem_dev: tuple[int, int] | None = None,
                 gmem_dev_from: str | None = None) -> SlotPlan:
    """The pages of big folios a trace names (see planner.SlotPlan): its events resolved,
    none judged.  It stops where the replay would stop on bad input."""
    engine = Replay(design, survey=True, gmem_dev=gmem_dev)
    if gmem_dev_from:
        engine.planner.gmem_dev_from = gmem_dev_from
    relevant = RELEVANT_NAMES
    try:
        for item in items:
            if type(item) is Event and item.name not in relevant:
                continue
            engine.feed(item)
    except PlanInputError:
        pass
    return engine.planner.surveyed()


def replay(items: Iterable[Event | Observed | LostMarker], design: str, added=(), disabled=(),
           coverage: bool = False, raw_of: Callable[[int], str | None] | None = None,
           gmem_dev: tuple[int, int] | None = None, gmem_dev_from: str | None = None,
           features: frozenset = model.DEFAULT_FEATURES,
           slot_plan: SlotPlan | None = None) -> Verdict:
    """Judge a trace; raw_of(line_no) gives the text of Observed items read without it.
    A trace of folios bigger than planner.EXACT_PAGES needs a slot_plan: a list of items
    is surveyed here; an iterator raises NeedsSurvey (survey it, then call again)."""
    args = (design, added, disabled, coverage, raw_of, gmem_dev, gmem_dev_from, features)
    try:
        return _replay(items, *args, slot_plan)
    except NeedsSurvey:
        if slot_plan is not None or not isinstance(items, (list, tuple)):
            raise
        return _replay(items, *args, survey_slots(items, design, gmem_dev, gmem_dev_from))


def _replay(items, design, added, disabled, coverage, raw_of, gmem_dev, gmem_dev_from,
            features, slot_plan) -> Verdict:
    engine = Replay(design, added, disabled, raw_of=raw_of, gmem_dev=gmem_dev,
                    features=features, slot_plan=slot_plan)
    if gmem_dev_from:
        engine.planner.gmem_dev_from = gmem_dev_from
    relevant = RELEVANT_NAMES
    for item in items:
        # protocol_of() is None for every other name: skip those without a call
        if type(item) is Event and item.name not in relevant:
            continue
        if not engine.feed(item):
            engine.verdict.stopped_at = item.line_no
            break
    verdict = engine.result()
    if coverage:
        verdict.coverage = engine.coverage.to_json()
    return verdict
