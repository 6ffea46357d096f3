"""The reader's stress mix for `bench.py --mix reader`: random events of every format the
reader knows (scheduler, irq, timer, mm, KVM, the probes, marker writes), in the kernel's
`trace` format, with a lost-events marker now and then.  Not a valid trace: it measures
the reader, not the replay."""

import random
from pathlib import Path

HEADER = """\
# tracer: nop
#
# entries-in-buffer/entries-written: {n}/{n}   #P:8
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

TASKS = [("CPU 0/KVM", 4145), ("CPU 1/KVM", 4146), ("qemu-system-x86", 4130), ("kworker/u17:1", 212),
         ("bash", 5402), ("<idle>", 0), ("worker with sp", 5446), ("a-b-1234", 5448),
         ("memfd:sealed-91", 1366), ("kvm-nx-lpage-re", 7340), ("<...>", 6512)]
FLAGS = ["d..2.", ".....", "d.h4.", "dNh5.", "d.h..", "..s..", "d.h1.", ".Ns1.", "...1."]
PROBES = ["gmem_alloc", "gmem_get_pfn", "tdx_aug", "tdx_remove", "vm_bugged", "gmem_convert",
          "gmem_host_fault", "gmem_punch_hole", "gmem_error_folio", "gmem_free", "hugetlb_free",
          "set_hwpoison", "gmem_buggy_cleanup", "tdx_shutdown", "hkid_release", "tdx_reclaim"]


def _payloads(rng: random.Random):
    """(weight, name, payload factory) of the generated mix."""
    def pfn():
        return rng.randrange(0x100000, 0x4000000)

    def gfn():
        return rng.randrange(0, 0x400000)

    def task():
        return rng.choice(TASKS)

    def page():
        return f"page=00000000{rng.randrange(1 << 32):08x}"

    def sched_switch():
        (a, ap), (b, bp) = task(), task()
        return (f"prev_comm={a} prev_pid={ap} prev_prio=120 prev_state={rng.choice('SRDI')} ==> "
                f"next_comm={b} next_pid={bp} next_prio=120")

    def probe(name):
        if rng.random() < 0.5:
            return f"({name[:4]}_fn+0x0/0x80) index=0x{rng.randrange(512):x} pfn=0x{pfn():x}"
        ret = rng.choice(["0", "-133", "-5", "-11"])
        return f"(caller+0x1e/0x20 <- kvm_{name}) ret={ret} to=\"private\""

    def memory_failure():
        result = rng.choice(["Recovered", "Recovered", "Ignored", "Failed", "Delayed"])
        return f"pfn 0x{pfn():x}: recovery action for dirty LRU page: {result}"

    def spte_changed():
        return (f"as id 0 gfn {gfn():x} level {rng.randrange(1, 4)} "
                f"old_spte 6000004552{rng.randrange(1 << 24):06x} new_spte 5a0")

    def waking():
        comm, pid = task()
        return f"comm={comm} pid={pid} prio=120 target_cpu=00{rng.randrange(8)}"

    def page_alloc():
        order = rng.randrange(10)
        return f"{page()} pfn=0x{pfn():x} order={order} migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE"

    def page_fault():
        return (f"vcpu {rng.randrange(4)} rip 0xffffffff8151{rng.randrange(1 << 16):04x} "
                f"address 0x{gfn() << 12:016x} error_code 0x{rng.choice([0x181, 0x182, 0x100183]):x}")

    mix = [
        (25, "sched_switch", sched_switch),
        (8, "sched_waking", waking),
        (8, "sched_wakeup", waking),
        (4, "irq_handler_entry", lambda: f"irq={rng.randrange(24, 64)} name=virtio1-req.0"),
        (4, "irq_handler_exit", lambda: f"irq={rng.randrange(24, 64)} ret=handled"),
        (3, "softirq_raise", lambda: "vec=9 [action=RCU]"),
        (3, "hrtimer_expire_entry", lambda: f"hrtimer=00000000{rng.randrange(1 << 32):08x} "
                                            f"function=tick_nohz_handler now={rng.randrange(1 << 40)}"),
        (8, "mm_page_alloc", page_alloc),
        (8, "mm_page_free", lambda: f"{page()} pfn=0x{pfn():x} order=0"),
        (6, "kvm_tdp_mmu_spte_changed", spte_changed),
        (4, "kvm_page_fault", page_fault),
        (1, "kvm_vm_set_mem_attributes", lambda: f"0x{gfn():014x} -- 0x{gfn() + 512:014x} [0x8]"),
        (1, "memory_failure_event", memory_failure),
        (1, "tracing_mark_write", lambda: f"B|5613|work {rng.randrange(100)}"),
    ] + [(10 / len(PROBES), name, (lambda name=name: probe(name))) for name in PROBES]
    return mix


def generate(path: Path, lines: int, seed: int = 1) -> None:
    """Write a `trace`-format file of exactly `lines` lines."""
    rng = random.Random(seed)
    mix = _payloads(rng)
    weights = [w for w, _, _ in mix]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    ts = 584_000_000  # microseconds
    header = HEADER.format(n=lines - HEADER.count("\n"))
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(header)
        left = lines - header.count("\n")
        batch = []
        while left > 0:
            for _, name, make in rng.choices(mix, weights, k=min(left, 10_000)):
                ts += rng.randrange(1, 40)
                comm, pid = rng.choice(TASKS)
                if rng.random() < 0.0005:
                    batch.append(f"CPU:{rng.randrange(8)} [LOST {rng.randrange(1, 900)} EVENTS]\n")
                    continue
                batch.append(f"{comm:>16}-{pid:<7} [{rng.randrange(8):03d}] {rng.choice(FLAGS)} "
                             f"{ts // 1_000_000:5d}.{ts % 1_000_000:06d}: {name}: {make()}\n")
            out.writelines(batch)
            left -= len(batch)
            batch.clear()
    tmp.replace(path)
