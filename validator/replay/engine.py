"""Replay a parsed ftrace log against the spec's transition relation (Python engine).

The trace is judged on two counts.  Conformance: every observed event must be
a step the design's Next allows from some candidate state.  Safety: the
states the trace reaches must satisfy the safety properties; a property is
reported violated when some candidate state consistent with the trace breaks
it (see `CandidateSet.take` in candidate_set.py).

Which folio and page an event is about is the planner's (validator/replay/planner.py,
shared with the TLC engine); which steps it stands for is validator/replay/meaning.py's
(the TLC engine has its own, in spec/PoisonTrace.tla): folios appear when they
enter guest_memfd's page cache; events on pfns guest_memfd never held in the
trace are not guest_memfd's and are skipped (counted); a trace with no event
about a folio is inconclusive (validator/replay/evidence.py).  Fault budgets are
unbounded: the trace decides how many faults happen.  The
conversion request variable, which exists for liveness property 7, is
projected away: request and conversion are one composed step.

What the trace cannot show is left open as a set of candidate states, kept factored so
that an event costs the same however many folios the trace showed
(validator/replay/candidate_set.py).  Folios seen before lost events are dropped: their
events are skipped from then on, and nothing that happens to them can change a verdict
(see `_forget_known_folios`).
"""

from __future__ import annotations

from typing import Callable, Iterable, NamedTuple, TypeVar

from validator.ftrace import Event, LostMarker
from validator import model
from validator.replay import evidence, meaning
from validator.replay.candidate_set import CandidateSet, Refusal
from validator.replay.meaning import BY_KIND
from validator.replay.candidates import NOTES_PER_KIND, UNBOUNDED
from validator.replay.big_folios import NeedsSurvey, SlotPlan
from validator.replay.folio_table import PlanInputError
from validator.replay.planner import Planner, Unrelated
from validator.replay.resolved import Resolved
from validator.replay.verdict import Coverage, Verdict
from validator.replay.vocabulary import (INFORMATIONAL, INFORMATIONAL_RUN, RELEVANT_NAMES,
                                         Observed, observe, protocol_of)

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
                 slot_plan: SlotPlan | None = None, survey: bool = False,
                 gmem_ino: int | None = None):
        self.design = design
        self.features = frozenset(features)     # the spec's Features (a run's, for its traces)
        self.raw_of = raw_of        # line number -> text, for Observed items without raw
        self.judge = judge and not survey   # False: only resolve the events (TLC engine)
        self.survey = survey        # only name the pages of big folios (survey_slots)
        self.added, self.disabled = frozenset(added), frozenset(disabled)
        self.planner = Planner(self._new_folio, self._note, gmem_dev, slot_plan, survey,
                               gmem_ino)
        self.verdict = Verdict(design)
        self.lost_at: int | None = None
        self.skipped: dict[str, int] = {}
        self.steps: list[ResolvedLine] = []    # TLC's input, kept when not judging
        self.coverage = Coverage()
        self.done = False
        self._cfg: tuple[int, model.Config] | None = None
        self.candidates = CandidateSet(design, self.added, self.disabled, self.features,
                                       self.coverage)
        # Takes one step (desc, folio) from every candidate: a Refusal, or None when it fits.
        # The candidate set's own method, called straight from feed(); the reference engine
        # (reference.py) puts its own here.
        self._take: Callable[[tuple, int | None], Refusal | None] = self.candidates.take
        self.after: dict[str, int] = {}        # protocol events after a violation, counted
        self._dropped = 0                      # folios forgotten so far
        self._notes: dict[str, int] = {}       # notes per kind (see _note)
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

    def _new_folio(self, pages: int, file: int | None = None) -> None:
        """The planner found a folio (of `file`): the candidate set grows by its Init part,
        its pages shared or private as the file starts (planner.file_init)."""
        if len(self.folios) == 1:
            self._start(pages)
        self._add_folio(pages, file)

    def _start(self, pages: int) -> None:
        """The first folio: the candidate set becomes Init (of no folio yet), or keeps the
        VM-wide parts the events before any folio reached."""
        if self.judge:
            self.candidates.start(pages)

    def _add_folio(self, pages: int, file: int | None) -> None:
        if self.judge:
            self.candidates.add_folio(file, self.planner.file_init(file))

    @property
    def branches(self) -> list:
        """The candidate set's branches (see candidate_set.py)."""
        return self.candidates.branches

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
        if type(resolved) is str:       # unrelated, said without raising (common cases)
            self._skip(resolved)
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
        take = self._take
        for r in resolved:
            if r.ret and (said := meaning.remark(r, line)) is not None:
                self._note(*said)
            # meaning.steps(r), whose usual case is one call fewer
            planned = (meaning.steps(r) if r.folio is None or r.lapsed
                       else BY_KIND[r.kind](r))
            for desc, folio in planned:
                refusal = take(desc, folio)
                if refusal is not None:
                    self._refused(item, name, folio, refusal)
                    return False
                verdict.accepted_prefix = line
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
        self.candidates.forget(self._dropped, n)
        self._dropped = n

    def _refused(self, event: Event, name: str, folio: int | None, refusal: Refusal) -> None:
        """The step did not fit: the verdict, with some candidates it started from."""
        kind, prop, guards, detail = refusal
        self._fail(event, name, kind, prop, guards, lambda: self._shown(folio), detail)
        self.verdict.file = self.file_named(folio)

    def file_named(self, folio: int | None) -> str | None:
        """The guest_memfd file a folio entered first, by its inode (None: not named)."""
        if folio is None or folio >= len(self.folios):
            return None
        number = self.folios[folio].file
        inodes = self.planner.file_inodes
        if number is None or number >= len(inodes) or inodes[number] is None:
            return None
        dev = self.planner.gmem_dev
        where = f" on {dev[0]}:{dev[1]}" if dev else ""
        return f"inode {inodes[number]:#x}{where}"

    def _shown(self, folio: int | None) -> list:
        return self.candidates.shown(folio, self.cfg)

    def candidate_states(self) -> set[model.State]:
        """Every candidate state, expanded (for tests: exponential in general)."""
        return self.candidates.states()

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
        v.observability = evidence.observability(self.planner, self.skipped, self.after)
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
    """The pages of big folios a trace names (see big_folios.SlotPlan): its events resolved,
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
    """judge(None), or for a trace of folios bigger than big_folios.EXACT_PAGES (it raises
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
           slot_plan: SlotPlan | None = None, gmem_ino: int | None = None) -> Verdict:
    """Judge a trace; raw_of(line_no) gives the text of Observed items read without it.
    A trace of folios bigger than big_folios.EXACT_PAGES needs a slot_plan: a list of items
    is surveyed here; an iterator raises NeedsSurvey (survey it, then call again, or use
    judged_with_survey).  The corpus and the report pass lists: their traces are small."""
    def judge(plan: SlotPlan | None) -> Verdict:
        return _replay(items, design, added, disabled, coverage, raw_of, gmem_dev,
                       gmem_dev_from, features, plan, gmem_ino)
    if slot_plan is not None or not isinstance(items, (list, tuple)):
        return judge(slot_plan)
    return judged_with_survey(judge, lambda: items, design, gmem_dev, gmem_dev_from)


