"""The reference replay: the candidates as a plain set of whole model.States.

This is the engine validator/replay/engine.py had before it factored the candidate set
(see its docstring): every event applies the step to every candidate state,
each a tuple over every page of every folio seen so far, so one event costs
time in proportion to the folios times the candidates.  It shares the planning
and the step meanings with replay.Replay and differs only in how it holds the
candidates; tests/replay/test_replay_perf.py checks that both give the same
verdicts, and the same candidate states, on many generated traces.  Not used
by `poisoncheck`.
"""

from __future__ import annotations

from validator import model
from validator.replay.candidate_set import Refusal
from validator.replay.engine import Replay
from validator.replay.steps import _first_reasons, _StepFailed, build_step, host_closure, logging_steps
from validator.replay.verdict import CHECK_IN_GUARD


def _grow(s: model.State, pages: int, attr: str = "private") -> model.State:
    return s._replace(folioLoc=s.folioLoc + ("pool",), tdxRefs=s.tdxRefs + (0,) * pages,
                      attr=s.attr + (attr,) * pages, sept=s.sept + ("unmapped",) * pages,
                      mirror=s.mirror + (False,) * pages, hostMap=s.hostMap + (False,) * pages,
                      hostPin=s.hostPin + (False,) * pages,
                      hwpoison=s.hwpoison + (False,) * pages, bad=s.bad + (False,) * pages,
                      unreset=s.unreset + (False,) * pages,
                      uptodate=s.uptodate + (False,) * pages)


class ReferenceReplay(Replay):
    """replay.Replay with the candidate set kept whole: a set of (reading, state) pairs,
    the reading saying how each file whose first state the capture does not show starts
    (a sorted tuple of (file, "private" | "shared"))."""

    def __init__(self, design: str, added=(), disabled=(), judge: bool = True):
        super().__init__(design, added, disabled, judge)
        self.states: set[tuple[tuple, model.State]] = set()
        self.before: set[tuple[tuple, model.State]] = set()   # where the last step started
        self.before_cfg: model.Config | None = None
        self._take = self._take_whole

    def _start(self, pages: int) -> None:
        if not self.states:         # else: what the VM-wide steps before any folio reached
            self.states = {((), model.init(self._config(0, pages)))}

    def _add_folio(self, pages: int, file: int | None) -> None:
        init = self.planner.file_init(file)
        grown = set()
        for reading, s in self.states:
            attr = init or dict(reading).get(file)
            if attr is not None:
                grown.add((reading, _grow(s, pages, attr)))
                continue
            for attr in ("private", "shared"):
                grown.add((tuple(sorted(reading + ((file, attr),), key=repr)),
                           _grow(s, pages, attr)))
        self.states = grown

    def _forget_known_folios(self) -> None:
        """After lost events nothing is known of the folios seen so far."""
        self.planner.forget()

    def candidate_states(self) -> set[model.State]:
        return {s for _, s in self.states}

    def _take_whole(self, desc: tuple, folio: int | None) -> Refusal | None:
        step = build_step(desc)
        cfg = self.cfg
        if cfg is None:             # no folio yet: a VM-wide step from Init (no pages)
            cfg = self._config(0, 1)
            self.states = self.states or {((), model.init(cfg))}
        before = self.before = self.states
        self.before_cfg = cfg
        pairs: list[tuple[model.State, model.State]] = []
        after: set[tuple[tuple, model.State]] = set()
        why: list[str] = []
        with logging_steps() as log:
            for reading, s in before:
                # The host's unmaps, pins and unpins on this folio are never traced.
                for u in (host_closure(cfg, s, folio) if folio is not None else [s]):
                    try:
                        taken = step(cfg, u)
                    except _StepFailed as failed:
                        why.extend(failed.guards or [failed.reason])
                        continue
                    pairs.extend(taken)
                    after.update((reading, t) for _, t in taken)
        if pairs:
            self.coverage.actions |= log.taken
            self.coverage.refusals |= log.refused
        self.coverage.refusals.update(m.group(1) for w in why for m in CHECK_IN_GUARD.finditer(w)
                                      if m.group(1) in model.ALL_CHECKS)
        if not pairs:
            return Refusal("step", None, _first_reasons(why))
        broken = self._broken_property(cfg, pairs, {t for _, t in after})
        self.states = after
        if broken:
            return Refusal("property", broken,
                           [f"a state the trace may be in after this event breaks {broken}"])
        return None

    def _shown(self, folio: int | None) -> list:
        """Some of the states the refused step started from."""
        return [model.to_tla(self.before_cfg, s) for _, s in list(self.before)[:8]]

    def _broken_property(self, cfg, pairs, after) -> str | None:
        for prop, holds in model.STATE_PROPERTIES:
            if any(not holds(cfg, t) for t in after):
                return prop
        for prop, holds in model.STEP_PROPERTIES:
            if any(not holds(cfg, u, t) for u, t in pairs):
                return prop
        return None


def replay_reference(items, design: str, added=(), disabled=(), coverage: bool = False):
    engine = ReferenceReplay(design, added, disabled)
    for item in items:
        if not engine.feed(item):
            break
    verdict = engine.result()
    if coverage:
        verdict.coverage = engine.coverage.to_json()
    return verdict
