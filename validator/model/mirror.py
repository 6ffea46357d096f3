"""The mirror of spec/Poison.tla's Next: every step from a state, the reachable
graph, and a state as TLC prints it.

tests/model/test_conformance_graph.py compares this graph with the one TLC
dumps for the spec (states and labelled edges), so any drift between the
actions here and the spec's shows up as a failing test.  Folios are named
"f1", "f2", ... as in the generated TLC configurations.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

from validator.model.actions import (FOLIO_ACTIONS, GLOBAL_ACTIONS, PAGE_ACTIONS,
                                     VmmConvertRequest)
from validator.model.designs import Config
from validator.model.state import State, init


class Transition(NamedTuple):
    """One step Next allows: the action's name, its parameters, the successor."""
    action: str
    params: tuple       # (folio,), (page,), (page, "private" | "shared") or ()
    state: State


class Edge(NamedTuple):
    """An edge of the reachable graph, labelled with its action as TLC labels it."""
    source: State
    action: str
    target: State


def successors(cfg: Config, s: State) -> Iterator[Transition]:
    """Every step Next allows from s.

    A step may leave the state unchanged (a refused conversion that had
    nothing to unmap); TLC's state graph has these self-loops too.
    """
    for f in range(cfg.folios):
        for action in FOLIO_ACTIONS:
            t = action(cfg, s, f)
            if t is not None:
                yield Transition(action.__name__, (f,), t)
    for p in range(cfg.pages):
        for action in PAGE_ACTIONS:
            t = action(cfg, s, p)
            if t is not None:
                yield Transition(action.__name__, (p,), t)
        for to in ("private", "shared"):
            t = VmmConvertRequest(cfg, s, p, to)
            if t is not None:
                yield Transition("VmmConvertRequest", (p, to), t)
    for action in GLOBAL_ACTIONS:
        t = action(cfg, s)
        if t is not None:
            yield Transition(action.__name__, (), t)


def reachable(cfg: Config) -> tuple[set[State], set[Edge]]:
    """The whole reachable graph from Init (for small constants only)."""
    start = init(cfg)
    seen, edges, todo = {start}, set(), [start]
    while todo:
        s = todo.pop()
        for name, _, t in successors(cfg, s):
            edges.add(Edge(s, name, t))
            if t not in seen:
                seen.add(t)
                todo.append(t)
    return seen, edges


# ---- the spec's view of a state, for comparison with TLC ----------------------

def folio_name(f: int) -> str:
    return f"f{f + 1}"


def page_name(cfg: Config, p: int) -> str:
    """The TLA+ text of page p: <<f1, 1>>."""
    return f"<<{folio_name(cfg.folio_of(p))}, {p % cfg.pages_per_folio + 1}>>"


def to_tla(cfg: Config, s: State) -> dict:
    """The state as validator.tlc.values parses TLC's printout of it."""
    per_page = lambda values: {page_name(cfg, p): v for p, v in enumerate(values)}  # noqa: E731
    if s.convReq is None:
        req = {"page": [], "to": "none"}
    else:
        p = s.convReq[0]
        req = {"page": [folio_name(cfg.folio_of(p)), p % cfg.pages_per_folio + 1],
               "to": s.convReq[1]}
    return {
        "folioLoc": {folio_name(f): v for f, v in enumerate(s.folioLoc)},
        "tdxRefs": per_page(s.tdxRefs), "attr": per_page(s.attr), "sept": per_page(s.sept),
        "mirror": per_page(s.mirror), "hostMap": per_page(s.hostMap),
        "hostPin": per_page(s.hostPin), "hwpoison": per_page(s.hwpoison), "bad": per_page(s.bad),
        "vm": s.vm, "tdx": s.tdx, "otherTds": s.otherTds, "fd": s.fd, "convReq": req,
        "removeFailures": s.removeFailures, "memErrors": s.memErrors,
        "unreset": per_page(s.unreset), "uptodate": per_page(s.uptodate),
    }


# The kernel function each action stands for (the spec's comments, for reports).
KERNEL_FUNCTION = {
    "Init": "-",
    "KvmGmemAllocFolio": "kvm_gmem_get_folio()",
    "KvmTdpMapPrivate": "kvm_gmem_get_pfn() + tdx_mem_page_aug()",
    "TdxAugBusy": "tdx_mem_page_aug(): TDX_OPERAND_BUSY, tdx_unpin()",
    "KvmTdpPremap": "tdx_sept_set_private_spte() before TD finalize (premap)",
    "TdxZapPremapped": "zap of a premapped page: tdx_unpin()",
    "TdxShutdownFlag": "tdx_buggy_shutdown(): WBINVD done, no more SEAMCALLs",
    "OtherTdSeamcall": "another TD's SEAMCALL on a CPU already flushed",
    "CrossTdReuse": "another TD's kvm_gmem_get_folio() + TDH.MEM.PAGE.AUG",
    "TdxSeptRemoveOk": "tdx_sept_remove_leaf_spte()",
    "TdxSeptRemoveFailed": "tdx_sept_remove_leaf_spte() fails: KVM_BUG_ON()",
    "TdxSeptRemoveWbinvdFailed": "tdx_sept_remove_leaf_spte(): PHYMEM.PAGE.WBINVD fails",
    "TdxSeptRemoveFailedInSplit": "tdx_sept_remove_leaf_spte() fails during a HugeTLB split",
    "TdxSeptRemoveAfterShutdown": "tdx_sept_remove_leaf_spte() after buggy shutdown",
    "VmmConvertRequest": "TDG.VP.VMCALL<MapGPA> or the VMM",
    "KvmGmemConvertShared": "kvm_gmem_set_attributes(): to shared",
    "KvmGmemConvertPrivate": "kvm_gmem_set_attributes(): to private",
    "KvmGmemHostFault": "kvm_gmem_fault_user_mapping() + __do_fault()",
    "HostGup": "get_user_pages()",
    "HostUnpin": "unpin_user_page()",
    "HostUnmap": "munmap()",
    "KvmGmemPunchHole": "kvm_gmem_punch_hole()",
    "KvmGmemEvictInode": "kvm_gmem_evict_inode()",
    "FreeFolio": "folio_put(): free_huge_folio() / free_pages_prepare()",
    "AllocatorReuse": "alloc_pages() / alloc_hugetlb_folio()",
    "HostUserFree": "__free_pages() / free_huge_folio() by that user",
    "HugetlbDissolve": "__update_and_free_hugetlb_folio(): pool shrink, offline",
    "MemoryFailure": "memory_failure()",
    "KvmGmemBuggyCleanup": "kvm_gmem_buggy_cleanup()",
    "KvmGmemRelease": "kvm_gmem_release(): the per-fd flag is freed",
    "TdxReleaseHkid": "tdx_mmu_release_hkid()",
}
