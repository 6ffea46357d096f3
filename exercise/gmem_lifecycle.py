"""Drive a real guest_memfd through its life cycle and print a JSON summary.

Steps, in order (each announced on --marker, a tracefs trace_marker, as
`poisoncheck step=NAME key=value ...` so a capture shows where it is):

  create_vm    open /dev/kvm, KVM_CREATE_VM (type 0)
  create_gmem  KVM_CREATE_GUEST_MEMFD, N pages, GUEST_MEMFD_FLAG_MMAP|INIT_SHARED
  memslot      mmap(MAP_SHARED) it; KVM_SET_USER_MEMORY_REGION2 with KVM_MEM_GUEST_MEMFD,
               the guest_memfd at offset 0 and userspace_addr = that mmap (gpa 0)
  fill         write every page through the mmap; pfns from /proc/self/pagemap
  vcpu_run     a one-vCPU long-mode guest writes GUEST_MAGIC to memory and halts
  punch_hole   fallocate(PUNCH_HOLE|KEEP_SIZE) on page 2, then on pages 5..6
  refill       touch the punched pages again; pfns again
  munmap, close (vCPU, VM, then the guest_memfd: it holds the last VM reference, so
               closing it destroys the VM and then evicts the inode), done

The uapi (ioctl numbers, structs, flags) follows include/uapi/linux/kvm.h and
arch/x86/include/uapi/asm/kvm.h of Linux 6.18; see validator/recording/gmem_device.py.
Needs root (pagemap pfns) and /dev/kvm.  Exit 2 with a one-line error when
/dev/kvm or an ioctl fails; a vCPU that cannot run is reported in the JSON.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import json
import mmap
import os
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from validator.recording.gmem_device import (  # noqa: E402
    GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_CAP_GUEST_MEMFD_FLAGS,
    KVM_CHECK_EXTENSION, KVM_CREATE_VCPU, KVM_CREATE_VM, KVM_EXIT_HLT, KVM_EXIT_INTR,
    KVM_EXIT_NAMES, KVM_GET_REGS, KVM_GET_SREGS, KVM_GET_SUPPORTED_CPUID, KVM_GET_VCPU_MMAP_SIZE,
    KVM_MEM_GUEST_MEMFD, KVM_RUN, KVM_RUN_EXIT_REASON_OFFSET, KVM_RUN_EXIT_UNION_OFFSET,
    KVM_SET_CPUID2, KVM_SET_REGS, KVM_SET_SREGS, KVM_SET_USER_MEMORY_REGION2,
    GmemUnavailable, KvmIoctlError, create_guest_memfd, kvm_cpuid2_with, kvm_ioctl,
    kvm_regs, kvm_sregs, kvm_userspace_memory_region2, open_kvm)

PAGE_SIZE = 4096
FALLOC_FL_KEEP_SIZE = 0x01      # include/uapi/linux/falloc.h
FALLOC_FL_PUNCH_HOLE = 0x02
PUNCH_RANGES = ((2, 3), (5, 7))  # [start, end) page indexes, two separate holes
MIN_PAGES = 8
MAX_PAGES = 4096  # 16 MiB: every page is allocated, so keep it small

# Guest layout (guest physical address = offset in the guest_memfd).
PML4_GPA, PDPT_GPA, PD_GPA, GDT_GPA, CODE_GPA = 0x0000, 0x1000, 0x2000, 0x3000, 0x4000
GUEST_MAGIC = 0x600DF00DCAFEF00D
PTE_PRESENT, PTE_WRITABLE, PDE_LARGE = 1 << 0, 1 << 1, 1 << 7
CR0_PE, CR0_MP, CR0_ET, CR0_NE, CR0_WP, CR0_PG = 1, 1 << 1, 1 << 4, 1 << 5, 1 << 16, 1 << 31
CR4_PAE = 1 << 5
EFER_LME, EFER_LMA = 1 << 8, 1 << 10
GDT = (0, 0x00AF9A000000FFFF, 0x00CF92000000FFFF)  # null, 64-bit code (sel 8), data (sel 16)
CODE_SELECTOR, DATA_SELECTOR = 8, 16
MAX_RUNS = 16

PAGEMAP_PRESENT = 1 << 63
PAGEMAP_PFN_MASK = (1 << 55) - 1


class Fatal(Exception):
    """One line for stderr, then exit 2."""


class Marker:
    """Writes `poisoncheck key=value ...` lines to a trace_marker, or nowhere."""

    def __init__(self, path: str | None):
        self.fd = -1
        if path:
            try:
                self.fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            except OSError as err:
                raise Fatal(f"{path}: {err.strerror}") from None

    def __call__(self, step: str, **details) -> None:
        if self.fd >= 0:
            tokens = " ".join(f"{key}={value}" for key, value in details.items())
            os.write(self.fd, f"poisoncheck step={step} {tokens}".rstrip().encode("ascii") + b"\n")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)


def address_of(buffer: mmap.mmap) -> int:
    view = ctypes.c_char.from_buffer(buffer)  # a temporary export: drop it so munmap works
    address = ctypes.addressof(view)
    del view
    return address


def pfns(hva: int, pages: int) -> list[str | None]:
    """pfn of each page at hva from /proc/self/pagemap; None when absent (or not root:
    the kernel then reports pfn 0)."""
    with open("/proc/self/pagemap", "rb") as pagemap:
        pagemap.seek(hva // PAGE_SIZE * 8)
        entries = struct.unpack(f"<{pages}Q", pagemap.read(8 * pages))
    return [hex(e & PAGEMAP_PFN_MASK) if e & PAGEMAP_PRESENT and e & PAGEMAP_PFN_MASK else None
            for e in entries]


def touch(memory: mmap.mmap, index: int, tag: str) -> None:
    record = f"{tag} {index:06d}".encode()[:16].ljust(16, b".")
    memory[index * PAGE_SIZE:index * PAGE_SIZE + len(record)] = record


def punch_hole(fd: int, start: int, end: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    if libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      start * PAGE_SIZE, (end - start) * PAGE_SIZE) != 0:
        raise Fatal(f"fallocate(PUNCH_HOLE): {os.strerror(ctypes.get_errno())}")


def write_guest_image(memory: mmap.mmap, result_gpa: int) -> None:
    """Identity-map the first 2 MiB with one large page; code stores GUEST_MAGIC at rdi, hlts."""
    def put(gpa: int, *quads: int) -> None:
        memory[gpa:gpa + 8 * len(quads)] = struct.pack(f"<{len(quads)}Q", *quads)
    put(PML4_GPA, PDPT_GPA | PTE_PRESENT | PTE_WRITABLE)
    put(PDPT_GPA, PD_GPA | PTE_PRESENT | PTE_WRITABLE)
    put(PD_GPA, 0 | PTE_PRESENT | PTE_WRITABLE | PDE_LARGE)
    put(GDT_GPA, *GDT)
    code = (b"\x48\xb8" + struct.pack("<Q", GUEST_MAGIC)  # mov rax, GUEST_MAGIC
            + b"\x48\x89\x07"                              # mov [rdi], rax
            + b"\xf4")                                     # hlt
    memory[CODE_GPA:CODE_GPA + len(code)] = code
    put(result_gpa, 0)


def set_long_mode(kvm_fd: int, vcpu_fd: int, result_gpa: int) -> None:
    nent = 128
    while True:  # the kernel answers E2BIG until the array is large enough
        cpuid = kvm_cpuid2_with(nent)
        try:
            kvm_ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid)
            break
        except KvmIoctlError as err:
            if err.errno != errno.E2BIG or nent >= 4096:
                raise
            nent *= 2
    kvm_ioctl(vcpu_fd, KVM_SET_CPUID2, cpuid)

    sregs = kvm_sregs()
    kvm_ioctl(vcpu_fd, KVM_GET_SREGS, sregs)
    for name in ("cs", "ds", "es", "fs", "gs", "ss"):
        seg = getattr(sregs, name)
        seg.base, seg.limit, seg.present, seg.dpl, seg.s, seg.g, seg.avl, seg.unusable = (
            0, 0xFFFFFFFF, 1, 0, 1, 1, 0, 0)
        if name == "cs":
            # execute/read, accessed; 64-bit
            seg.selector, seg.type, seg.l, seg.db = CODE_SELECTOR, 0xB, 1, 0
        else:
            # read/write, accessed
            seg.selector, seg.type, seg.l, seg.db = DATA_SELECTOR, 0x3, 0, 1
    sregs.gdt.base, sregs.gdt.limit = GDT_GPA, 8 * len(GDT) - 1
    sregs.cr3 = PML4_GPA
    sregs.cr4 = CR4_PAE
    sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG
    sregs.efer = EFER_LME | EFER_LMA
    kvm_ioctl(vcpu_fd, KVM_SET_SREGS, sregs)

    regs = kvm_regs(rip=CODE_GPA, rdi=result_gpa, rsp=CODE_GPA, rflags=0x2)
    kvm_ioctl(vcpu_fd, KVM_SET_REGS, regs)


def run_guest(kvm_fd: int, vm_fd: int, memory: mmap.mmap, result_gpa: int, vcpu: dict) -> int:
    """Create the vCPU and KVM_RUN it to HLT; results go into `vcpu`. Returns the vCPU fd or -1."""
    vcpu_fd = -1
    try:
        vcpu_fd = kvm_ioctl(vm_fd, KVM_CREATE_VCPU, 0)
        run = mmap.mmap(vcpu_fd, kvm_ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE), mmap.MAP_SHARED)
        try:
            write_guest_image(memory, result_gpa)
            set_long_mode(kvm_fd, vcpu_fd, result_gpa)
            for runs in range(1, MAX_RUNS + 1):
                vcpu["runs"] = runs
                kvm_ioctl(vcpu_fd, KVM_RUN)
                reason = struct.unpack_from("<I", run, KVM_RUN_EXIT_REASON_OFFSET)[0]
                vcpu["exit_reason"] = KVM_EXIT_NAMES.get(reason, f"exit_{reason}")
                union = KVM_RUN_EXIT_UNION_OFFSET
                vcpu["exit_union"] = run[union:union + 16].hex()  # e.g. internal.suberror
                if reason != KVM_EXIT_INTR:  # only a signal's exit is worth running again
                    break
            regs = kvm_regs()
            kvm_ioctl(vcpu_fd, KVM_GET_REGS, regs)
            vcpu["rip"] = hex(regs.rip)
        finally:
            run.close()  # the kvm_run mapping holds the vCPU file: unmap before close
    except (KvmIoctlError, OSError) as err:
        vcpu["error"] = str(err)
    vcpu["reached_hlt"] = vcpu.get("exit_reason") == KVM_EXIT_NAMES[KVM_EXIT_HLT]
    value = struct.unpack_from("<Q", memory, result_gpa)[0]
    vcpu["value_read"], vcpu["value_ok"] = hex(value), value == GUEST_MAGIC
    return vcpu_fd


def lifecycle(pages: int, marker: Marker) -> dict:
    size = pages * PAGE_SIZE
    summary: dict = {"kernel": os.uname().release, "pages": pages}

    marker("create_vm")
    kvm_fd = open_kvm()
    vm_fd = kvm_ioctl(kvm_fd, KVM_CREATE_VM, 0)
    summary["cap_guest_memfd_flags"] = kvm_ioctl(
        vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_FLAGS)

    gmem_flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED
    gmem_fd = create_guest_memfd(vm_fd, size, gmem_flags)
    st = os.fstat(gmem_fd)
    gmem_dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    # after the ioctl: the marker names the new file's inode (the replay reads its flags)
    marker("create_gmem", ino=hex(st.st_ino), dev=gmem_dev, pages=pages, flags=gmem_flags,
           init_shared=int(bool(gmem_flags & GUEST_MEMFD_FLAG_INIT_SHARED)))
    try:
        memory = mmap.mmap(gmem_fd, size, mmap.MAP_SHARED)
    except OSError as err:
        raise Fatal(f"mmap(guest_memfd): {err.strerror}") from None
    hva = address_of(memory)
    summary.update(gmem_dev=gmem_dev, gmem_flags=gmem_flags, inode=st.st_ino,
                   inode_hex=hex(st.st_ino),
                   memslot={"slot": 0, "gpa": "0x0", "size": size, "hva": hex(hva)})

    marker("memslot", gmem_dev=gmem_dev, ino=hex(st.st_ino), hva=hex(hva), pages=pages)
    kvm_ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION2, kvm_userspace_memory_region2(
        slot=0, flags=KVM_MEM_GUEST_MEMFD, guest_phys_addr=0, memory_size=size,
        userspace_addr=hva, guest_memfd_offset=0, guest_memfd=gmem_fd))

    marker("fill", pages=pages)
    for index in range(pages):
        touch(memory, index, "fill")
    summary["pfns_after_fill"] = pfns(hva, pages)

    result_gpa = (pages - 1) * PAGE_SIZE
    marker("vcpu_run", result_gpa=hex(result_gpa))
    vcpu: dict = {"result_gpa": hex(result_gpa), "expected": hex(GUEST_MAGIC)}
    vcpu_fd = run_guest(kvm_fd, vm_fd, memory, result_gpa, vcpu)
    summary["vcpu"] = vcpu
    summary["pfns_after_vcpu_run"] = pfns(hva, pages)

    for start, end in PUNCH_RANGES:
        marker("punch_hole", start=start, end=end)
        punch_hole(gmem_fd, start, end)
    summary["punched"] = [list(range(start, end)) for start, end in PUNCH_RANGES]
    summary["pfns_after_punch"] = pfns(hva, pages)

    punched = [index for start, end in PUNCH_RANGES for index in range(start, end)]
    marker("refill", pages=",".join(map(str, punched)))
    for index in punched:
        touch(memory, index, "refill")
    summary["pfns_after_refill"] = pfns(hva, pages)

    marker("munmap", hva=hex(hva))
    memory.close()  # also closes Python's dup of the guest_memfd
    os.close(kvm_fd)
    closed = []
    for what, fd in (("vcpu", vcpu_fd), ("vm", vm_fd), ("gmem", gmem_fd)):
        if fd >= 0:
            marker("close", what=what)
            os.close(fd)
            closed.append(what)
    marker("done")
    summary["close_order"] = closed
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=8,
                        help=f"guest_memfd size in pages ({MIN_PAGES}..{MAX_PAGES}, default 8)")
    parser.add_argument("--marker", metavar="PATH",
                        help="a tracefs trace_marker file to announce each step on")
    args = parser.parse_args(argv)
    if not MIN_PAGES <= args.pages <= MAX_PAGES:
        parser.error(f"--pages must be between {MIN_PAGES} and {MAX_PAGES}")
    marker = None
    try:
        marker = Marker(args.marker)
        summary = lifecycle(args.pages, marker)
    except (GmemUnavailable, KvmIoctlError, Fatal) as err:
        print(f"gmem_lifecycle: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"gmem_lifecycle: {err.filename or 'error'}: {err.strerror}", file=sys.stderr)
        return 2
    finally:
        if marker:
            marker.close()
    summary["marker"] = args.marker
    json.dump(summary, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
