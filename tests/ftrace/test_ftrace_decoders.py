"""Typed decoders: the upstream events of docs/protocol.md §6 and the poisoncheck probes."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from validator.ftrace import LineKind, Probe, convert, decode_kv, iter_events
# the reader as poisoncheck runs it: the probe catalogue's events typed
from validator.replay.input import read_file, read_lines
from validator.replay.vocabulary import KNOWN_EVENTS
from validator.ftrace.decoders import compile_format, decode_probe

SAMPLE = Path(__file__).parent.parent / "data" / "ftrace" / "poisoncheck-sample.trace"
PREFIX = "       CPU 0/KVM-4145    [001] .....   100.000010: "


def read_one(body: str, engine: str = "fast"):
    (line,) = read_lines([PREFIX + body], engine=engine, require_ftrace=False)
    return line


@pytest.mark.parametrize("engine", ["fast", "lark"])
@pytest.mark.parametrize("body, system, fields", [
    ("mm_page_alloc: page=0000000046b2e1c5 pfn=0x1234 order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_ZERO",
     "kmem", {"page": "0000000046b2e1c5", "pfn": 0x1234, "order": 0, "migratetype": 1,
              "gfp_flags": "GFP_HIGHUSER_MOVABLE|__GFP_ZERO"}),
    # older kernels printed the pfn in decimal
    ("mm_page_alloc: page=ffffea0000048d00 pfn=4660 order=2 migratetype=0 gfp_flags=GFP_KERNEL",
     "kmem", {"page": "ffffea0000048d00", "pfn": 4660, "order": 2, "migratetype": 0, "gfp_flags": "GFP_KERNEL"}),
    ("mm_page_alloc: page=(null) pfn=0x0 order=9 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE",
     "kmem", {"page": "(null)", "pfn": 0, "order": 9, "migratetype": 1, "gfp_flags": "GFP_HIGHUSER_MOVABLE"}),
    ("mm_page_free: page=0000000046b2e1c5 pfn=0x1234 order=0", "kmem", {"page": "0000000046b2e1c5", "pfn": 0x1234, "order": 0}),
    ("mm_page_free: page=0000000046b2e1c5 pfn=4660 order=3", "kmem", {"page": "0000000046b2e1c5", "pfn": 4660, "order": 3}),
    ("memory_failure_event: pfn 0x1234: recovery action for dirty LRU page: Recovered",
     "ras", {"pfn": 0x1234, "type": "dirty LRU page", "result": "Recovered"}),
    ("memory_failure_event: pfn 0x40000: recovery action for free huge page: Ignored",
     "ras", {"pfn": 0x40000, "type": "free huge page", "result": "Ignored"}),
    # gfn and SPTEs are %llx: hex without 0x
    ("kvm_tdp_mmu_spte_changed: as id 0 gfn 99 level 1 old_spte 600000455299b77 new_spte 5a0",
     "kvmmmu", {"as_id": 0, "gfn": 0x99, "level": 1, "old_spte": 0x600000455299B77, "new_spte": 0x5A0}),
    ("kvm_page_fault: vcpu 5 rip 0x7f08a4602116 address 0x0000000113600002 error_code 0x181",
     "kvm", {"vcpu": 5, "rip": 0x7F08A4602116, "address": 0x113600002, "error_code": 0x181}),
    # before the 2022 change: "address %lx error_code %x"
    ("kvm_page_fault: address 1000 error_code 14", "kvm", {"address": 0x1000, "error_code": 0x14}),
    ("kvm_vm_set_mem_attributes: 0x00000000000010 -- 0x00000000000200 [0x8]",
     "kvm", {"start": 0x10, "end": 0x200, "attr": 8}),
    # libtraceevent (perf, trace-cmd) prints %#x of 0 as a bare 0
    ("kvm_vm_set_mem_attributes: 0000000000000000 -- 0x00000000000200 [0x0]",
     "kvm", {"start": 0, "end": 0x200, "attr": 0}),
    # key=value renderings: trace-cmd report -R, and the `fields` trace option
    ("mm_page_alloc: pfn=4660 order=0 gfp_flags=3264 migratetype=1",
     "kmem", {"pfn": 4660, "order": 0, "gfp_flags": 3264, "migratetype": 1}),
    ("kvm_tdp_mmu_spte_changed: gfn=0x99 (153) old_spte=0x5a0 (1440) new_spte=0x0 (0) level=0x1 (1) as_id=0x0 (0)",
     "kvmmmu", {"gfn": 153, "old_spte": 1440, "new_spte": 0, "level": 1, "as_id": 0}),
])
def test_upstream_events(engine, body, system, fields):
    line = read_one(body, engine)
    assert line.kind is LineKind.EVENT
    (event,) = line.events
    assert event.system == system
    assert dict(event.fields) == fields
    assert all(isinstance(event.fields[key], int) for key in fields if isinstance(fields[key], int))


@pytest.mark.parametrize("engine", ["fast", "lark"])
@pytest.mark.parametrize("body", [
    "mm_page_alloc: page=00000000 pfn=zz order=0 migratetype=1 gfp_flags=x",
    "memory_failure_event: pfn 0x1234 recovered",
    "kvm_tdp_mmu_spte_changed: as id 0 gfn 99",
    "kvm_page_fault: vcpu 5 rip 0x1",
    "kvm_vm_set_mem_attributes: 0x10 - 0x11",
    "gmem_get_pfn: index=0x10 ret=0",  # a poisoncheck probe without its "(site)"
])
def test_typed_payload_that_does_not_fit_is_unparsed(engine, body):
    line = read_one(body, engine)
    assert line.kind is LineKind.UNPARSED
    assert "format" in line.reason or "probe payload" in line.reason


def test_perf_system_overrides_name_lookup():
    # a kprobe that happens to share a tracepoint name keeps its own group and payload
    (line,) = read_lines(["            perf  7760 [000]   690.547471:   probe:mm_page_free: (free_pages+0x0/0x30)"],
                         require_ftrace=False)
    (event,) = line.events
    assert (event.system, event.probe.kind) == ("probe", "kprobe")


def test_poisoncheck_sample():
    events = list(iter_events(read_file(SAMPLE)))
    names = {e.name for e in events if hasattr(e, "name")}
    # the sample predates hugetlb_alloc and the creation probes
    assert KNOWN_EVENTS.probe_names - {"hugetlb_alloc", "gmem_inode", "gmem_create"} <= names
    probes = [e for e in events if getattr(e, "probe", None)]
    assert {e.system for e in probes} == {"poisoncheck"}
    by_name = {e.name: e for e in events if hasattr(e, "name")}
    assert by_name["gmem_alloc"].probe == Probe("kprobe", "kvm_gmem_get_folio", "kvm_gmem_get_folio+0x0/0x1a0")
    assert dict(by_name["gmem_alloc"].fields) == {"index": 0x10, "pfn": 0x1234, "order": 0}
    assert by_name["gmem_host_fault"].probe == Probe("kretprobe", "kvm_gmem_fault_user_mapping", "caller+0x10/0x50")
    assert by_name["gmem_host_fault"].fields["ret"] == -133
    assert dict(by_name["gmem_convert"].fields) == {"start": 0x10, "end": 0x11, "to": "shared", "ret": -11}
    assert dict(by_name["vm_bugged"].fields) == {}
    assert by_name["kvm_tdp_mmu_spte_changed"].fields["new_spte"] == 0x600000001234B77
    lost = [e for e in events if not hasattr(e, "name")]
    assert lost == [(36, "lost_events", 3, 12)]


@pytest.mark.parametrize("payload, kind, func, site, fields", [
    ("(do_sys_open+0x0/0x220) mode=0x1a4", "kprobe", "do_sys_open", "do_sys_open+0x0/0x220", {"mode": 0x1A4}),
    ("(SyS_open+0x1e/0x20 <- do_sys_open) arg1=0x3", "kretprobe", "do_sys_open", "SyS_open+0x1e/0x20", {"arg1": 3}),
    ("(do_sys_open+0x0/0x220) filename=\"/etc/ld.so.cache\"", "kprobe", "do_sys_open", "do_sys_open+0x0/0x220",
     {"filename": "/etc/ld.so.cache"}),
    ("(0x48db60)", "uprobe", "0x48db60", "0x48db60", {}),
    # a module's function, as Linux 7.2 prints it (%pS adds the module)
    ("(kvm_gmem_fallocate+0x4/0x350 [kvm]) start=0 npages=5 mode=0x3", "kprobe",
     "kvm_gmem_fallocate", "kvm_gmem_fallocate+0x4/0x350 [kvm]", {"start": 0, "npages": 5, "mode": 3}),
    ("(kvm_mmu_faultin_pfn+0x20c/0x740 [kvm] <- kvm_gmem_get_pfn) pfn=0x9631 ret=0", "kretprobe",
     "kvm_gmem_get_pfn", "kvm_mmu_faultin_pfn+0x20c/0x740 [kvm]", {"pfn": 0x9631, "ret": 0}),
    ("(0x4005e0 <- 0x6e540) file=0x0", "uretprobe", "0x6e540", "0x4005e0", {"file": 0}),
])
def test_decode_probe(payload, kind, func, site, fields):
    probe, got = decode_probe(payload)
    assert probe == Probe(kind, func, site)
    assert dict(got) == fields


@pytest.mark.parametrize("payload", ["(not a site) x=1", "(a+0x1/0x2", "no parens", "(x <- )"])
def test_decode_probe_rejects(payload):
    assert decode_probe(payload) is None


@pytest.mark.parametrize("raw, value", [
    ("42", 42), ("-133", -133), ("0x1f", 31), ("0x151a (5402)", 5402), ("7778999 [ns]", 7778999),
    ('"private"', "private"), ('"a \\"b\\""', 'a "b"'), ("R+", "R+"), ("000000004a2037d1", "000000004a2037d1"),
    ("1" * 5000, "1" * 5000),  # int() refuses it: stays a string, no exception
])
def test_convert(raw, value):
    assert convert(raw) == value


def test_decode_kv_never_raises_and_keeps_leading_words_out():
    assert decode_kv("video_subcore0_clk_src state=200000000 cpu_id=7") == {"state": 200000000, "cpu_id": 7}
    assert decode_kv("dev 8,13 ino 5898483") == {}
    assert decode_kv("a\tb=1") == {}  # the grammar has no tab between words: no fields, no error
    assert decode_kv("") == {}


def test_compile_format_checks_names():
    with pytest.raises(ValueError):
        compile_format("pfn %lx order %d", ("pfn",))


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(
    st.from_regex(r"[A-Za-z_][\w.]{0,6}", fullmatch=True),
    st.text(st.sampled_from(list("0x1fA-_.\t()[]é\udcff9")), max_size=8)), min_size=1, max_size=5))
def test_plain_probe_arguments_decode_as_the_grammar_does(pairs):
    """decode_probe's shortcut for plain "k=v k=v" arguments (split at spaces) gives what
    the grammar's key=value reading gives."""
    from validator.ftrace.decoders import _SIMPLE_ARGS, decode_kv, decode_simple_kv
    args = " ".join(f"{k}={v}" for k, v in pairs)
    if _SIMPLE_ARGS.fullmatch(args):
        assert decode_simple_kv(args) == decode_kv(args)
