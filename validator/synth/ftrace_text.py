"""Render spec behaviours as ftrace text, in the kernel's `trace` file format.

A behaviour is a list of steps of the Python mirror (action name, parameters,
state before, state after).  Each step becomes the trace lines the kernel and
the poisoncheck probes would print for it; hidden steps (the host's pins and
unmaps, the conversion request, inode eviction) print nothing.  Folio f gets
pfn 0x100000 + f * 0x400 and guest_memfd index f * pages; gfn = index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from validator import model

HEADER = """\
# tracer: nop
#
# entries-in-buffer/entries-written: {n}/{n}   #P:4
#
#                                _-----=> irqs-off/BH-disabled
#                               / _----=> need-resched
#                              | / _---=> hardirq/softirq
#                              || / _--=> preempt-depth
#                              ||| / _-=> migrate-disable
#                              |||| /     delay
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |         |   |||||     |         |
"""

VMM = ("qemu-system-x86", 4130, 2)
VCPU = ("CPU 0/KVM", 4145, 1)
KWORKER = ("kworker/u17:1", 212, 3)
OTHER = ("stress-ng", 5001, 0)

# The probe sites as kprobe_events prints them: entry "(sym+0x0/size)",
# return "(caller+off/size <- sym)".
SITES = {
    "gmem_alloc": "kvm_gmem_get_pfn+0x5e/0x1a0 <- kvm_gmem_get_folio",
    "gmem_get_pfn": "kvm_mmu_faultin_pfn+0x2a1/0x6c0 <- kvm_gmem_get_pfn",
    "tdx_aug": "tdx_sept_set_private_spte+0x1f3/0x3c0 <- tdx_mem_page_aug",
    "tdx_remove": "tdx_sept_set_private_spte+0xa4/0x3c0 <- tdx_sept_remove_leaf_spte",
    "vm_bugged": "kvm_vm_bugged+0x0/0x30",
    "gmem_convert": "kvm_gmem_ioctl+0x1c6/0x2d0 <- kvm_gmem_set_attributes",
    "gmem_host_fault": "__do_fault+0x3b/0x160 <- kvm_gmem_fault_user_mapping",
    "gmem_punch_hole": "kvm_gmem_punch_hole+0x0/0x1c0",
    "gmem_error_folio": "kvm_gmem_error_folio+0x0/0x140",
    "gmem_free": "kvm_gmem_free_folio+0x0/0x60",
    "hugetlb_free": "free_huge_folio+0x0/0x3c0",
    "set_hwpoison": "tdx_set_page_hwpoison+0x0/0x40",
    "gmem_buggy_cleanup": "kvm_gmem_buggy_cleanup+0x0/0x80",
    "tdx_shutdown": "tdx_buggy_shutdown+0x0/0xa0",
    "hkid_release": "tdx_mmu_release_hkid+0x1b8/0x2a0 <- tdh_mng_key_freeid",
    "tdx_reclaim": "tdx_sept_remove_private_spte+0x58/0xe0 <- tdx_reclaim_page",
    "hugetlb_alloc": "hugetlb_fault+0x3e4/0xd70 <- alloc_hugetlb_folio",
}
PFN_BASE, PFN_STRIDE = 0x100000, 0x400


@dataclass
class Transition:
    action: str
    params: tuple
    before: model.State
    after: model.State


class Renderer:
    def __init__(self, cfg: model.Config, start_us: int = 100_000_000):
        self.cfg = cfg
        self.order = (cfg.pages_per_folio - 1).bit_length()
        self.clock = start_us
        self.lines: list[str] = []

    # ---- numbering -------------------------------------------------------------
    def pfn(self, page: int) -> int:
        f, i = divmod(page, self.cfg.pages_per_folio)
        return PFN_BASE + f * PFN_STRIDE + i

    def folio_pfn(self, f: int) -> int:
        return PFN_BASE + f * PFN_STRIDE

    def index(self, page: int) -> int:
        return page

    def folio_index(self, f: int) -> int:
        """The guest_memfd index of the folio's first page."""
        return f * self.cfg.pages_per_folio

    # ---- one line --------------------------------------------------------------
    def emit(self, who, name: str, payload: str, flags: str = ".....") -> None:
        comm, pid, cpu = who
        self.clock += 7
        sec, usec = divmod(self.clock, 1_000_000)
        self.lines.append(f"{comm:>16}-{pid:<7} [{cpu:03d}] {flags} {sec:5d}.{usec:06d}: "
                          f"{name}: {payload}")

    def probe(self, who, name: str, fields: str = "", flags: str = ".....") -> None:
        payload = f"({SITES[name]})" + (f" {fields}" if fields else "")
        self.emit(who, name, payload, flags)

    # ---- actions ---------------------------------------------------------------
    def step(self, st: Transition) -> None:
        getattr(self, "r_" + st.action, self.r_hidden)(st)

    def r_hidden(self, st: Transition) -> None:
        """Steps no probe shows: host pins/unmaps, requests, inode eviction."""

    def r_KvmGmemAllocFolio(self, st: Transition) -> None:
        (f,) = st.params
        pfn = self.folio_pfn(f)
        if self.cfg.backing == "buddy":
            self.emit(VMM, "mm_page_alloc", f"page=00000000{pfn:08x} pfn=0x{pfn:x} order=0 "
                      "migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_ZERO")
        else:
            self.probe(VMM, "hugetlb_alloc", f"pfn=0x{pfn:x} order={self.order}")
        index = self.folio_index(f)
        self.probe(VMM, "gmem_alloc", f"index=0x{index:x} pfn=0x{pfn:x} order={self.order}")

    def r_KvmTdpMapPrivate(self, st: Transition) -> None:
        self._guest_fault(st, aug_ret=0)

    def r_TdxAugBusy(self, st: Transition) -> None:
        self._guest_fault(st, aug_ret=-16)          # -EBUSY: TDX_OPERAND_BUSY

    def _guest_fault(self, st: Transition, aug_ret: int) -> None:
        (p,) = st.params
        gfn = self.index(p)
        self.emit(VCPU, "kvm_page_fault", f"vcpu 0 rip 0xffffffff81511f37 address "
                  f"0x{gfn << 12:016x} error_code 0x181")
        self.probe(VCPU, "gmem_get_pfn", f"index=0x{gfn:x} pfn=0x{self.pfn(p):x} ret=0")
        self.probe(VCPU, "tdx_aug", f"gfn=0x{gfn:x} pfn=0x{self.pfn(p):x} level=1 "
                   f"ret={aug_ret}", "d..1.")

    def _remove(self, st: Transition, ret: int) -> None:
        (p,) = st.params
        if st.before.vm == "destroyed":
            self.probe(VMM, "tdx_reclaim", f"pfn=0x{self.pfn(p):x} ret={ret}")
        else:
            who = VCPU if st.before.vm == "running" else VMM
            self.probe(who, "tdx_remove", f"gfn=0x{self.index(p):x} pfn=0x{self.pfn(p):x} "
                       f"level=1 ret={ret}", "d..1.")

    def r_TdxSeptRemoveOk(self, st: Transition) -> None:
        self._remove(st, 0)

    def r_TdxSeptRemoveFailed(self, st: Transition) -> None:
        (p,) = st.params
        who = VCPU if st.before.vm == "running" else VMM
        self.probe(who, "vm_bugged", "", "d..1.")
        if not st.before.bad[p] and st.after.bad[p]:
            self.probe(who, "set_hwpoison", f"pfn=0x{self.pfn(p):x}", "d..1.")
        if st.before.fd == "ok" and st.after.fd == "bugged":
            self.probe(who, "gmem_buggy_cleanup", "", "d..1.")
        if st.before.tdx == "on" and st.after.tdx != "on":
            self.probe(who, "tdx_shutdown", "", "d..1.")
        self._remove(st, -5)

    def r_TdxSeptRemoveFailedInSplit(self, st: Transition) -> None:
        self.r_TdxSeptRemoveFailed(st)     # a capture cannot see the split it raced

    def r_TdxSeptRemoveAfterShutdown(self, st: Transition) -> None:
        self._remove(st, -5)

    def _convert(self, st: Transition, to: str, ret: int) -> None:
        i = self.index(st.before.convReq[0])
        self.probe(VMM, "gmem_convert", f'start=0x{i:x} end=0x{i + 1:x} to="{to}" ret={ret}')

    def r_KvmGmemConvertShared(self, st: Transition) -> None:
        self._convert(st, "shared", 0 if st.after.convReq is None else -11)

    def r_KvmGmemConvertPrivate(self, st: Transition) -> None:
        self._convert(st, "private", 0 if st.after.convReq is None else -11)

    def r_KvmGmemHostFault(self, st: Transition) -> None:
        (p,) = st.params
        self.probe(VMM, "gmem_host_fault", f"index=0x{self.index(p):x} pfn=0x{self.pfn(p):x} ret=0")

    def r_KvmGmemPunchHole(self, st: Transition) -> None:
        (f,) = st.params
        start = self.folio_index(f)
        self.probe(VMM, "gmem_punch_hole", f"start=0x{start:x} end=0x{start + self.cfg.pages_per_folio:x}")

    def r_FreeFolio(self, st: Transition) -> None:
        (f,) = st.params
        pfn = self.folio_pfn(f)
        self.probe(VMM, "gmem_free", f"pfn=0x{pfn:x} order={self.order}")
        if self.cfg.backing == "buddy":
            self.emit(VMM, "mm_page_free", f"page=00000000{pfn:08x} pfn=0x{pfn:x} order=0")
        elif st.after.folioLoc[f] == "pool":
            self.probe(VMM, "hugetlb_free", f"pfn=0x{pfn:x} order={self.order}")

    def r_AllocatorReuse(self, st: Transition) -> None:
        (f,) = st.params
        pfn = self.folio_pfn(f)
        if self.cfg.backing == "buddy":
            self.emit(OTHER, "mm_page_alloc", f"page=00000000{pfn:08x} pfn=0x{pfn:x} order=0 "
                      "migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE")
        else:
            self.probe(OTHER, "hugetlb_alloc", f"pfn=0x{pfn:x} order={self.order}")

    def r_HostUserFree(self, st: Transition) -> None:
        (f,) = st.params
        pfn = self.folio_pfn(f)
        if self.cfg.backing == "buddy":
            self.emit(OTHER, "mm_page_free", f"page=00000000{pfn:08x} pfn=0x{pfn:x} order=0")
        else:
            self.probe(OTHER, "hugetlb_free", f"pfn=0x{pfn:x} order={self.order}")

    def _memory_failure(self, p: int, result: str = "Failed") -> None:
        self.probe(KWORKER, "gmem_error_folio", f"index=0x{self.index(p):x} pfn=0x{self.pfn(p):x}")
        self.emit(KWORKER, "memory_failure_event",
                  f"pfn 0x{self.pfn(p):x}: recovery action for unevictable LRU page: {result}")

    def r_MemoryFailure(self, st: Transition) -> None:
        (p,) = st.params
        self._memory_failure(p)

    def r_KvmGmemBuggyCleanup(self, st: Transition) -> None:
        for p in range(self.cfg.pages):
            if st.before.folioLoc[self.cfg.folio_of(p)] == "gmem":
                self._memory_failure(p)

    def r_TdxReleaseHkid(self, st: Transition) -> None:
        self.probe(VMM, "hkid_release", "ret=0")

    def text(self) -> str:
        return HEADER.format(n=len(self.lines)) + "\n".join(self.lines) + "\n"


