"""The planner on lines in the kernel's own formats: what `record` sets up and a real kernel
prints (upstream tracepoints, fetch-args rendered as trace_probe.c renders them), the
allocation claim, guest_memfd's device, and evidence."""

import pytest
from click.testing import CliRunner

from validator import model
from validator.cli import cli
from validator.ftrace import iter_events
from validator.replay.input import read_lines
from validator.replay.folio_table import PageLinks
from validator.replay.engine import replay
from validator.replay.vocabulary import observe, Observed

DEV = "0:16"
HEAD = "# tracer: nop\n#\n"
VMM = "          python-19094   [000] .....   952.{us:06d}: "
OTHER = "       stress-ng-5001    [001] .....   952.{us:06d}: "
# filemap_add_folio() entry as record's gmem_alloc probe prints it (x64 args: 0x%Lx)
GMEM_ALLOC = "gmem_alloc: (filemap_add_folio+0x0/0x1e0) index={index:#x} page={page:#x} magic=0x474d454d"
VMEMMAP = 0xffffea0000000000


def add(pfn, index, dev=DEV):
    return f"mm_filemap_add_to_page_cache: dev {dev} ino 5a2b pfn={pfn:#x} ofs={index * 4096} order=0"


def delete(pfn, index, dev=DEV):
    return (f"mm_filemap_delete_from_page_cache: dev {dev} ino 5a2b pfn={pfn:#x} "
            f"ofs={index * 4096} order=0")


def alloc(pfn, order=0):
    return (f"mm_page_alloc: page=00000000b2eb28fd pfn={pfn:#x} order={order} migratetype=0 "
            "gfp_flags=GFP_HIGHUSER|__GFP_ZERO")


def free(pfn, order=0):
    return f"mm_page_free: page=00000000b2eb28fd pfn={pfn:#x} order={order}"


def trace(*events, marker=True):
    lines = [HEAD.rstrip("\n")]
    if marker:
        lines.append(VMM.format(us=1) + f"tracing_mark_write: poisoncheck gmem_dev={DEV} kprobes=0")
    for i, event in enumerate(events, 2):
        who, text = event if isinstance(event, tuple) else (VMM, event)
        lines.append(who.format(us=i * 10) + text)
    return "\n".join(lines) + "\n"


def judge(text, design="HWPoison", **kw):
    return replay(iter_events(read_lines(text.splitlines())), design, **kw)


LIFE = [alloc(0x120045), add(0x120045, 0), alloc(0x120046), add(0x120046, 1),
        delete(0x120045, 0), free(0x120045),
        (OTHER, alloc(0x120045)),                 # another user gets the freed pfn at once
        (OTHER, free(0x120045)),                  # ... and frees it
        alloc(0x120045), add(0x120045, 5),        # it comes back, at another index
        delete(0x120045, 5), free(0x120045), delete(0x120046, 1), free(0x120046)]


@pytest.mark.parametrize("design", model.DESIGNS)
def test_a_real_kernel_life_cycle_from_tracepoints_alone(design):
    v = judge(trace(*LIFE), design)
    assert v.verdict == "accepted", v.to_json()
    assert v.folio_events == v.events == 12     # all but the two allocs before any add
    assert v.folios == 2
    folio_loc = v.observability["folioLoc: page cache, allocator"]
    assert folio_loc["observed"] and folio_loc["events"]["cache_add"] == 3
    assert not v.observability["sept, mirror: S-EPT and KVM's mirror"]["observed"]
    assert any("device 0:16, from the marker line" in n for n in v.notes)


def test_page_cache_events_of_other_file_systems_are_not_guest_memfds():
    v = judge(trace(add(0x5000, 0, dev="8:1"), delete(0x5000, 0, dev="8:1"), free(0x5000)))
    assert v.verdict == "inconclusive" and v.folio_events == 0
    assert "no page-cache add on guest_memfd's device 0:16" in v.reason


