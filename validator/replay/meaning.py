"""What a Resolved event does to the model, for the Python engine.

Each event becomes protocol-step descriptors (see replay.build_step) on the model's pages
and folios.  spec/PoisonTrace.tla states the same meaning in TLA+ (one IsX operator per
kind) for the TLC engine; the two are written separately so that the tests comparing the
engines' verdicts also compare these mappings.  Keep them in step: a change here without
the same change there shows up as a disagreement (tests/replay/test_trace_spec.py).
"""

from __future__ import annotations

from typing import NamedTuple

from validator.replay.resolved import Resolved

EHWPOISON, EAGAIN, EBUSY = -133, -11, -16

class Planned(NamedTuple):
    """One protocol step of an event."""
    desc: tuple             # the step's descriptor (steps.build_step reads it)
    folio: int | None       # the folio it is on (None: the VM's)


def steps(r: Resolved) -> list[Planned]:
    """The protocol steps the event stands for, in order."""
    kind, folio, p = r.kind, r.folio, r.page
    if folio is None:
        return [Planned(_vm_step(r), None)]
    out: list[Planned] = []
    if r.lapsed:
        # No page-cache add followed an allocation of exactly this folio: it was another
        # user's allocation after all, so that user still holds the page.
        out.append(Planned(("claim_lapsed", folio), folio))
    if kind in ("alloc", "cache_add"):
        desc = ("alloc", folio)
    elif kind == "cache_delete":
        desc = ("truncate", folio)
    elif kind == "aug":
        # -EBUSY is TDX_OPERAND_BUSY: tdx_mem_page_aug() puts the reference it took.  Other
        # failures are not modelled (a note says so).
        desc = ("aug_busy", p) if r.ret == EBUSY else ("stay",) if r.ret else ("map", p)
    elif kind in ("remove", "reclaim"):
        desc = ("remove_failed", p) if r.ret else ("remove_ok", p)
    elif kind == "host_fault":
        desc = ("host_fault_refused", p) if r.ret else ("host_fault", p)
    elif kind == "guest_get_pfn":
        # -EHWPOISON: the fault is refused; otherwise the AUG is its own event.
        desc = ("guest_fault_refused", p) if r.ret == EHWPOISON else ("stay",)
    elif kind == "set_hwpoison":
        desc = ("design", "tdx_remove_failed.set_hwpoison")
    elif kind == "error_folio":
        desc = ("in_gmem", folio)
    elif kind == "memory_failure":
        desc = ("memory_failure", p)
    elif kind in ("gmem_free", "hugetlb_free"):
        desc = (kind, folio)
    elif kind in ("page_alloc", "hugetlb_alloc"):
        # Only a block that is exactly the folio can be guest_memfd's own allocation.
        desc = ("page_alloc", folio) if r.exact else ("reuse", folio)
    elif kind == "page_free":
        # Once guest_memfd's page cache is observed, its truncation shows before the free
        # (no hidden one), unless this free follows guest_memfd's own free hook.
        strict = r.cached and not r.after_gmem_free
        desc = ("free_observed" if strict else "page_free", folio)
    elif kind == "convert":
        return out + _convert(r)
    else:
        raise AssertionError(kind)
    out.append(Planned(desc, folio))
    return out


def _convert(r: Resolved) -> list[Planned]:
    if r.ret == EAGAIN:             # the refcount check refused: the request stays
        return [Planned(("convert_refused", r.pages, r.to), r.folio)]
    if r.ret:                       # any other failure changes nothing the model holds
        return [Planned(("stay",), r.folio)]
    return [Planned(("convert", p, r.to), r.folio) for p in r.pages]


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
