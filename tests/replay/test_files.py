"""Several guest_memfd files in one capture (a host runs many VMs) and a file's first state
(GUEST_MEMFD_FLAG_INIT_SHARED), on lines as Linux 7.2 prints them for record's probes
(the module's probe site "func+0x4/0x350 [kvm]", kretprobes "caller+off/size <- func")."""

import pytest
from click.testing import CliRunner

from validator.cli import cli
from validator.ftrace import iter_events
from validator.replay.engine import replay
from validator.replay.input import read_lines
from validator.replay.reference import replay_reference
from validator.replay.tlc_engine import validate_tlc
from validator.tlc.setup import SetupError, tlc_setup

from test_planner import DEV, VMEMMAP, alloc, free, trace

A, B = 0x7b1, 0x7f1


def add(pfn, index, ino=A):
    return (f"mm_filemap_add_to_page_cache: dev {DEV} ino {ino:x} pfn={pfn:#x} "
            f"ofs={index * 4096} order=0")


def delete(pfn, index, ino=A):
    return (f"mm_filemap_delete_from_page_cache: dev {DEV} ino {ino:x} pfn={pfn:#x} "
            f"ofs={index * 4096} order=0")


def host_fault(index, ino=None, page=0, ret=0x200):
    inode = f" ino={ino:#x}" if ino is not None else ""
    return (f"gmem_host_fault: (__do_fault+0x34/0x160 <- kvm_gmem_fault_user_mapping) "
            f"index={index:#x} page={page:#x}{inode} ret={ret:#x}")


def created(ino, flags):
    return f"tracing_mark_write: poisoncheck step=create_gmem vm=a ino={ino:#x} flags={flags}"


def creation_probes(ino, flags):
    return [f"gmem_inode: (kvm_gmem_create+0x109/0x260 [kvm] <- anon_inode_make_secure_inode) "
            f"ino={ino:#x} magic=0x474d454d",
            f"gmem_create: (kvm_vm_ioctl+0xaa0/0x1f00 [kvm] <- kvm_gmem_create) "
            f"flags={flags:#x} ret=6"]


def judge(text, design="NoHold", **kw):
    return replay(iter_events(read_lines(text.splitlines())), design, **kw)


FILL = [alloc(0x1000), add(0x1000, 0), host_fault(0, A)]
SIGBUS = "gmem_fault.shared: the page is private (SIGBUS)"


@pytest.mark.parametrize("flags, verdict", [(3, "accepted"), (1, "violation"), (0, "violation")])
def test_a_host_fault_is_judged_by_the_files_creation_flags(flags, verdict):
    """INIT_SHARED (2): the file starts shared and a host fault maps the page; without it
    the page is private and kvm_gmem_fault_user_mapping() returns VM_FAULT_SIGBUS, so a
    successful fault is a step no design allows."""
    for first in ([created(A, flags)], creation_probes(A, flags)):
        v = judge(trace(*first, *FILL))
        assert v.verdict == verdict, v.to_json()
        if verdict == "violation":
            assert v.protocol_event == "host_fault" and SIGBUS in v.reason
            assert v.file == f"inode {A:#x} on {DEV}"
        assert v.observability["attr: shareability"]["observed"]


def test_a_file_whose_creation_the_capture_does_not_show_is_judged_both_ways():
    """Before: every file started private, and a real INIT_SHARED capture's first host fault
    was refused by every design."""
    v = judge(trace(*FILL))
    assert v.verdict == "accepted", v.to_json()
    shareability = v.observability["attr: shareability"]
    assert not shareability["observed"] and "both ways" in shareability["missing"]


def test_the_reading_holds_for_the_whole_file():
    """One reading per file: a file whose page 0 the host mapped (shared) cannot have
    page 1 faulted private by the guest; two files may start differently."""
    text = trace(alloc(0x1000), add(0x1000, 0), host_fault(0, A),
                 alloc(0x2000), add(0x2000, 0, B), host_fault(0, B))
    assert judge(text).verdict == "accepted"
    ref = replay_reference(iter_events(read_lines(text.splitlines())), "NoHold")
    assert ref.verdict == "accepted"


def test_files_are_kept_apart_by_inode():
    """The same index in two files: a host fault on B's index 0 is about B's folio; B was
    made without INIT_SHARED, A with it."""
    base = [created(A, 3), created(B, 1), alloc(0x1000), add(0x1000, 0),
            alloc(0x2000), add(0x2000, 0, B)]
    assert judge(trace(*base, host_fault(0, A))).verdict == "accepted"
    v = judge(trace(*base, host_fault(0, B)))
    assert v.verdict == "violation" and v.file == f"inode {B:#x} on {DEV}", v.to_json()
    # --gmem-ino: file A alone; B's events are skipped and counted
    only_a = judge(trace(*base, host_fault(0, B)), gmem_ino=A)
    assert only_a.verdict == "accepted"
    assert any("another guest_memfd file (--gmem-ino)" in n for n in only_a.notes)
    # ... and B alone, its creation marker read (flags 1: private, the fault is refused)
    assert judge(trace(*base, host_fault(0, B)), gmem_ino=B).verdict == "violation"


def gmem_alloc(pfn, index, ino):
    """record's gmem_alloc: a folio pointer (vmemmap + pfn * 64), linked by the add."""
    return (f"gmem_alloc: (filemap_add_folio+0x4/0x210) index={index:#x} "
            f"page={VMEMMAP + pfn * 64:#x} magic=0x474d454d ino={ino:#x}")


def gmem_free(pfn):
    return f"gmem_free: (kvm_gmem_free_folio+0x4/0x50 [kvm]) page={VMEMMAP + pfn * 64:#x}"