def render(cfg: model.Config, steps: Iterable[Transition]) -> str:
    renderer = Renderer(cfg)
    for st in steps:
        renderer.step(st)
    return renderer.text()


def steps_from_states(cfg: model.Config, trace: list[tuple[str, dict]]) -> list[Transition]:
    """Recover the parameters of TLC's counterexample steps with the mirror.

    `trace` is [(action, state as parsed from TLC)], the first being Init.
    """
    state = model.init(cfg)
    if model.to_tla(cfg, state) != trace[0][1]:
        raise ValueError("the counterexample does not start in Init")
    steps = []
    for number, (action, wanted) in enumerate(trace[1:], 2):
        for name, params, nxt in model.successors(cfg, state):
            if name == action and model.to_tla(cfg, nxt) == wanted:
                steps.append(Transition(name, params, state, nxt))
                state = nxt
                break
        else:
            raise ValueError(f"state {number} ({action}) is not a step of the Python mirror")
    return steps


def steps_from_actions(cfg: model.Config, actions: list[tuple]) -> list[Transition]:
    """Build a behaviour from (action name, *params); fails on a step Next forbids."""
    state = model.init(cfg)
    steps = []
    for name, *params in actions:
        fn = getattr(model, name)
        nxt = fn(cfg, state, *params)
        if nxt is None:
            why: list[str] = []
            fn(cfg, state, *params, why)
            raise ValueError(f"{name}{tuple(params)} is not allowed: {'; '.join(why)}")
        steps.append(Transition(name, tuple(params), state, nxt))
        state = nxt
    return steps
