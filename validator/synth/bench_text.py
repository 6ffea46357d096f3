"""The text of the bench's trace: how one step of the walk looks in a real capture.

BenchRenderer is synth/ftrace_text's Renderer on the walk's one-folio view (page numbers
are the current folio's, its pfn and index set by the walk before each step), with what a
real capture has beside the probes (docs/real-kernel.md): steps on interleaved vCPUs and VMM
threads, the page cache of guest_memfd's device, the MMU notifier's host unmaps, the
memory-attribute changes and SPTE changes; the refusals the kernel logs without a change
of state; and unrelated lines (sched, irq, softirq, timer, host page allocations of pfns
that are not guest_memfd's).  Lines collect in `lines` and go out with flush().
"""

from __future__ import annotations

import random

from validator.model import mirror as model
from validator.synth import ftrace_text as render

PFN_BASE = 0x100000          # the first guest_memfd pfn (the host's own pages lie below)
VCPUS = [(f"CPU {n}/KVM", 4145 + n, n) for n in range(8)]
VMM_THREADS = [("qemu-system-x86", 4130, 2), ("qemu-system-x86", 4131, 5)]
NOISE_TASKS = [("kworker/u17:1", 212), ("bash", 5402), ("<idle>", 0), ("sshd", 1022),
               ("rcu_preempt", 16), ("ksoftirqd/3", 31), ("stress-ng", 5001), ("jbd2/vda1-8", 301)]
GMEM_DEV = "0:16"            # guest_memfd's device, named by the marker line as record does
HVA_BASE = 0x7f4ceafb6000    # the memslot's host address (the VMM's mmap of guest_memfd)


