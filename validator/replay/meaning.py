"""What a Resolved event does to the model, for the Python engine.

Each event becomes protocol-step descriptors (see replay.build_step) on the model's pages
and folios.  spec/PoisonTrace.tla states the same meaning in TLA+ (one IsX operator per
kind) for the TLC engine; the two are written separately so that the tests comparing the
engines' verdicts also compare these mappings.  Keep them in step: a change here without
the same change there shows up as a disagreement (tests/replay/test_trace_spec.py).

One small function per kind, found by a table: every judged event passes here, and a
chain of kind comparisons cost more than the rest of the meaning.
"""

from __future__ import annotations

from typing import Callable

from validator.replay.resolved import Resolved

EHWPOISON, EAGAIN, EBUSY = -133, -11, -16


# One protocol step of an event: (desc, folio), the step's descriptor (steps.build_step
# reads it) and the folio it is on (None: the VM's).  A plain pair, read by unpacking: every
# judged event makes one, and building a named tuple instead cost 3-4% of the replay.
Planned = tuple[tuple, "int | None"]


def steps(r: Resolved) -> list[Planned]:
    """The protocol steps the event stands for, in order.  For an event on a folio with no
    lapsed claim this is BY_KIND[r.kind](r) (the replay calls that itself)."""
    folio = r.folio
    if folio is None:
        return [(_vm_step(r), None)]
    out = BY_KIND[r.kind](r)
    if r.lapsed:
        # No page-cache add followed an allocation of exactly this folio: it was another
        # user's allocation after all, so that user still holds the page.
        out.insert(0, (("claim_lapsed", folio), folio))
    return out


def _aug(r: Resolved) -> list[Planned]:
    # -EBUSY is TDX_OPERAND_BUSY: tdx_mem_page_aug() puts the reference it took.  Other
    # failures are not modelled (a note says so).
    ret = r.ret
    desc = ("map", r.page) if not ret else ("aug_busy", r.page) if ret == EBUSY else ("stay",)
    return [(desc, r.folio)]


def _remove(r: Resolved) -> list[Planned]:
    return [(("remove_failed" if r.ret else "remove_ok", r.page), r.folio)]


def _host_fault(r: Resolved) -> list[Planned]:
    return [(("host_fault_refused" if r.ret else "host_fault", r.page),
                               r.folio)]


def _guest_get_pfn(r: Resolved) -> list[Planned]:
    # -EHWPOISON: the fault is refused; otherwise the AUG is its own event.
    desc = ("guest_fault_refused", r.page) if r.ret == EHWPOISON else ("stay",)
    return [(desc, r.folio)]


def _block_alloc(r: Resolved) -> list[Planned]:
    # Only a block that is exactly the folio can be guest_memfd's own allocation.
    folio = r.folio
    return [(("page_alloc" if r.exact else "reuse", folio), folio)]


def _page_free(r: Resolved) -> list[Planned]:
    # Once guest_memfd's page cache is observed, its truncation shows before the free
    # (no hidden one), unless this free follows guest_memfd's own free hook.
    folio = r.folio
    strict = r.cached and not r.after_gmem_free
    return [(("free_observed" if strict else "page_free", folio), folio)]


def _convert(r: Resolved) -> list[Planned]:
    folio = r.folio
    if r.ret == EAGAIN:             # the refcount check refused: the request stays
        return [(("convert_refused", r.pages, r.to), folio)]
    if r.ret:                       # any other failure changes nothing the model holds
        return [(("stay",), folio)]
    return [(("convert", p, r.to), folio) for p in r.pages]


def _folio_step(name: str) -> Callable[[Resolved], list[Planned]]:
    """A kind whose step is one named step on its folio."""
    return lambda r: [((name, r.folio), r.folio)]


def _page_step(name: str) -> Callable[[Resolved], list[Planned]]:
    """A kind whose step is one named step on its page."""
    return lambda r: [((name, r.page), r.folio)]


BY_KIND: dict[str, Callable[[Resolved], list[Planned]]] = {
    "alloc": _folio_step("alloc"),
    "cache_add": _folio_step("alloc"),
    "cache_delete": _folio_step("truncate"),
    "aug": _aug,
    "remove": _remove,
    "reclaim": _remove,
    "host_fault": _host_fault,
    "guest_get_pfn": _guest_get_pfn,
    "set_hwpoison": lambda r: [(("design", "tdx_remove_failed.set_hwpoison"),
                                                  r.folio)],
    "error_folio": _folio_step("in_gmem"),
    "memory_failure": _page_step("memory_failure"),
    "gmem_free": _folio_step("gmem_free"),
    "hugetlb_free": _folio_step("hugetlb_free"),
    "page_alloc": _block_alloc,
    "hugetlb_alloc": _block_alloc,
    "page_free": _page_free,
    "convert": _convert,
}


def _vm_step(r: Resolved) -> tuple:
    if r.kind in ("punch_hole", "vm_bugged"):
        # punch_hole fires on entry, before its zaps: the truncation is taken when the
        # delete or the free shows.  kvm_vm_bugged() runs inside KVM_BUG_ON, before the
        # failing removal's probe fires.
        return ("stay",)
    if r.kind == "buggy_cleanup":
        return ("design", "tdx_remove_failed.mark_fd_bugged")
    if r.kind == "tdx_shutdown":
        return ("design", "tdx_remove_failed.buggy_shutdown")
    if r.kind == "hkid_release":
        return ("stay",) if r.ret else ("hkid_release",)
    raise AssertionError(r.kind)
def remark(r: Resolved, line: int) -> tuple[str, str] | None:
    """A note for the verdict about an outcome the model does not hold.  Both engines
    print it; it never changes a verdict."""
    if r.kind == "aug" and r.ret and r.ret != EBUSY:
        return "aug", f"line {line}: AUG failed (not modelled)"
    if r.kind == "hkid_release" and r.ret:
        return "hkid", f"line {line}: HKID release failed (not modelled)"
    return None
