"""Replay a parsed ftrace log against the spec's transition relation (Python engine).

The trace is judged on two counts.  Conformance: every observed event must be
a step the design's Next allows from some candidate state.  Safety: the
states the trace reaches must satisfy the safety properties; a property is
reported violated when some candidate state consistent with the trace breaks
it (see _broken_property).

What the trace cannot show is left open as a set of candidate states, and
hidden steps are composed in front of the observed one (as CCF's trace
validation composes actions), limited to the event's own folio: every guard
of an observed action reads only that folio's pages and the VM-wide state.
The hidden steps are the host's unmap/pin/unpin (no probe), the conversion
request (the guest's MapGPA or the VMM's decision), and the truncation that
precedes a free (punch hole or inode eviction; the punch_hole probe fires on
entry, before the zaps it causes, so truncation is taken when the free shows).

Folios appear when first allocated (gmem_alloc); events on pfns guest_memfd
never allocated in the trace are not guest_memfd's and are skipped.  Fault
budgets are unbounded: the trace decides how many faults happen.  The
conversion request variable, which exists for liveness property 7, is
projected away: request and conversion are one composed step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

from . import model
from .ftrace import Event, LostMarker

UNBOUNDED = 1 << 30
EHWPOISON, EAGAIN = -133, -11

UPSTREAM_PROTOCOL = {
    ("kmem", "mm_page_alloc"): "page_alloc",
    ("kmem", "mm_page_free"): "page_free",
    ("ras", "memory_failure_event"): "memory_failure",
    ("kvmmmu", "kvm_tdp_mmu_spte_changed"): "spte_changed",
    ("kvm", "kvm_page_fault"): "page_fault",
    ("kvm", "kvm_vm_set_mem_attributes"): "set_attributes",
}
PROBE_PROTOCOL = {
    "gmem_alloc": "alloc", "gmem_get_pfn": "guest_get_pfn", "tdx_aug": "aug",
    "tdx_remove": "remove", "vm_bugged": "vm_bugged", "gmem_convert": "convert",
    "gmem_host_fault": "host_fault", "gmem_punch_hole": "punch_hole",
    "gmem_error_folio": "error_folio", "gmem_free": "gmem_free", "hugetlb_free": "hugetlb_free",
    "set_hwpoison": "set_hwpoison", "gmem_buggy_cleanup": "buggy_cleanup",
    "tdx_shutdown": "tdx_shutdown", "hkid_release": "hkid_release", "tdx_reclaim": "reclaim",
    # A HugeTLB folio leaves the pool: means what mm_page_alloc means for a 4K page.
    "hugetlb_alloc": "page_alloc",
}
# Events that carry no information the model holds (kept for coverage only).
INFORMATIONAL = {"page_fault", "spte_changed", "set_attributes"}


def protocol_of(event: Event) -> str | None:
    if event.system == "poisoncheck" or (event.probe is not None and event.name in PROBE_PROTOCOL):
        return PROBE_PROTOCOL.get(event.name)
    return UPSTREAM_PROTOCOL.get((event.system, event.name))


class ReplayInputError(Exception):
    """The trace cannot be replayed at all (line given); exit code 2."""


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
    events: int = 0                       # protocol events replayed
    coverage: dict | None = None          # with coverage asked for: see Coverage.to_json

    def to_json(self) -> dict:
        return {"verdict": self.verdict, "kind": self.kind, "property": self.property,
                "design": self.design, "line": self.line, "event": self.event,
                "protocol_event": self.protocol_event, "reason": self.reason,
                "accepted_prefix": self.accepted_prefix, "guards": self.guards,
                "candidates": self.candidates, "notes": self.notes, "events": self.events,
                **({"coverage": self.coverage} if self.coverage is not None else {})}


@dataclass
class _Folio:
    pfn: int
    pages: int
    index: int | None


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


class Replay:
    """Feed events in order; `result()` gives the verdict."""

    def __init__(self, design: str, added=(), disabled=(), judge: bool = True):
        self.design = design
        self.judge = judge          # False: only plan the protocol steps (TLC engine)
        self.added, self.disabled = frozenset(added), frozenset(disabled)
        self.cfg: model.Config | None = None
        self.states: set[model.State] = set()
        self.folios: list[_Folio] = []
        self.by_pfn: dict[int, int] = {}       # pfn -> page number
        self.by_index: dict[int, int] = {}     # guest_memfd index -> page number
        self.verdict = Verdict(design)
        self.lost_at: int | None = None
        self.skipped: dict[str, int] = {}
        self.steps: list[tuple] = []   # (descriptor, line, folio, raw, event): TLC's input
        self.coverage = Coverage()
        self.done = False

    # ---- the world: folios and pages as the trace reveals them ----------------

    def _config(self, folios: int, pages: int) -> model.Config:
        backing = "buddy" if pages == 1 else "hugetlb"
        return model.Config(self.design, backing, folios=folios, pages_per_folio=pages,
                            max_remove_failures=UNBOUNDED, max_mem_errors=UNBOUNDED,
                            disabled=self.disabled, added=self.added)

    def _new_folio(self, event: Event, pfn: int, order: int, index: int | None) -> int:
        pages = 1 << order
        if self.cfg is None:
            self.cfg = self._config(0, pages)
            self.states = {model.init(self.cfg)}
        elif pages != self.cfg.pages_per_folio:
            raise ReplayInputError(
                f"line {event.line_no}: a folio of order {order} after folios of "
                f"{self.cfg.pages_per_folio} pages; the replay needs one folio size per trace")
        f = len(self.folios)
        self.folios.append(_Folio(pfn, pages, index))
        first = f * pages
        for i in range(pages):
            self.by_pfn[pfn + i] = first + i
            if index is not None:
                self.by_index[index + i] = first + i
        self.cfg = self._config(f + 1, pages)
        self.states = {_grow(s, pages) for s in self.states}
        return f

    def _page(self, event: Event, key: str = "pfn") -> int | None:
        value = event.fields.get(key)
        if not isinstance(value, int):
            return None
        return (self.by_pfn if key == "pfn" else self.by_index).get(value)

    # ---- feeding -------------------------------------------------------------

    def feed(self, item: Event | LostMarker) -> bool:
        """Replay one item; return False once a violation is found."""
        if self.done:
            return False
        if isinstance(item, LostMarker):
            if self.lost_at is None:
                self.lost_at = self.verdict.accepted_prefix
                self.verdict.notes.append(
                    f"events were lost after line {self.lost_at}: folios seen before are not "
                    f"checked from there on")
            self._forget_known_folios()
            return True
        name = protocol_of(item)
        if name is None:
            return True
        if name in INFORMATIONAL:
            self._skip(name)
            return True
        try:
            planned = self.plan(name, item)
        except _Unrelated as why:
            self._skip(str(why))
            return True
        for desc, folio in planned:
            self.steps.append((desc, item.line_no, folio, item.raw, name))
            if self.judge:
                self._apply(item, name, build_step(desc), folio)
            if self.done:
                break
        return not self.done

    def _skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def _forget_known_folios(self) -> None:
        """After lost events nothing is known of the folios seen so far."""
        for pfn in [p for p in self.by_pfn]:
            self.by_pfn[pfn] = -1
        for index in [i for i in self.by_index]:
            self.by_index[index] = -1

    def _apply(self, event: Event, name: str, step: Step, folio: int | None) -> None:
        before = self.states
        pairs: list[tuple[model.State, model.State]] = []
        why: list[str] = []
        global _TAKEN, _REFUSED
        _TAKEN, _REFUSED = taken, refused = set(), set()
        try:
            for s in before:
                # The host's unmaps, pins and unpins on this folio are never traced.
                for u in (host_closure(self.cfg, s, folio) if folio is not None else [s]):
                    try:
                        pairs.extend(step(self.cfg, u))
                    except _StepFailed as failed:
                        why.extend(failed.guards or [failed.reason])
        finally:
            _TAKEN = _REFUSED = None
        if pairs:
            self.coverage.actions |= taken
            self.coverage.refusals |= refused
        self.coverage.refusals.update(m.group(1) for w in why for m in CHECK_IN_GUARD.finditer(w)
                                      if m.group(1) in model.ALL_CHECKS)
        self.verdict.events += 1
        if not pairs:
            self._fail(event, name, "step", None, _first_reasons(why), before)
            return
        after = {t for _, t in pairs}
        broken = self._broken_property(pairs, after)
        self.states = after
        if broken:
            self._fail(event, name, "property", broken,
                       [f"a state the trace may be in after this event breaks {broken}"],
                       before)
            return
        self.verdict.accepted_prefix = event.line_no

    def _broken_property(self, pairs, after) -> str | None:
        """A property some state (or step) consistent with the trace breaks.

        Every candidate is a state the spec reaches, so a design for which TLC
        proves a property never gets it reported; for the others, the trace
        is flagged as soon as what it shows is consistent with a bad state.
        """
        cfg = self.cfg
        for prop, holds in model.STATE_PROPERTIES:
            if any(not holds(cfg, t) for t in after):
                return prop
        if any(not model.poison_contained_step(cfg, u, t) for u, t in pairs):
            return "PoisonContained"
        return None

    def _fail(self, event, name, kind, prop, guards, before) -> None:
        v = self.verdict
        if self.lost_at is not None:
            v.verdict = "inconclusive"
            v.notes.append(f"line {event.line_no}: {name} does not fit, but events were lost")
            self.done = True
            return
        v.verdict, v.kind, v.property = "violation", kind, prop
        v.line, v.event, v.protocol_event = event.line_no, event.raw, name
        v.guards = guards
        v.reason = (f"{name} is not a step {self.design} allows: {'; '.join(guards)}"
                    if kind == "step" else f"{prop} is violated after {name}")
        v.candidates = [model.to_tla(self.cfg, s) for s in list(before)[:8]]
        self.done = True

    def result(self) -> Verdict:
        v = self.verdict
        if v.verdict == "accepted" and self.lost_at is not None:
            v.verdict = "inconclusive"
            v.reason = f"events were lost after line {self.lost_at}"
        for reason, count in sorted(self.skipped.items()):
            v.notes.append(f"skipped {count} event(s): {reason}")
        return v

    # ---- the protocol events -------------------------------------------------

    def plan(self, name: str, ev: Event) -> list[tuple[tuple, int | None]]:
        """What the event stands for: protocol steps (descriptors, see build_step),
        each with the folio whose hidden steps may precede it."""
        f = ev.fields
        ret = f.get("ret", 0)
        if name == "alloc":
            pfn, order = _need_int(ev, "pfn"), f.get("order", 0)
            page = self.by_pfn.get(pfn)
            if page == -1:
                raise _Unrelated("folio seen before lost events")
            folio = self._new_folio(ev, pfn, order, f.get("index")) if page is None \
                else self.cfg.folio_of(page)
            return [(("alloc", folio), folio)]
        if name in PAGE_EVENTS:
            page = self._page(ev)
            if page is None and name in ("error_folio", "host_fault"):
                page = self._page(ev, "index")
            if page is None:
                raise _Unrelated(f"{name} on a pfn guest_memfd has not allocated (yet) in the trace")
            if page == -1:
                raise _Unrelated("folio seen before lost events")
            return [(self._page_step(name, ev, page, ret), self.cfg.folio_of(page))]
        if name == "convert":
            return self._convert_steps(ev)
        if name in ("punch_hole", "vm_bugged"):
            # punch_hole fires on entry, before its zaps: the truncation is taken
            # when the free shows.  kvm_vm_bugged() runs inside KVM_BUG_ON, before
            # the failing removal's probe fires.
            return [(("stay",), None)]
        if name == "buggy_cleanup":
            return [(("design", "tdx_remove_failed.mark_fd_bugged"), None)]
        if name == "tdx_shutdown":
            return [(("design", "tdx_remove_failed.buggy_shutdown"), None)]
        if name == "hkid_release":
            if ret != 0:
                self.verdict.notes.append(f"line {ev.line_no}: HKID release failed (not modelled)")
                return [(("stay",), None)]
            return [(("hkid_release",), None)]
        return []

    def _page_step(self, name: str, ev: Event, p: int, ret) -> tuple:
        f = self.cfg.folio_of(p)
        if name == "aug":
            if ret != 0:
                self.verdict.notes.append(f"line {ev.line_no}: AUG failed (not modelled)")
                return ("stay",)
            return ("map", p)
        if name in ("remove", "reclaim"):
            return ("remove_ok", p) if ret == 0 else ("remove_failed", p)
        if name == "host_fault":
            return ("host_fault", p) if ret == 0 else ("host_fault_refused", p)
        if name == "guest_get_pfn":
            # -EHWPOISON: the fault is refused; otherwise the AUG is its own event.
            return ("guest_fault_refused", p) if ret == EHWPOISON else ("stay",)
        if name == "set_hwpoison":
            return ("design", "tdx_remove_failed.set_hwpoison")
        if name == "error_folio":
            return ("in_gmem", f)
        if name in ("memory_failure", "page_alloc"):
            return (name, p if name == "memory_failure" else f)
        if name in ("gmem_free", "hugetlb_free", "page_free"):
            return (name, f)
        raise AssertionError(name)

    def _convert_steps(self, ev: Event) -> list[tuple[tuple, int | None]]:
        f = ev.fields
        start, end, to = f.get("start"), f.get("end"), _target(f.get("to"))
        if not isinstance(start, int) or not isinstance(end, int) or to is None:
            raise ReplayInputError(f"line {ev.line_no}: gmem_convert needs start, end and "
                                   f"to=private|shared: {ev.raw.strip()}")
        pages = [self.by_index[i] for i in range(start, end) if i in self.by_index]
        if not pages or -1 in pages:
            raise _Unrelated("conversion of indices guest_memfd did not allocate in the trace")
        folio = self.cfg.folio_of(pages[0])
        if any(self.cfg.folio_of(p) != folio for p in pages):
            raise ReplayInputError(f"line {ev.line_no}: a conversion across folios; the replay "
                                   f"takes one folio per conversion event")
        if f.get("ret", 0) == EAGAIN:
            return [(("convert_refused", tuple(pages), to), folio)]
        if f.get("ret", 0) != 0:
            return [(("stay",), None)]
        return [(("convert", p, to), folio) for p in pages]


PAGE_EVENTS = ("page_alloc", "page_free", "memory_failure", "gmem_free", "hugetlb_free",
               "set_hwpoison", "error_folio", "aug", "remove", "reclaim", "guest_get_pfn",
               "host_fault")
DESIGN_WHAT = {"tdx_remove_failed.mark_fd_bugged": "marks the fd bugged",
               "tdx_remove_failed.buggy_shutdown": "shuts the TDX module down",
               "tdx_remove_failed.set_hwpoison": "sets PG_hwpoison"}


def build_step(desc: tuple) -> Step:
    """The Python meaning of a protocol-step descriptor (the TLC engine has its own)."""
    kind, *args = desc
    if kind == "stay":
        return _stay
    if kind == "alloc":
        return _action(model.KvmGmemAllocFolio, *args)
    if kind == "map":
        return _action(model.KvmTdpMapPrivate, *args)
    if kind == "remove_ok":
        return _action(model.TdxSeptRemoveOk, *args)
    if kind == "remove_failed":
        return _either(_action(model.TdxSeptRemoveFailed, *args),
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
                       _observe(lambda c, s: s.hwpoison[p], "a repeated report of a poisoned page"))
    if kind == "gmem_free":
        return _truncate_then_free(*args)
    if kind == "hugetlb_free":
        (f,) = args
        return _either(_truncate_then_free(f, expect="pool"),
                       _observe(lambda c, s: s.folioLoc[f] == "pool",
                                "free_huge_folio(): the folio goes back to the pool"))
    if kind == "page_free":
        (f,) = args
        return _either(_truncate_then_free(f),
                       _observe(lambda c, s: s.folioLoc[f] in ("pool", "leaked"),
                                "the page was already freed"))
    if kind == "page_alloc":
        # Another user's allocation, or guest_memfd's own (gmem_alloc follows).
        return _either(_action(model.AllocatorReuse, *args), _stay)
    if kind == "convert":
        p, to = args
        return _convert_done([p], to)
    if kind == "convert_refused":
        pages, to = args
        return _convert_refused(list(pages), to)
    raise AssertionError(kind)


class _Unrelated(Exception):
    """The event does not concern a folio the replay tracks."""


def _need_int(ev: Event, key: str) -> int:
    value = ev.fields.get(key)
    if not isinstance(value, int):
        raise ReplayInputError(f"line {ev.line_no}: {ev.name} has no integer {key}: "
                               f"{ev.raw.strip()}")
    return value


def _target(value) -> str | None:
    if value in ("private", "shared"):
        return value
    if isinstance(value, int):              # KVM_MEMORY_ATTRIBUTE_PRIVATE is bit 3
        return "private" if value & 8 else "shared"
    return None


def _grow(s: model.State, pages: int) -> model.State:
    return s._replace(folioLoc=s.folioLoc + ("pool",), tdxRefs=s.tdxRefs + (0,) * pages,
                      attr=s.attr + ("private",) * pages, sept=s.sept + ("unmapped",) * pages,
                      mirror=s.mirror + (False,) * pages, hostMap=s.hostMap + (False,) * pages,
                      hostPin=s.hostPin + (False,) * pages,
                      hwpoison=s.hwpoison + (False,) * pages)


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


def _convert_refused(pages, to) -> Step:
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
            f"{convert.__name__}: the refcount checks let page {p} convert"])
    return step


def replay(items: Iterable[Event | LostMarker], design: str, added=(), disabled=(),
           coverage: bool = False) -> Verdict:
    engine = Replay(design, added, disabled)
    for item in items:
        if not engine.feed(item):
            break
    verdict = engine.result()
    if coverage:
        verdict.coverage = engine.coverage.to_json()
    return verdict
