"""What a verdict rests on: which model variables the capture could observe at all,
and why a trace with no event about a guest_memfd folio proves nothing.

Absence of events is never proof: a variable no event shows is unknown to the
replay (any value the spec allows), so "accepted" means "consistent with what
was observed", and this module says what that was.
"""

from __future__ import annotations

from validator.replay.vocabulary import PROBE_PROTOCOL

# Model variable (as a reader knows it) -> (protocol events that show it, how to observe it).
OBSERVERS = (
    ("folioLoc: page cache, allocator", ("alloc", "cache_add", "cache_delete", "page_alloc",
                                         "page_free", "hugetlb_alloc", "gmem_free", "hugetlb_free"),
     "enable filemap:mm_filemap_add_to_page_cache/delete and kmem:mm_page_alloc/free"),
    ("sept, mirror: S-EPT and KVM's mirror", ("aug", "remove", "reclaim"),
     "no TDX probes (poisoncheck:tdx_aug, tdx_remove: kprobes on a TDX host)"),
    ("hwpoison", ("set_hwpoison", "memory_failure", "error_folio", "guest_get_pfn"),
     "no poison events (ras:memory_failure_event needs CONFIG_MEMORY_FAILURE; "
     "set_hwpoison is the HWPoison design's probe)"),
    ("hostMap: host mappings", ("host_fault",),
     "no host-fault probe (poisoncheck:gmem_host_fault needs kprobes); kvm_unmap_hva_range "
     "names host addresses only"),
    ("hostPin: GUP pins", (), "no event shows GUP pins"),
    ("attr: shareability", ("convert", "gmem_create", "gmem_created_marker"),
     "no conversion probe (poisoncheck:gmem_convert, in-place conversion series) and no "
     "file creation (poisoncheck:gmem_create, or the lab's create_gmem marker): each file "
     "judged both ways, starting private and starting shared"),
    ("vm: bugged, destroyed", ("vm_bugged", "hkid_release"),
     "no KVM_BUG_ON or HKID probes (poisoncheck:vm_bugged, hkid_release need kprobes)"),
    ("tdx, fd: the designs' own state", ("tdx_shutdown", "buggy_cleanup", "set_hwpoison"),
     "no design hook probes (the designs' patches)"),
    ("tdxRefs: TDX's folio references", (), "no event shows folio references"),
    ("unreset: pages not reset (partial-write erratum)", (),
     "no event shows tdx_quirk_reset_paddr() (it follows a successful removal)"),
    ("otherTds: the other TDs", (), "the capture shows one VM's events only"),
)
# Events counted but not replayed: shown so a reader sees what else the capture held.
CONTEXT = ("page_fault", "spte_changed", "set_spte", "host_unmap_range", "set_attributes")


def observability(planner, counted: dict | None = None, after: dict | None = None) -> dict:
    """{variable: {"observed": bool, "events": {protocol: count}, "missing": why}}: what the
    capture holds.  `counted`: the events the replay only counted (CONTEXT), by protocol;
    `after`: the protocol events after the verdict's line (not replayed, counted), whose
    counts are in "events" too and, apart, in "after_verdict"."""
    after = after or {}
    seen = dict(planner.seen)
    for name, n in (counted or {}).items():
        if name in CONTEXT:
            seen[name] = n
    for name, n in after.items():
        seen[name] = seen.get(name, 0) + n
    out = {}
    for variable, events, how in OBSERVERS:
        counts = {e: seen[e] for e in events if seen.get(e)}
        entry = {"observed": bool(counts), "events": counts}
        later = {e: after[e] for e in events if after.get(e)}
        if later:
            entry["after_verdict"] = later
        if not counts:
            entry["missing"] = _why_none(planner, events, how)
        out[variable] = entry
    context = {e: seen[e] for e in CONTEXT if seen.get(e)}
    if context:
        out["context (counted, no model variable)"] = {"observed": True, "events": context}
    return out


def _why_none(planner, events, how: str) -> str:
    """Why no event shows a variable: what record's marker says it set up, where it says."""
    if not planner.kprobes_set_up:
        return how
    probes = [name for name, protocol in PROBE_PROTOCOL.items() if protocol in events]
    absent = [name for name in probes if name in planner.left_out]
    present = [name for name in probes if name not in planner.left_out]
    if present:
        why = (f"none in the capture: record set up {', '.join(present)} and none fired "
               f"(absence is no proof)")
        return why + (f"; it left out {', '.join(absent)}, whose functions this kernel "
                      f"lacks" if absent else "")
    if absent:
        return f"record left out {', '.join(absent)}: this kernel lacks their functions"
    return how


def summary_lines(observability: dict) -> list[str]:
    """One line per variable, for the text verdict."""
    lines = []
    for variable, entry in observability.items():
        if entry["observed"]:
            shown = ", ".join(f"{e} {n}" for e, n in entry["events"].items())
            later = entry.get("after_verdict")
            if later:
                shown += "; after the verdict's line, not replayed: " + ", ".join(
                    f"{e} {n}" for e, n in later.items())
            lines.append(f"    {variable}: observed ({shown})")
        else:
            lines.append(f"    {variable}: not observed, {entry['missing']}")
    return lines


def why_no_evidence(planner) -> str:
    """The reason of an inconclusive verdict when no event about a folio was replayed."""
    if planner.gmem_dev is None and planner.other_devs:
        devs = ", ".join(f"{a}:{b}" for a, b in sorted(planner.other_devs, key=str))
        return (f"no protocol event about a guest_memfd folio was replayed: the capture has "
                f"page-cache events on {devs}, but which device is guest_memfd's is not "
                f"known; pass --gmem-dev MAJ:MIN (fstat() a guest_memfd: st_dev) or capture "
                f"with `poisoncheck record --apply`, which writes it into the capture")
    if planner.gmem_dev is not None and not planner.folios:
        dev = f"{planner.gmem_dev[0]}:{planner.gmem_dev[1]}"
        return (f"no protocol event about a guest_memfd folio was replayed: no page-cache add "
                f"on guest_memfd's device {dev} (from {planner.gmem_dev_from}); enable "
                f"filemap:mm_filemap_add_to_page_cache and mm_filemap_delete_from_page_cache")
    return ("no protocol event about a guest_memfd folio was replayed: the capture shows no "
            "folio entering guest_memfd (filemap:mm_filemap_add_to_page_cache on its device, "
            "or poisoncheck:gmem_alloc); capture with `poisoncheck record --apply`")


def notes(planner) -> list[str]:
    """Remarks on how the capture was read."""
    out = []
    if planner.gmem_dev is not None:
        dev = f"{planner.gmem_dev[0]}:{planner.gmem_dev[1]}"
        out.append(f"guest_memfd's device {dev}, from {planner.gmem_dev_from}")
    if planner.links.conflict:
        out.append("struct page pointers disagree on the vmemmap base: only pointers seen "
                   "beside a pfn are linked")
    return out
