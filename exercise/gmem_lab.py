"""The lab's exercises beyond the life cycle (exercise/gmem_lifecycle.py), each printing a
JSON summary and announcing its steps on --marker as `poisoncheck step=NAME key=value ...`:

  memory-errors  one VM, a guest_memfd (MMAP|INIT_SHARED) of 8 pages, filled, a vCPU run;
                 madvise(MADV_HWPOISON) on mapped page 1 (the SIGBUS the kernel forces on
                 the mapping process is caught and counted); munmap; hwpoison_inject's
                 corrupt-pfn on page 3's pfn (cached, no longer mapped); punch pages 0..4,
                 refill them through a new mapping, close.  The summary lists the poisoned
                 pfns, so a reader can check in the capture whether either is freed or
                 handed out again.
  several-vms    three VMs, each with its own guest_memfd of 8 pages (same indexes), filled
                 index by index in turn, a vCPU run in each, index 2 punched in every file,
                 refilled, then closed one VM at a time while the others still hold theirs.
  no-mmap        a guest_memfd without GUEST_MEMFD_FLAG_MMAP, populated by fallocate
                 (KEEP_SIZE; mode 0 is refused), pages 2..4 punched, refilled, closed.

Every `create_gmem` marker names the file (ino, dev) and its creation flags, so the replay
knows a file's first state (INIT_SHARED: shared).  Upstream guest_memfd allocates order-0
folios only (kvm_gmem_get_folio()), so every folio here is one page.

Needs root and /dev/kvm (the lab: Debian's kernel under QEMU with nested SVM, see lab.py);
exit 2 with one line when something the exercise needs fails.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gmem_lifecycle import (FALLOC_FL_KEEP_SIZE, PAGE_SIZE, Fatal, Marker,  # noqa: E402
                            address_of, pfns, punch_hole, run_guest, touch)
from validator.recording.gmem_device import (  # noqa: E402
    GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_CREATE_VM, KVM_MEM_GUEST_MEMFD,
    KVM_SET_USER_MEMORY_REGION2, GmemUnavailable, KvmIoctlError, create_guest_memfd,
    kvm_ioctl, kvm_userspace_memory_region2, open_kvm)

PAGES = 8
MADV_HWPOISON = 100                     # include/uapi/asm-generic/mman-common.h
CORRUPT_PFN = "/sys/kernel/debug/hwpoison/corrupt-pfn"   # mm/hwpoison-inject.c
LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
LIBC.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


class Vm:
    """One VM with one guest_memfd bound at gpa 0 (slot 0); `memory` is its mmap, if any."""

    def __init__(self, kvm_fd: int, marker: Marker, name: str, flags: int, memslot: bool):
        self.name, self.flags, self.kvm_fd = name, flags, kvm_fd
        self.vm_fd = kvm_ioctl(kvm_fd, KVM_CREATE_VM, 0)
        self.gmem_fd = create_guest_memfd(self.vm_fd, PAGES * PAGE_SIZE, flags)
        st = os.fstat(self.gmem_fd)
        self.ino, self.dev = st.st_ino, f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
        marker("create_gmem", vm=name, ino=hex(self.ino), dev=self.dev, flags=flags,
               pages=PAGES, init_shared=int(bool(flags & GUEST_MEMFD_FLAG_INIT_SHARED)))
        self.memory: mmap.mmap | None = None
        self.vcpu_fd = -1
        if flags & GUEST_MEMFD_FLAG_MMAP:
            self.map()
        if memslot:
            marker("memslot", vm=name, ino=hex(self.ino), hva=hex(self.hva), pages=PAGES)
            kvm_ioctl(self.vm_fd, KVM_SET_USER_MEMORY_REGION2, kvm_userspace_memory_region2(
                slot=0, flags=KVM_MEM_GUEST_MEMFD, guest_phys_addr=0,
                memory_size=PAGES * PAGE_SIZE, userspace_addr=self.hva, guest_memfd_offset=0,
                guest_memfd=self.gmem_fd))

    @property
    def hva(self) -> int:
        return address_of(self.memory) if self.memory is not None else 0

    def map(self) -> None:
        try:
            self.memory = mmap.mmap(self.gmem_fd, PAGES * PAGE_SIZE, mmap.MAP_SHARED)
        except OSError as err:
            raise Fatal(f"mmap(guest_memfd): {err.strerror}") from None

    def unmap(self) -> None:
        if self.memory is not None:
            self.memory.close()
            self.memory = None

    def pfns(self) -> list[str | None]:
        return pfns(self.hva, PAGES) if self.memory is not None else []

    def run_vcpu(self) -> dict:
        vcpu: dict = {"result_gpa": hex((PAGES - 1) * PAGE_SIZE)}
        self.vcpu_fd = run_guest(self.kvm_fd, self.vm_fd, self.memory, (PAGES - 1) * PAGE_SIZE,
                                 vcpu)
        return vcpu

    def close(self, marker: Marker) -> None:
        self.unmap()
        for what, fd in (("vcpu", self.vcpu_fd), ("vm", self.vm_fd), ("gmem", self.gmem_fd)):
            if fd >= 0:
                marker("close", vm=self.name, what=what)
                os.close(fd)


def fallocate(fd: int, mode: int, start: int, end: int, what: str) -> None:
    if LIBC.fallocate(fd, mode, start * PAGE_SIZE, (end - start) * PAGE_SIZE) != 0:
        raise Fatal(f"fallocate({what}): {os.strerror(ctypes.get_errno())}")


def memory_errors(marker: Marker) -> dict:
    kvm_fd = open_kvm()
    vm = Vm(kvm_fd, marker, "a", GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED, True)
    summary: dict = {"ino": vm.ino, "dev": vm.dev}
    marker("fill", vm="a", pages=PAGES)
    for index in range(PAGES):
        touch(vm.memory, index, "fill")
    marker("vcpu_run", vm="a")
    summary["vcpu"] = vm.run_vcpu()
    before = vm.pfns()
    summary["pfns_before"] = before

    sigbus: list[int] = []
    previous = signal.signal(signal.SIGBUS, lambda signum, frame: sigbus.append(signum))
    try:
        marker("madv_hwpoison", vm="a", index=1, pfn=before[1])
        rc = LIBC.madvise(vm.hva + PAGE_SIZE, PAGE_SIZE, MADV_HWPOISON)
        summary["madv_hwpoison"] = {"index": 1, "pfn": before[1], "rc": rc,
                                    "errno": ctypes.get_errno() if rc else 0}
    finally:
        signal.signal(signal.SIGBUS, previous)
    summary["sigbus"] = len(sigbus)

    marker("munmap", vm="a")
    vm.unmap()
    marker("corrupt_pfn", vm="a", index=3, pfn=before[3])
    try:
        with open(CORRUPT_PFN, "w") as inject:
            inject.write(f"{before[3]}\n")
        summary["corrupt_pfn"] = {"index": 3, "pfn": before[3], "ok": True}
    except OSError as err:
        summary["corrupt_pfn"] = {"index": 3, "pfn": before[3], "ok": False,
                                  "error": err.strerror}

    marker("punch_hole", vm="a", start=0, end=5)
    punch_hole(vm.gmem_fd, 0, 5)
    marker("refill", vm="a", pages="0,1,2,3,4")
    vm.map()
    for index in range(5):
        touch(vm.memory, index, "refill")
    summary["pfns_after_refill"] = vm.pfns()
    summary["poisoned_pfns"] = [before[1], before[3]]
    summary["poisoned_pfn_back_in_file"] = sorted(
        set(summary["poisoned_pfns"]) & set(summary["pfns_after_refill"]))
    vm.close(marker)
    os.close(kvm_fd)
    marker("done")
    return summary


def several_vms(marker: Marker, count: int = 3) -> dict:
    kvm_fd = open_kvm()
    flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED
    vms = [Vm(kvm_fd, marker, name, flags, True) for name in "abc"[:count]]
    marker("fill", vms=",".join(vm.name for vm in vms), pages=PAGES)
    for index in range(PAGES):                      # interleaved: same index in every file
        for vm in vms:
            touch(vm.memory, index, vm.name)
    summary: dict = {"vms": {}}
    for vm in vms:
        marker("vcpu_run", vm=vm.name)
        summary["vms"][vm.name] = {"ino": vm.ino, "dev": vm.dev, "vcpu": vm.run_vcpu(),
                                   "pfns": vm.pfns()}
    for vm in vms:
        marker("punch_hole", vm=vm.name, start=2, end=3)
        punch_hole(vm.gmem_fd, 2, 3)
    for vm in vms:
        marker("refill", vm=vm.name, pages="2")
        touch(vm.memory, 2, "refill")
        summary["vms"][vm.name]["pfns_after_refill"] = vm.pfns()
    for vm in vms:                                  # the others still hold theirs
        vm.close(marker)
    os.close(kvm_fd)
    marker("done")
    return summary


def no_mmap(marker: Marker) -> dict:
    kvm_fd = open_kvm()
    vm = Vm(kvm_fd, marker, "a", 0, False)
    marker("fallocate", vm="a", start=0, end=PAGES)
    fallocate(vm.gmem_fd, FALLOC_FL_KEEP_SIZE, 0, PAGES, "KEEP_SIZE")
    marker("punch_hole", vm="a", start=2, end=5)
    punch_hole(vm.gmem_fd, 2, 5)
    marker("fallocate", vm="a", start=2, end=5)
    fallocate(vm.gmem_fd, FALLOC_FL_KEEP_SIZE, 2, 5, "KEEP_SIZE")
    summary = {"ino": vm.ino, "dev": vm.dev, "flags": 0}
    vm.close(marker)
    os.close(kvm_fd)
    marker("done")
    return summary


EXERCISES = {"memory-errors": memory_errors, "several-vms": several_vms, "no-mmap": no_mmap}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exercise", choices=sorted(EXERCISES))
    parser.add_argument("--marker", metavar="PATH",
                        help="a tracefs trace_marker file to announce each step on")
    args = parser.parse_args(argv)
    marker = None
    try:
        marker = Marker(args.marker)
        summary = EXERCISES[args.exercise](marker)
    except (GmemUnavailable, KvmIoctlError, Fatal) as err:
        print(f"gmem_lab {args.exercise}: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"gmem_lab {args.exercise}: {err.filename or 'error'}: {err.strerror}",
              file=sys.stderr)
        return 2
    finally:
        if marker:
            marker.close()
    summary.update(exercise=args.exercise, kernel=os.uname().release)
    json.dump(summary, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