def _replay(items, design, added, disabled, coverage, raw_of, gmem_dev, gmem_dev_from,
            features, slot_plan, gmem_ino=None) -> Verdict:
    engine = Replay(design, added, disabled, raw_of=raw_of, gmem_dev=gmem_dev,
                    features=features, slot_plan=slot_plan, gmem_ino=gmem_ino)
    if gmem_dev_from:
        engine.planner.gmem_dev_from = gmem_dev_from
    engine.verdict.stopped_at = _feed_all(engine, items)
    verdict = engine.result()
    if coverage:
        verdict.coverage = engine.coverage.to_json()
    return verdict


def _feed_all(engine: Replay, items: Iterable[Event | Observed | LostMarker]) -> int | None:
    """Feed the items in order until one fails: its line (None: every item fed)."""
    relevant, informational, skipped = RELEVANT_NAMES, INFORMATIONAL, engine.skipped
    items = iter(items)
    for item in items:
        kind = type(item)
        # protocol_of() is None for every other name: skip those without a call
        if kind is Event and item.name not in relevant:
            continue
        # the most common item, only counted (as feed() counts it), without a call
        if kind is Observed and item.protocol in informational and not engine.done:
            name = item.protocol
            skipped[name] = skipped.get(name, 0) + 1
            continue
        if not engine.feed(item):
            _count_rest(engine.after, items)
            return item.line_no
    return None


def _count_rest(after: dict, items) -> None:
    """The protocol events after the verdict's line, by protocol: the evidence says what
    the whole capture holds, not only what was replayed."""
    for item in items:
        if type(item) is Observed:
            if item.protocol == INFORMATIONAL_RUN:
                for name, n in item.fields.items():
                    after[name] = after.get(name, 0) + n
                continue
            name = item.protocol
        elif type(item) is Event:
            if item.name not in RELEVANT_NAMES:
                continue
            name = protocol_of(item)
        else:
            continue
        if name is not None and name != "marker":
            after[name] = after.get(name, 0) + 1