def test_an_empty_capture_is_inconclusive_exit_3(tmp_path):
    path = tmp_path / "header.trace"
    path.write_text("# tracer: nop\n")
    result = CliRunner().invoke(cli, ["validate", str(path), "-d", "NoHold"])
    assert result.exit_code == 3, result.output
    assert "no protocol event about a guest_memfd folio" in result.output
    assert "evidence: 0 protocol event(s)" in result.output
    result = CliRunner().invoke(cli, ["validate", str(path), "--design", "all"])
    assert result.exit_code == 3 and "designs that accept: none" in result.output


def test_the_claim_of_an_own_allocation_must_be_confirmed():
    # allocated, then allocated again with no page-cache add between: the first was
    # another user's (the claim lapses), and that user still holds it
    v = judge(trace(alloc(0x9), add(0x9, 0), delete(0x9, 0), free(0x9),
                    (OTHER, alloc(0x9)), (OTHER, alloc(0x9))))
    assert (v.verdict, v.kind, v.protocol_event, v.line) == ("violation", "step", "page_alloc", 9)
    # the same claim confirmed by the add that follows: accepted
    v = judge(trace(alloc(0x9), add(0x9, 0), delete(0x9, 0), free(0x9), alloc(0x9), add(0x9, 3)))
    assert v.verdict == "accepted", v.to_json()


def test_freed_while_cached_or_handed_out_while_cached_is_a_violation():
    for bad in (free(0x9), (OTHER, alloc(0x9)), add(0x9, 7), (OTHER, free(0x8, order=3))):
        v = judge(trace(alloc(0x9), add(0x9, 0), bad, delete(0x9, 0), free(0x9)), "NoHold")
        assert (v.verdict, v.kind, v.line) == ("violation", "step", 6), (bad, v.to_json())


def test_without_page_cache_events_a_free_may_hide_the_truncation():
    # older captures (the gmem_free probe, no filemap events) keep working
    text = trace("gmem_alloc: (filemap_add_folio+0x0/0x1e0) index=0x0 pfn=0x9 order=0",
                 "gmem_free: (kvm_gmem_free_folio+0x0/0x60) pfn=0x9 order=0", free(0x9),
                 marker=False)
    assert judge(text).verdict == "accepted"


def test_records_gmem_alloc_format_replays_linked_by_index():
    page = VMEMMAP + 0x1bf796 * 64
    text = trace(GMEM_ALLOC.format(index=9, page=page), add(0x1bf796, 9), delete(0x1bf796, 9),
                 # .free_folio, after the delete: it prints only the folio pointer, linked
                 f"gmem_free: (kvm_gmem_free_folio+0x0/0x60) page={page:#x}",
                 free(0x1bf796))
    v = judge(text, "NoHold")
    assert v.verdict == "accepted", v.to_json()
    assert v.folios == 1 and v.folio_events >= 3
    assert not any("gmem_free on a pfn" in n for n in v.notes), v.notes
    # alone, the gmem_alloc line links nothing and proves nothing
    v = judge(trace(GMEM_ALLOC.format(index=9, page=page)))
    assert v.verdict == "inconclusive" and v.folio_events == 0


def test_page_links_learn_the_vmemmap_base_from_two_agreeing_links():
    links = PageLinks()
    links.add(VMEMMAP + 5 * 64, 5)
    assert links.pfn_of(VMEMMAP + 7 * 64) is None       # one link proves nothing
    links.add(VMEMMAP + 9 * 64, 9)
    assert links.pfn_of(VMEMMAP + 7 * 64) == 7
    links.add(VMEMMAP + 100, 11)                        # disagrees: exact links only
    assert links.conflict and links.pfn_of(VMEMMAP + 7 * 64) is None
    assert links.pfn_of(VMEMMAP + 9 * 64) == 9


