"""The protocol steps of the replay: each meaning's descriptor (replay/meaning.py) as a
function from a state to the (pre, post) pairs the spec allows, with the hidden steps no
probe shows composed in.  A refused step raises _StepFailed with the failed guards."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from validator import model
from validator.replay.verdict import CHECK_IN_GUARD


class _StepFailed(Exception):
    def __init__(self, reason: str, guards: list[str]):
        super().__init__(reason)
        self.reason, self.guards = reason, guards


StepFn = Callable[[model.Config, model.State], list[model.State]]


# Coverage: the actions a step took and the named checks that refused it.  The step
# builders report into the log that logging_steps() opened (replays run one at a time).
@dataclass
class StepLog:
    taken: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)


_LOG: StepLog | None = None


@contextmanager
def logging_steps() -> Iterator[StepLog]:
    """`with logging_steps() as log:` the steps taken inside report into `log`."""
    global _LOG
    outer, _LOG = _LOG, StepLog()
    try:
        yield _LOG
    finally:
        _LOG = outer


def _took(name: str) -> None:
    if _LOG is not None:
        _LOG.taken.add(name)


def _refused_by(guards: list[str]) -> None:
    """Note the named checks behind a refusal the trace shows (coverage)."""
    if _LOG is not None:
        _LOG.refused.update(m.group(1) for g in guards for m in CHECK_IN_GUARD.finditer(g)
                            if m.group(1) in model.ALL_CHECKS)


DESIGN_WHAT = {"tdx_remove_failed.mark_fd_bugged": "marks the fd bugged",
               "tdx_remove_failed.buggy_shutdown": "shuts the TDX module down",
               "tdx_remove_failed.set_hwpoison": "sets PG_hwpoison"}


def build_step(desc: tuple, shown_base: int = 0) -> StepFn:
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
                       _with_shutdown(_action(model.TdxSeptRemoveFailedInSplit, *args)),
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


def _action(fn, *args) -> StepFn:
    def step(cfg, s):
        why: list[str] = []
        t = fn(cfg, s, *args, why)
        if t is None:
            raise _StepFailed(f"{fn.__name__}: guard false", [f"{fn.__name__}: {w}" for w in why])
        _took(fn.__name__)
        return [(s, t)]
    return step


def _either(*steps: StepFn) -> StepFn:
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


def _with_shutdown(inner: StepFn) -> StepFn:
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


def _refusal(fn, *args) -> StepFn:
    """The kernel refused the step: nothing changes.  A refusal for a reason the
    model does not hold is allowed too; for coverage, note the check that refuses."""
    def step(cfg, s):
        why: list[str] = []
        if fn(cfg, s, *args, why) is None:
            _refused_by(why)
        return [(s, s)]
    return step


def _observe(pred, what: str) -> StepFn:
    def step(cfg, s):
        if not pred(cfg, s):
            raise _StepFailed(what, [f"expected: {what}"])
        return [(s, s)]
    return step


def _design_check(check: str, what: str) -> StepFn:
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


def _truncate_then_free(folio, expect: str | None = None) -> StepFn:
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


def _convert_done(pages, to) -> StepFn:
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


def _convert_refused(pages, to, shown_base: int = 0) -> StepFn:
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