def test_gmem_ino_follows_a_pfn_that_moves_to_another_file():
    """A's pfn, punched and freed, is taken by B: for --gmem-ino A it leaves the view (B's
    free of it, named by a folio pointer only, is not A's), and comes back to A as a new
    folio.  Before, the three-VM capture judged with --gmem-ino was a false alarm there."""
    text = trace(created(A, 3), created(B, 3),
                 alloc(0x1000), gmem_alloc(0x1000, 0, A), add(0x1000, 0),
                 alloc(0x1001), gmem_alloc(0x1001, 1, A), add(0x1001, 1),   # two links: base
                 delete(0x1000, 0), gmem_free(0x1000), free(0x1000),
                 alloc(0x1000), gmem_alloc(0x1000, 0, B), add(0x1000, 0, B),
                 delete(0x1000, 0, B), gmem_free(0x1000), free(0x1000),
                 alloc(0x1000), gmem_alloc(0x1000, 2, A), add(0x1000, 2))
    assert judge(text).verdict == "accepted"
    for ino in (A, B):
        v = judge(text, gmem_ino=ino)
        assert v.verdict == "accepted", (hex(ino), v.to_json())
    # A still holds the pfn when B adds it: judged, and impossible
    held = trace(created(A, 3), created(B, 3), alloc(0x1000), add(0x1000, 0), add(0x1000, 1, B))
    assert judge(held, gmem_ino=A).verdict == "violation"


def test_an_index_without_its_inode_is_ambiguous_with_several_files():
    base = [created(A, 3), created(B, 3), alloc(0x1000), add(0x1000, 0),
            alloc(0x2000), add(0x2000, 0, B)]
    v = judge(trace(*base, host_fault(0)))
    assert v.verdict == "accepted"
    assert any("names an index but no inode, and the capture has several guest_memfd files"
               in n for n in v.notes), v.notes


def test_a_pfn_of_one_file_cached_in_another_is_a_violation():
    v = judge(trace(created(A, 3), created(B, 3), alloc(0x1000), add(0x1000, 0),
                    add(0x1000, 2, B)))
    assert (v.verdict, v.kind, v.protocol_event) == ("violation", "step", "cache_add")


def test_the_evidence_counts_what_follows_a_violation():
    """Today's capture full of memory_failure_event lines after a violation said
    'hwpoison: not observed'."""
    errors = [f"memory_failure_event: pfn {pfn:#x}: recovery action for dirty unevictable "
              f"LRU page: Failed" for pfn in (0x1000, 0x1000)]
    v = judge(trace(created(A, 1), *FILL, *errors))
    assert v.verdict == "violation"
    hwpoison = v.observability["hwpoison"]
    assert hwpoison["observed"] and hwpoison["events"]["memory_failure"] == 2
    assert hwpoison["after_verdict"] == {"memory_failure": 2}


def test_validate_names_the_file_and_takes_gmem_ino(tmp_path):
    path = tmp_path / "t.trace"
    path.write_text(trace(created(A, 3), created(B, 1), alloc(0x1000), add(0x1000, 0),
                          alloc(0x2000), add(0x2000, 0, B), host_fault(0, B)))
    runner = CliRunner()
    result = runner.invoke(cli, ["validate", str(path)])
    assert result.exit_code == 1
    assert f"  file:     guest_memfd inode {B:#x} on {DEV}" in result.stdout
    assert runner.invoke(cli, ["validate", str(path), "--gmem-ino", f"{A:x}"]).exit_code == 0
    bad = runner.invoke(cli, ["validate", str(path), "--gmem-ino", "7b1z"])
    assert bad.exit_code == 2 and "is not an inode number in hex" in bad.stderr


@pytest.fixture(scope="module")
def tlc(tmp_path_factory):
    try:
        return tlc_setup(tmp_path_factory.mktemp("tlc"), 300)
    except SetupError as err:
        pytest.skip(f"TLC is not set up: {err}")


@pytest.mark.parametrize("first, verdict", [([created(A, 3)], "accepted"),
                                            ([created(A, 1)], "violation"),
                                            ([], "accepted")])
def test_the_tlc_engine_reads_the_first_state_alike(tlc, tmp_path, first, verdict):
    text = trace(*first, *FILL)
    items = list(iter_events(read_lines(text.splitlines())))
    v = validate_tlc(items, "NoHold", tlc, tmp_path / "w")
    assert v.verdict == verdict == judge(text).verdict, v.to_json()


def test_the_evidence_says_which_probes_record_left_out_and_which_never_fired():
    """Before, a capture with kprobes said 'vm: not observed ... need kprobes' although
    record had set up vm_bugged (it never fired) and left hkid_release out (no function)."""
    marker = (f"tracing_mark_write: poisoncheck gmem_dev={DEV} kprobes=1 "
              f"left_out=hkid_release,tdx_aug,tdx_reclaim,tdx_remove")
    text = trace(marker, created(A, 3), *FILL, marker=False)
    seen = judge(text).observability
    assert seen["sept, mirror: S-EPT and KVM's mirror"]["missing"] == (
        "record left out tdx_aug, tdx_remove, tdx_reclaim: this kernel lacks their functions")
    assert seen["vm: bugged, destroyed"]["missing"].startswith(
        "none in the capture: record set up vm_bugged and none fired (absence is no proof); "
        "it left out hkid_release")
    # without the marker's word on kprobes, the general reason stays
    plain = judge(trace(created(A, 3), *FILL)).observability
    assert "need kprobes" in plain["vm: bugged, destroyed"]["missing"]