@pytest.mark.parametrize("line, fields", [
    # kvm_gmem_get_pfn() return as record fetches it: index derived from gfn and the slot
    ("gmem_get_pfn: (kvm_mmu_faultin_pfn+0x2a1/0x6c0 <- kvm_gmem_get_pfn) gfn=0x109 "
     "base_gfn=0x100 pgoff=0x0 pfn=0x1bf796 page=0xffffea0006fde580 ret=-133",
     {"index": 9, "pfn": 0x1bf796, "ret": -133, "page": 0xffffea0006fde580}),
    # bitfield fetch-args print as unsigned decimals; end and to are derived / mapped
    ("gmem_convert: (kvm_gmem_ioctl+0x1c6/0x2d0 <- __kvm_gmem_set_attributes) start=4 "
     "npages=2 to=1 ret=-11", {"start": 4, "end": 6, "to": "private", "ret": -11}),
    # vm_fault_t: VM_FAULT_LOCKED (0x200) is success
    ("gmem_host_fault: (__do_fault+0x3b/0x160 <- kvm_gmem_fault_user_mapping) index=0x3 "
     "page=0xffffea0006fde580 ret=0x200", {"index": 3, "ret": 0, "page": 0xffffea0006fde580}),
    ("gmem_punch_hole: (kvm_gmem_fallocate+0x0/0x1c0) start=2 npages=3 mode=0x3",
     {"start": 2, "end": 5}),
])
def test_probe_lines_as_record_fetches_them(line, fields):
    event = next(iter_events(read_lines([VMM.format(us=5) + line])))
    observed = observe(event)
    assert isinstance(observed, Observed)
    assert observed.fields == fields


def test_gmem_dev_is_inferred_from_the_only_pseudo_filesystem(tmp_path):
    path = tmp_path / "t.trace"
    path.write_text(trace(*LIFE, add(0x700, 0, dev="8:1"), marker=False))
    result = CliRunner().invoke(cli, ["validate", str(path), "-d", "NoHold"])
    assert result.exit_code == 0, result.output
    assert "inferred: the only pseudo-filesystem device (major 0)" in result.output
    # two pseudo-filesystems: not inferred, inconclusive, and the reason says what to do
    path.write_text(trace(*LIFE, add(0x700, 0, dev="0:44"), marker=False))
    result = CliRunner().invoke(cli, ["validate", str(path), "-d", "NoHold"])
    assert result.exit_code == 3, result.output
    assert "pass --gmem-dev" in result.output and "0:16, 0:44" in result.output
    result = CliRunner().invoke(cli, ["validate", str(path), "-d", "NoHold", "--gmem-dev", DEV])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["validate", str(path), "--gmem-dev", "zero"])
    assert result.exit_code == 2 and "MAJ:MIN" in result.output


def test_a_conversion_range_costs_the_pages_the_trace_knows():
    text = trace("gmem_alloc: (filemap_add_folio+0x0/0x1e0) index=0x0 pfn=0x9 order=0",
                 "gmem_convert: (kvm_gmem_ioctl+0x1c6/0x2d0 <- __kvm_gmem_set_attributes) "
                 "start=0x0 end=0xffffffffffffffff to=\"shared\" ret=0", marker=False)
    v = judge(text, "NoHold")
    assert v.verdict == "accepted", v.to_json()


def test_an_over_long_line_does_not_stop_the_device_scan(tmp_path):
    path = tmp_path / "long.trace"
    path.write_text(HEAD + "x" * 3_000_000 + "\n" + trace(*LIFE).split("\n", 2)[2])
    from validator.replay.input import scan_gmem_dev
    assert scan_gmem_dev(str(path))[0] == (0, 16)
    result = CliRunner().invoke(cli, ["validate", str(path), "-d", "NoHold"])
    assert result.exit_code == 0, result.output
    assert "1 line(s) did not parse" in result.output


def test_record_refuses_a_bad_device():
    result = CliRunner().invoke(cli, ["record", "--gmem-dev", "16", "--tracefs", "/nonexistent"])
    assert result.exit_code == 2 and "MAJ:MIN" in result.output
