"""The bench's steps as `poisoncheck record` captures them: kprobe events with the fetch-args
of the probe catalogue (validator/data/probes.toml), as the lab's captures show them
(traces/real/lab72-*).

KprobeRenderer is bench_text.BenchRenderer with each probe line rewritten into the form the
catalogue's set-up makes the kernel print: its site as kprobe_events prints it (entry
"(sym+0x4/size [module])", return "(caller+off/size [module] <- sym)"), then the event's
fetch-args in the catalogue's order and print types (x64 as 0x.., s32 and bitfields as
decimal).  What the catalogue cannot fetch is missing as on a real kernel: gmem_alloc,
gmem_host_fault, gmem_error_folio, gmem_free and tdx_reclaim print a struct page pointer and
no pfn (the replay links it to the pfn of the page-cache add of its index), a refused host
fault has no page (vmf->page is not set: page=0x0, found by its index), and gmem_punch_hole
and gmem_convert print a page count instead of the end.  Every other line (the upstream
tracepoints, the noise) is BenchRenderer's.
"""

from __future__ import annotations

from validator.synth.bench_text import BenchRenderer

VMEMMAP = 0xfffffcf7c0000000    # struct page array of the lab kernel (KASLR'd vmemmap_base)
STRUCT_PAGE = 64                # sizeof(struct page), x86-64
GMEM_INO = 0x5a2b               # the inode bench_text's page-cache events name
GMEM_MAGIC = 0x474d454d         # GUEST_MEMFD_MAGIC, gmem_alloc's filter
VM_FAULT_LOCKED = 0x200         # kvm_gmem_fault_user_mapping()'s success
TDX_OPERAND_BUSY = 0x8000020000000000   # a failed SEAMCALL's status (tdx_reclaim)

# Where each probe fires, as kprobe_events prints it on the lab kernel (traces/real/), or
# for TDX's and the designs' functions (no capture has them) in the same manner.
SITES = {
    "gmem_alloc": "filemap_add_folio+0x4/0x210",
    "gmem_get_pfn": "kvm_tdp_page_fault+0x1a1/0x2c0 [kvm] <- kvm_gmem_get_pfn",
    "tdx_aug": "set_external_spte_present+0x8e/0x1b0 [kvm] <- tdx_sept_set_private_spte",
    "tdx_remove": "handle_changed_spte+0x3f2/0x7d0 [kvm] <- tdx_sept_set_private_spte",
    "vm_bugged": "kvm_make_all_cpus_request+0x4/0x160 [kvm]",
    "set_hwpoison": "tdx_set_hwpoison+0x4/0x40 [kvm_intel]",
    "gmem_buggy_cleanup": "kvm_gmem_buggy_cleanup+0x4/0x90 [kvm]",
    "tdx_shutdown": "tdx_sept_set_private_spte+0x2c4/0x3c0 [kvm_intel] <- tdx_buggy_shutdown",
    "gmem_convert": "kvm_gmem_ioctl+0x1c6/0x2d0 [kvm] <- __kvm_gmem_set_attributes",
    "gmem_host_fault": "__do_fault+0x34/0x160 <- kvm_gmem_fault_user_mapping",
    "gmem_punch_hole": "kvm_gmem_fallocate+0x4/0x350 [kvm]",
    "gmem_error_folio": "kvm_gmem_error_folio+0x4/0x180 [kvm]",
    "gmem_free": "kvm_gmem_free_folio+0x4/0x50 [kvm]",
    "hkid_release": "tdx_mmu_release_hkid+0x1b8/0x2a0 [kvm_intel] <- tdh_mng_key_freeid",
    "tdx_reclaim": "tdx_reclaim_page+0x58/0xe0 [kvm_intel] <- tdh_phymem_page_reclaim",
}


def page_of(pfn: int) -> int:
    """The struct page pointer of a pfn (the vmemmap is one array)."""
    return VMEMMAP + pfn * STRUCT_PAGE


def _args(name: str, f: dict[str, str]) -> str:
    """The catalogue's fetch-args of probe `name`, printed, from BenchRenderer's fields `f`
    (numbers as it prints them: 0x.. or decimal)."""
    num = lambda key: int(f[key], 0)                            # noqa: E731
    page = lambda: f"0x{page_of(num('pfn')):x}"                 # noqa: E731
    ino = f"ino=0x{GMEM_INO:x}"
    if name == "gmem_alloc":
        return f"index={f['index']} page={page()} magic=0x{GMEM_MAGIC:x} {ino}"
    if name == "gmem_get_pfn":
        return (f"gfn={f['index']} base_gfn=0x0 pgoff=0x0 pfn={f['pfn']} page={page()} "
                f"ret={f['ret']}")
    if name in ("tdx_aug", "tdx_remove"):       # pfn: a bitfield of the SPTE, decimal
        return f"gfn={f['gfn']} pfn={num('pfn')} level={f['level']} ret={f['ret']}"
    if name == "vm_bugged":
        return "req=0x301 bugged=1"
    if name == "set_hwpoison":
        return f"pfn={f['pfn']}"
    if name == "gmem_convert":
        start, to = num("start"), 1 if f["to"] == '"private"' else 0
        return (f"start=0x{start:x} npages=0x{num('end') - start:x} to={to} "
                f"ret={f['ret']}")
    if name == "gmem_host_fault":
        ret = num("ret")                        # 0, or the vm_fault_t error bits
        shown = page() if ret == 0 else "0x0"   # a refused fault sets no vmf->page
        return f"index={f['index']} page={shown} {ino} ret=0x{ret or VM_FAULT_LOCKED:x}"
    if name == "gmem_punch_hole":               # offset and len >> PAGE_SHIFT: decimal
        start = num("start")
        return f"start={start} npages={num('end') - start} mode=0x3 {ino}"
    if name == "gmem_error_folio":
        return f"index={f['index']} page={page()} {ino}"
    if name == "gmem_free":
        return f"page={page()}"
    if name == "hkid_release":
        return f"ret=0x{num('ret'):x}"
    if name == "tdx_reclaim":
        ret = TDX_OPERAND_BUSY if num("ret") else 0
        return f"page={page()} ret=0x{ret:x}"
    return ""                                   # gmem_buggy_cleanup, tdx_shutdown: no args


class KprobeRenderer(BenchRenderer):
    """BenchRenderer whose probe lines are record's kprobe events (see the module's doc)."""

    def probe(self, who, name: str, fields: str = "", flags: str = ".....") -> None:
        pairs = dict(pair.split("=", 1) for pair in fields.split())
        args = _args(name, pairs)
        self.emit(who, name, f"({SITES[name]})" + (f" {args}" if args else ""), flags)