class BenchRenderer(render.Renderer):
    """render.Renderer on the one-folio view: page numbers are the current folio's."""

    def __init__(self, cfg: model.Config, out, rng: random.Random):
        super().__init__(cfg, start_us=584_000_000)
        self.out, self.rng = out, rng
        self.folio_pfn_now = PFN_BASE
        self.folio_index_now = 0
        self.written = 0

    # the current folio's numbers
    def pfn(self, page: int) -> int:
        return self.folio_pfn_now + page

    def folio_pfn(self, f: int) -> int:
        return self.folio_pfn_now

    def index(self, page: int) -> int:
        return self.folio_index_now + page

    def folio_index(self, f: int) -> int:
        return self.folio_index_now

    def emit(self, who, name: str, payload: str, flags: str = ".....") -> None:
        rng = self.rng
        if who == render.VCPU:
            who = rng.choice(VCPUS)
        elif who == render.VMM:
            who = rng.choice(VMM_THREADS)
        comm, pid, cpu = who
        self.clock += rng.randrange(1, 9)
        sec, usec = divmod(self.clock, 1_000_000)
        self.lines.append(f"{comm:>16}-{pid:<7} [{cpu:03d}] {flags} {sec:5d}.{usec:06d}: "
                          f"{name}: {payload}")

    # refusals: the kernel says no, nothing changes
    def refused_host_fault(self, p: int, ret: int) -> None:
        self.probe(render.VMM, "gmem_host_fault",
                   f"index=0x{self.index(p):x} pfn=0x{self.pfn(p):x} ret=0x{ret:x}")

    def refused_guest_fault(self, p: int) -> None:
        gfn = self.index(p)
        self.emit(render.VCPU, "kvm_page_fault", f"vcpu 0 rip 0xffffffff81511f37 address "
                  f"0x{gfn << 12:016x} error_code 0x181")
        # The probe prints the caller's pfn variable on an error (docs/record.md); the
        # replay finds the page by pfn only, so this trace prints the folio's pfn.
        self.probe(render.VCPU, "gmem_get_pfn", f"index=0x{gfn:x} pfn=0x{self.pfn(p):x} ret=-133")

    def _convert(self, st, to: str, ret: int) -> None:
        gfn = self.index(st.before.convReq[0])
        self.emit(render.VMM, "kvm_vm_set_mem_attributes",
                  f"0x{gfn:014x} -- 0x{gfn + 1:014x} [0x{8 if to == 'private' else 0:x}]")
        super()._convert(st, to, ret)

    def r_KvmTdpMapPrivate(self, st) -> None:
        super().r_KvmTdpMapPrivate(st)
        (p,) = st.params
        self.emit(render.VCPU, "kvm_tdp_mmu_spte_changed",
                  f"as id 0 gfn {self.index(p):x} level 1 old_spte 5a0 "
                  f"new_spte 6000000{self.pfn(p):x}977")

    # The upstream events a real capture has beside the probes (docs/real-kernel.md): the
    # page cache of guest_memfd's device and the MMU notifier's host unmaps.
    def cache_event(self, name: str, f_index: int, pfn: int) -> None:
        self.emit(render.VMM, name, f"dev {GMEM_DEV} ino 5a2b pfn=0x{pfn:x} "
                  f"ofs={f_index << 12} order={self.order}", "....." if "add" in name else "d..2.")

    def host_unmap(self, index: int, pages: int) -> None:
        hva = HVA_BASE + (index << 12)
        self.emit(render.VMM, "kvm_unmap_hva_range",
                  f"mmu notifier unmap range: 0x{hva:014x} -- 0x{hva + (pages << 12):014x}")

    def r_KvmGmemAllocFolio(self, st) -> None:
        super().r_KvmGmemAllocFolio(st)
        self.cache_event("mm_filemap_add_to_page_cache", self.folio_index(0), self.folio_pfn(0))

    def r_KvmGmemPunchHole(self, st) -> None:
        super().r_KvmGmemPunchHole(st)
        self.host_unmap(self.folio_index(0), self.cfg.pages_per_folio)
        self.cache_event("mm_filemap_delete_from_page_cache", self.folio_index(0),
                         self.folio_pfn(0))

    def r_KvmGmemEvictInode(self, st) -> None:
        self.cache_event("mm_filemap_delete_from_page_cache", self.folio_index(0),
                         self.folio_pfn(0))

    def r_HostUnmap(self, st) -> None:
        (p,) = st.params
        self.host_unmap(self.index(p), 1)

    # unrelated lines
    def noise(self) -> None:
        rng = self.rng
        kind = rng.random()
        cpu = rng.randrange(8)
        comm, pid = rng.choice(NOISE_TASKS)
        if kind < 0.45:
            (a, ap), (b, bp) = rng.choice(NOISE_TASKS), rng.choice(NOISE_TASKS + [v[:2] for v in VCPUS])
            self.emit((a, ap, cpu), "sched_switch",
                      f"prev_comm={a} prev_pid={ap} prev_prio=120 prev_state={rng.choice('SRD')} "
                      f"==> next_comm={b} next_pid={bp} next_prio=120", "d..2.")
        elif kind < 0.6:
            irq = rng.randrange(24, 64)
            self.emit((comm, pid, cpu), "irq_handler_entry", f"irq={irq} name=virtio1-req.0", "d.h1.")
            self.emit((comm, pid, cpu), "irq_handler_exit", f"irq={irq} ret=handled", "d.h1.")
        elif kind < 0.75:
            self.emit((comm, pid, cpu), "softirq_raise", "vec=9 [action=RCU]", "d.s1.")
        elif kind < 0.9:
            self.emit((comm, pid, cpu), "hrtimer_expire_entry",
                      f"hrtimer=00000000{rng.randrange(1 << 32):08x} function=tick_nohz_handler "
                      f"now={self.clock * 1000}", "d.h1.")
        else:
            self.emit((comm, pid, cpu), "sched_waking",
                      f"comm={comm} pid={pid} prio=120 target_cpu={rng.randrange(8):03d}", "d..4.")

    def host_mm(self) -> None:
        rng = self.rng
        pfn = rng.randrange(0x10000, 0xf0000)          # below every guest_memfd pfn
        comm, pid = rng.choice(NOISE_TASKS)
        who = (comm, pid, rng.randrange(8))
        if rng.random() < 0.5:
            self.emit(who, "mm_page_alloc", f"page=00000000{rng.randrange(1 << 32):08x} "
                      f"pfn=0x{pfn:x} order=0 migratetype=0 gfp_flags=GFP_KERNEL")
        else:
            self.emit(who, "mm_page_free", f"page=00000000{rng.randrange(1 << 32):08x} "
                      f"pfn=0x{pfn:x} order=0")

    def flush(self) -> None:
        if self.lines:
            self.out.write("\n".join(self.lines) + "\n")
            self.written += len(self.lines)
            self.lines.clear()
