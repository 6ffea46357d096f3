"""Find the device number of guest_memfd's pseudo-filesystem by creating one.

filemap events name a page-cache file as `dev MAJ:MIN ino INO`.  guest_memfd's
files live on an internal filesystem whose minor is assigned at boot, so the
only reliable way to know it is to create a guest_memfd and fstat() it.

The KVM uapi numbers and structs below follow include/uapi/linux/kvm.h and
arch/x86/include/uapi/asm/kvm.h of Linux 6.18; the ioctl numbers are computed
from the struct sizes the way the _IO/_IOR/_IOW/_IOWR macros do.
exercise/gmem_lifecycle.py imports them too.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os

__all__ = ["GmemUnavailable", "KvmIoctlError", "gmem_device", "kvm_ioctl"]

# --- ioctl number encoding (include/uapi/asm-generic/ioctl.h) ---------------
_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2
KVMIO = 0xAE


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (KVMIO << 8) | nr


def _IO(nr: int) -> int:
    return _ioc(_IOC_NONE, nr, 0)


def _IOR(nr: int, struct: type) -> int:
    return _ioc(_IOC_READ, nr, ctypes.sizeof(struct))


def _IOW(nr: int, struct: type) -> int:
    return _ioc(_IOC_WRITE, nr, ctypes.sizeof(struct))


def _IOWR(nr: int, struct: type) -> int:
    return _ioc(_IOC_READ | _IOC_WRITE, nr, ctypes.sizeof(struct))


# --- structs (field order and sizes exactly as in the uapi headers) ---------
u8, u16, u32, u64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64


class kvm_create_guest_memfd(ctypes.Structure):  # 64 bytes
    _fields_ = [("size", u64), ("flags", u64), ("reserved", u64 * 6)]


class kvm_userspace_memory_region2(ctypes.Structure):  # 160 bytes
    _fields_ = [("slot", u32), ("flags", u32), ("guest_phys_addr", u64),
                ("memory_size", u64), ("userspace_addr", u64),
                ("guest_memfd_offset", u64), ("guest_memfd", u32),
                ("pad1", u32), ("pad2", u64 * 14)]


class kvm_regs(ctypes.Structure):  # 144 bytes, x86
    _fields_ = [(name, u64) for name in (
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags")]


class kvm_segment(ctypes.Structure):  # 24 bytes
    _fields_ = [("base", u64), ("limit", u32), ("selector", u16), ("type", u8),
                ("present", u8), ("dpl", u8), ("db", u8), ("s", u8), ("l", u8),
                ("g", u8), ("avl", u8), ("unusable", u8), ("padding", u8)]


class kvm_dtable(ctypes.Structure):  # 16 bytes
    _fields_ = [("base", u64), ("limit", u16), ("padding", u16 * 3)]


class kvm_sregs(ctypes.Structure):  # 312 bytes
    _fields_ = ([(s, kvm_segment) for s in ("cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt")]
                + [("gdt", kvm_dtable), ("idt", kvm_dtable)]
                + [(r, u64) for r in ("cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apic_base")]
                + [("interrupt_bitmap", u64 * 4)])


class kvm_cpuid_entry2(ctypes.Structure):  # 40 bytes
    _fields_ = [("function", u32), ("index", u32), ("flags", u32), ("eax", u32),
                ("ebx", u32), ("ecx", u32), ("edx", u32), ("padding", u32 * 3)]


class kvm_cpuid2(ctypes.Structure):  # header only (8 bytes); entries follow it
    _fields_ = [("nent", u32), ("padding", u32)]


def kvm_cpuid2_with(nent: int) -> ctypes.Structure:
    """A kvm_cpuid2 with room for `nent` entries (a flexible array in C)."""
    class kvm_cpuid2_n(ctypes.Structure):
        _fields_ = [("nent", u32), ("padding", u32), ("entries", kvm_cpuid_entry2 * nent)]
    return kvm_cpuid2_n(nent=nent)


# --- ioctls -----------------------------------------------------------------
KVM_GET_API_VERSION = _IO(0x00)
KVM_CREATE_VM = _IO(0x01)
KVM_CHECK_EXTENSION = _IO(0x03)
KVM_GET_VCPU_MMAP_SIZE = _IO(0x04)
KVM_GET_SUPPORTED_CPUID = _IOWR(0x05, kvm_cpuid2)
KVM_CREATE_VCPU = _IO(0x41)
KVM_SET_USER_MEMORY_REGION2 = _IOW(0x49, kvm_userspace_memory_region2)
KVM_RUN = _IO(0x80)
KVM_GET_REGS = _IOR(0x81, kvm_regs)
KVM_SET_REGS = _IOW(0x82, kvm_regs)
KVM_GET_SREGS = _IOR(0x83, kvm_sregs)
KVM_SET_SREGS = _IOW(0x84, kvm_sregs)
KVM_SET_CPUID2 = _IOW(0x90, kvm_cpuid2)
KVM_CREATE_GUEST_MEMFD = _IOWR(0xD4, kvm_create_guest_memfd)

IOCTL_NAMES = {number: name for name, number in list(globals().items())
               if name.startswith("KVM_") and isinstance(number, int) and number > 0xFF}

KVM_API_VERSION = 12
KVM_CAP_USER_MEMORY2 = 231
KVM_CAP_GUEST_MEMFD = 234
KVM_CAP_GUEST_MEMFD_FLAGS = 244
KVM_MEM_GUEST_MEMFD = 1 << 2
GUEST_MEMFD_FLAG_MMAP = 1 << 0
GUEST_MEMFD_FLAG_INIT_SHARED = 1 << 1

# struct kvm_run (the vCPU's mmap): exit_reason is the u32 at offset 8; the
# exit union starts at offset 32.
KVM_RUN_EXIT_REASON_OFFSET = 8
KVM_RUN_EXIT_UNION_OFFSET = 32
KVM_EXIT_NAMES = {0: "KVM_EXIT_UNKNOWN", 1: "KVM_EXIT_EXCEPTION", 2: "KVM_EXIT_IO",
                  3: "KVM_EXIT_HYPERCALL", 4: "KVM_EXIT_DEBUG", 5: "KVM_EXIT_HLT",
                  6: "KVM_EXIT_MMIO", 8: "KVM_EXIT_SHUTDOWN", 9: "KVM_EXIT_FAIL_ENTRY",
                  10: "KVM_EXIT_INTR", 17: "KVM_EXIT_INTERNAL_ERROR"}
KVM_EXIT_HLT = 5
KVM_EXIT_INTR = 10


class GmemUnavailable(Exception):
    """No usable /dev/kvm or guest_memfd on this machine (one-line message)."""


class KvmIoctlError(Exception):
    """An ioctl failed; the message names it: 'KVM_CREATE_VM: Invalid argument'."""

    def __init__(self, request: int, err: OSError):
        self.ioctl = IOCTL_NAMES.get(request, hex(request))
        self.errno = err.errno
        super().__init__(f"{self.ioctl}: {os.strerror(err.errno) if err.errno else err}")


def kvm_ioctl(fd: int, request: int, arg: int | ctypes.Structure = 0) -> int:
    """ioctl() returning its int result; a ctypes struct is passed by reference
    and filled in place by the kernel."""
    try:
        if isinstance(arg, int):
            return fcntl.ioctl(fd, request, arg)
        return fcntl.ioctl(fd, request, arg, True)
    except OSError as err:
        raise KvmIoctlError(request, err) from None


def kvm_path() -> str:
    """/dev/kvm; POISONCHECK_KVM_DEV names another path (tests: a machine without KVM)."""
    return os.environ.get("POISONCHECK_KVM_DEV", "/dev/kvm")


def open_kvm() -> int:
    """/dev/kvm as an fd, or GmemUnavailable saying why not."""
    path = kvm_path()
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as err:
        raise GmemUnavailable(f"{path}: {err.strerror}") from None
    try:
        version = kvm_ioctl(fd, KVM_GET_API_VERSION)
    except KvmIoctlError as err:
        os.close(fd)
        raise GmemUnavailable(f"{path}: {err}") from None
    if version != KVM_API_VERSION:
        os.close(fd)
        raise GmemUnavailable(f"{path}: API version {version}, expected {KVM_API_VERSION}")
    return fd


def create_guest_memfd(vm_fd: int, size: int, flags: int) -> int:
    return kvm_ioctl(vm_fd, KVM_CREATE_GUEST_MEMFD, kvm_create_guest_memfd(size=size, flags=flags))


def gmem_device() -> tuple[int, int]:
    """(major, minor) of the filesystem guest_memfd files live on."""
    kvm_fd = open_kvm()
    vm_fd = gmem_fd = -1
    try:
        vm_fd = kvm_ioctl(kvm_fd, KVM_CREATE_VM, 0)
        try:
            gmem_fd = create_guest_memfd(vm_fd, 4096, 0)
        except KvmIoctlError as err:
            if err.errno != errno.EINVAL:
                raise
            # Some configurations may insist on flags; 3 is what this kernel offers.
            gmem_fd = create_guest_memfd(
                vm_fd, 4096, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED)
        st_dev = os.fstat(gmem_fd).st_dev
        return os.major(st_dev), os.minor(st_dev)
    except KvmIoctlError as err:
        raise GmemUnavailable(str(err)) from None
    finally:
        for fd in (gmem_fd, vm_fd, kvm_fd):
            if fd >= 0:
                os.close(fd)
