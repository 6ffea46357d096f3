"""The factored candidate set (see replay/engine.py's docstring): the one-folio view of a
configuration, its interned parts and its memoised transitions, shared by every replay of
that configuration."""

from __future__ import annotations

from typing import NamedTuple

from validator import model
from validator.replay.steps import StepFn, _StepFailed, build_step, host_closure, logging_steps
from validator.replay.verdict import CHECK_IN_GUARD

UNBOUNDED = 1 << 30


# ---- the factored candidate set (see the module docstring) --------------------

PROPERTY_BITS = tuple(name for name, _ in model.STATE_PROPERTIES + model.STEP_PROPERTIES)
_FIRST_STEP_BIT = len(model.STATE_PROPERTIES)
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
                           (), ())
    return model.State((x[0],), x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8],
                       g[0], g[1], g[2], g[3], g[4], 0, 0, x[9], x[10])


def _vm_part(t: model.State) -> tuple:
    return (t.vm, t.tdx, t.otherTds, t.fd, t.convReq)


def _folio_part(t: model.State) -> tuple:
    return (t.folioLoc[0], t.tdxRefs, t.attr, t.sept, t.mirror, t.hostMap, t.hostPin, t.hwpoison,
            t.bad, t.unreset, t.uptodate)


def _broken(cfg: model.Config, pre: model.State, t: model.State) -> int:
    """The properties (bits in PROPERTY_BITS order) the step pre -> t breaks."""
    mask = 0
    for bit, (_, holds) in enumerate(model.STATE_PROPERTIES):
        if not holds(cfg, t):
            mask |= 1 << bit
    for bit, (_, holds) in enumerate(model.STEP_PROPERTIES, _FIRST_STEP_BIT):
        if not holds(cfg, pre, t):
            mask |= 1 << bit
    return mask


def _checks_in(why: list[str]) -> frozenset:
    return frozenset(m.group(1) for w in why for m in CHECK_IN_GUARD.finditer(w)
                     if m.group(1) in model.ALL_CHECKS)


def _changes_others(gl: tuple, gl2: tuple) -> bool:
    """Whether a step from VM-wide part gl to gl2 touches the other folios: the
    deferred cleanup (fd bugged -> cleaned) poisons and unmaps each of them, and
    a change of tdx to or from "off" changes what NoHostAccessToTdPage says of them."""
    return (gl[3] == "bugged" and gl2[3] == "cleaned") or ((gl[1] == "off") != (gl2[1] == "off"))


class Outcome(NamedTuple):
    """A step from {gl} x S_part (see _Context.transition)."""
    groups: tuple           # ((gl', part'), ...): the results, grouped by VM-wide part
    broken: int             # the properties some result breaks (bits, PROPERTY_BITS order)
    taken: frozenset        # the actions taken
    refused: frozenset      # the named checks that refused a hidden or observed step
    named: frozenset        # the named checks in the guards that failed


class _Branch:
    """{g} x S_0 x ... x S_n: `parts[f]` is the id of S_f (None: forgotten folio).
    `reading`: how the files whose first state the capture does not show start, in this
    branch ({file number: "private" | "shared"}; never changed, only replaced)."""
    __slots__ = ("g", "parts", "reading")

    def __init__(self, g: tuple, parts: list, reading: dict | None = None):
        self.g, self.parts, self.reading = g, parts, reading or {}


class _Context:
    """What the one-folio view of a configuration computes, shared by every replay
    of that configuration: interned VM-wide parts and sets of folio parts, and the
    memoised transitions."""

    def __init__(self, local: model.Config, vm_only: model.Config):
        self.local, self.vm_only = local, vm_only
        self.sets: list[frozenset] = []
        self.set_ids: dict[frozenset, int] = {}
        self.gs: dict[tuple, tuple] = {}
        self.memo: dict[tuple, Outcome] = {}
        self.others: dict[tuple, tuple] = {}
        self.steps: dict[tuple, StepFn] = {}

    def intern(self, parts: frozenset) -> int:
        i = self.set_ids.get(parts)
        if i is None:
            i = self.set_ids[parts] = len(self.sets)
            self.sets.append(parts)
        return i

    def g(self, g: tuple) -> tuple:
        return self.gs.setdefault(g, g)

    def transition(self, local: tuple, gl: tuple, part: int | None) -> Outcome:
        """The step `local` from {gl} x S_part, hidden steps on the folio first."""
        key = (local, gl, part)
        hit = self.memo.get(key)
        if hit is not None:
            return hit
        cfg = self.local if part is not None else self.vm_only
        step = self.steps.get(local)
        if step is None:
            step = self.steps[local] = build_step(local)
        groups: dict[tuple, set] = {}
        why: list[str] = []
        mask = 0
        with logging_steps() as log:
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
        result = Outcome(tuple((g2, self.intern(frozenset(xs)) if part is not None else None)
                               for g2, xs in groups.items()),
                         mask, frozenset(log.taken), frozenset(log.refused), _checks_in(why))
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
