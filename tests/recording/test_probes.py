"""The probe catalogue: coverage of the issue's table, the kprobe_events lines, decode(), and
the loader's checks (each error names the file and the event): the replay's
(validator/replay/catalogue.py) and the probe-making ones (validator/recording/kprobes.py)."""

import re
import tomllib
from pathlib import Path

import pytest

from validator.recording.kprobes import (CatalogueError, default_path, kprobe_line, kprobe_lines,
                                         load_catalogue, remove_line, upstream_events)
from validator.replay import catalogue as replay_catalogue
from validator.replay.catalogue import PROTOCOL_EVENTS
from validator.replay.probe_spec import normalise_ret

ROOT = Path(__file__).resolve().parents[2]

# The table (§1): probe -> (fields, protocol event), in table order.
PROBE_TABLE = [
    ("gmem_alloc", ["index", "pfn", "order"], "alloc"),
    ("gmem_get_pfn", ["index", "pfn", "ret"], "guest_get_pfn"),
    ("tdx_aug", ["gfn", "pfn", "level", "ret"], "aug"),
    ("tdx_remove", ["gfn", "pfn", "level", "ret"], "remove"),
    ("vm_bugged", [], "vm_bugged"),
    ("gmem_convert", ["start", "end", "to", "ret"], "convert"),
    ("gmem_host_fault", ["index", "pfn", "ret"], "host_fault"),
    ("gmem_punch_hole", ["start", "end"], "punch_hole"),
    ("gmem_error_folio", ["pfn"], "error_folio"),
    ("gmem_free", ["pfn", "order"], "gmem_free"),
    ("hugetlb_free", ["pfn", "order"], "hugetlb_free"),
    ("set_hwpoison", ["pfn"], "set_hwpoison"),
    ("gmem_buggy_cleanup", [], "buggy_cleanup"),
    ("tdx_shutdown", [], "tdx_shutdown"),
    ("hkid_release", ["ret"], "hkid_release"),
    ("tdx_reclaim", ["pfn", "ret"], "reclaim"),
    # Not in the table: added so HugeTLB pool reuse shows in a trace (README).
    ("hugetlb_alloc", ["pfn", "order"], "hugetlb_alloc"),
    # A file's creation flags (INIT_SHARED: its pages start shared), from the lab issue.
    ("gmem_inode", ["ino"], "gmem_inode"),
    ("gmem_create", ["flags", "ret"], "gmem_create"),
]
UPSTREAM_TABLE = [
    ("filemap", "mm_filemap_add_to_page_cache", "cache_add"),
    ("filemap", "mm_filemap_delete_from_page_cache", "cache_delete"),
    ("kmem", "mm_page_alloc", "page_alloc"),
    ("kmem", "mm_page_free", "page_free"),
    ("ras", "memory_failure_event", "memory_failure"),
    ("kvmmmu", "kvm_tdp_mmu_spte_changed", "spte_changed"),
    ("kvmmmu", "kvm_mmu_set_spte", "set_spte"),
    ("kvm", "kvm_page_fault", "page_fault"),
    ("kvm", "kvm_unmap_hva_range", "host_unmap_range"),
    ("kvm", "kvm_vm_set_mem_attributes", "set_attributes"),
]
# The designs' own functions: no upstream kernel has them.
DESIGN_SYMBOLS = {"set_hwpoison": "tdx_set_hwpoison",
                  "gmem_buggy_cleanup": "kvm_gmem_buggy_cleanup",
                  "tdx_shutdown": "tdx_buggy_shutdown"}


@pytest.fixture(scope="module")
def cat():
    return load_catalogue()


def test_every_probe_of_the_table_with_its_exact_fields(cat):
    probes = cat.probes()
    assert [s.name for s in probes] == [name for name, _, _ in PROBE_TABLE]
    for spec, (name, fields, protocol) in zip(probes, PROBE_TABLE):
        assert spec.system == "poisoncheck"
        assert list(spec.field_names) == fields, name
        assert spec.protocol == protocol, name
        assert spec.kind in ("kprobe", "kretprobe")
        assert spec.summary and spec.source and spec.symbol


def test_every_upstream_tracepoint_and_the_whole_protocol(cat):
    assert [(s.system, s.name, s.protocol) for s in cat.tracepoints()] == UPSTREAM_TABLE
    assert upstream_events(cat) == [(s, n) for s, n, _ in UPSTREAM_TABLE]
    assert [s.protocol for s in cat] == list(PROTOCOL_EVENTS)
    for system, name, protocol in UPSTREAM_TABLE:
        assert cat[(system, name)].protocol == protocol
        assert cat.get(None, name) is cat[(system, name)]
        assert cat.by_protocol(protocol).name == name


def test_tracepoint_fields_match_the_reader(cat):
    # The names the reader gives the typed fields (the replay hands it the formats).
    from validator.replay.vocabulary import KNOWN_EVENTS
    for spec in cat.tracepoints():
        decoder = KNOWN_EVENTS.tracepoints[spec.name]
        assert decoder.system == spec.system
        assert list(spec.field_names) == list(decoder.formats[0].names)


def test_design_functions_are_marked_not_upstream(cat):
    for name, symbol in DESIGN_SYMBOLS.items():
        spec = cat.get("poisoncheck", name)
        assert spec.symbol == symbol
        assert spec.upstream is False
    upstream_names = {s.name for s in cat.probes(only_upstream=True)}
    assert not upstream_names & set(DESIGN_SYMBOLS)
    assert {"gmem_get_pfn", "tdx_aug", "tdx_remove", "vm_bugged", "hkid_release"} <= upstream_names


def test_kprobe_lines(cat):
    lines = kprobe_lines(cat)
    assert len(lines) == len(PROBE_TABLE)
    assert kprobe_line(cat.get(None, "gmem_get_pfn")) == (
        "r:poisoncheck/gmem_get_pfn kvm_gmem_get_pfn gfn=gfn:x64 base_gfn=slot->base_gfn:x64 "
        "pgoff=slot->gmem.pgoff:x64 pfn=+0(pfn):x64 page=+0(page):x64 ret=$retval:s32")
    assert kprobe_line(cat.get(None, "tdx_shutdown")) == "r:poisoncheck/tdx_shutdown tdx_buggy_shutdown"
    assert kprobe_line(cat.get(None, "vm_bugged")).startswith("p:poisoncheck/vm_bugged ")
    for spec in cat.probes():
        line = kprobe_line(spec)
        head, symbol, *args = line.split(" ")
        assert head == f"{'p' if spec.kind == 'kprobe' else 'r'}:poisoncheck/{spec.name}"
        assert symbol == spec.symbol
        names = [a.split("=", 1)[0] for a in args]
        assert set(names) == set(spec.fetched) | set(spec.aux)
        # BTF argument names, never register or $argN positions
        assert not any(re.search(r"\$arg\d|%\w", a) for a in args), line
        if "ret" in spec.field_names:
            assert "$retval" in line and spec.kind == "kretprobe", line
        if spec.kind == "kprobe":
            assert "$retval" not in line, line
        assert remove_line(spec) == f"-:poisoncheck/{spec.name}"
    with pytest.raises(ValueError):
        kprobe_line(cat.tracepoints()[0])


def test_every_field_is_fetched_derived_or_explained(cat):
    for spec in cat.probes():
        for name in spec.field_names:
            kinds = [name in spec.fetched, name in spec.derive, name in spec.unfetched]
            assert kinds.count(True) == 1, (spec.name, name)
        for why in spec.unfetched.values():
            assert len(why) > 30
    # what cannot be fetched on upstream kernels, and why it matters: no pfn from a folio pointer
    assert set(cat.get(None, "gmem_alloc").unfetched) == {"pfn", "order"}
    assert set(cat.get(None, "gmem_error_folio").unfetched) == {"pfn"}
    assert cat.get(None, "gmem_get_pfn").unfetched == {}


def test_filters_name_only_event_args(cat):
    filtered = {s.name: s.filter for s in cat.probes() if s.filter}
    assert filtered == {
        "gmem_alloc": "magic == 0x474d454d",
        "tdx_aug": "level == 1 && pfn != 0",
        "tdx_remove": "pfn != 0",
        "vm_bugged": "req == 0x301 && bugged == 1",
        "gmem_punch_hole": "mode & 0x2",
        "gmem_inode": "magic == 0x474d454d",
    }


def test_decode_derives_maps_and_normalises(cat):
    get_pfn = cat.get(None, "gmem_get_pfn")
    assert get_pfn.decode({"gfn": 0x110, "base_gfn": 0x100, "pgoff": 0x20, "pfn": 0x1234,
                           "page": 0xffffea0000048d00, "ret": -133}) == \
        {"index": 0x30, "pfn": 0x1234, "ret": -133}
    # a missing term leaves the derived field unknown, not 0
    assert get_pfn.decode({"gfn": 5, "ret": 0}) == {"index": None, "pfn": None, "ret": 0}
    convert = cat.get(None, "gmem_convert")
    assert convert.decode({"start": 16, "npages": 2, "to": 1, "ret": -11}) == \
        {"start": 16, "end": 18, "to": "private", "ret": -11}
    assert convert.decode({"start": "0x10", "npages": "0x1", "to": "0", "ret": "0"}) == \
        {"start": 16, "end": 17, "to": "shared", "ret": 0}
    punch = cat.get(None, "gmem_punch_hole")
    assert punch.decode({"start": 16, "npages": 512, "mode": 3}) == {"start": 16, "end": 528}
    host = cat.get(None, "gmem_host_fault")
    assert host.decode({"index": 3, "page": 1, "ret": 0x200}) == {"index": 3, "pfn": None, "ret": 0}
    assert host.decode({"index": 3, "page": 1, "ret": 0x2})["ret"] == 0x2
    alloc = cat.get(None, "gmem_alloc")
    assert alloc.decode({"index": 7, "page": 1, "magic": 0x474d454d}) == \
        {"index": 7, "pfn": None, "order": None}
    assert cat.get(None, "vm_bugged").decode({"req": 0x301, "bugged": 1}) == {}
    assert cat.get(None, "gmem_error_folio").decode({"index": 7, "page": "0xffffea0000048d00"},
                                                    with_aux=True) == \
        {"pfn": None, "index": 7, "page": 0xffffea0000048d00, "ino": None}
    free = cat.get(None, "mm_page_free")
    assert free.decode({"page": "0000000046b2e1c5", "pfn": 0x1234, "order": 0}) == \
        {"page": "0000000046b2e1c5", "pfn": 0x1234, "order": 0}


@pytest.mark.parametrize("convention, raw, expected", [
    ("errno", 0, 0), ("errno", -133, -133),
    ("err_ptr", 0xffffea0000048d00 - (1 << 64), 0), ("err_ptr", 0xffffea0000048d00, 0),
    ("err_ptr", -133, -133), ("err_ptr", (1 << 64) - 11, -11),
    ("vm_fault", 0x200, 0), ("vm_fault", 0x100, 0), ("vm_fault", 0x2, 0x2), ("vm_fault", 0x210, 0x10),
    ("tdx_status", 0, 0), ("tdx_status", 0xc000030000000000, 0xc000030000000000),
])
def test_ret_conventions(convention, raw, expected):
    assert normalise_ret(convention, raw) == expected


def test_packaged_where_pyproject_says():
    path = default_path()
    assert path.is_file() and path.parent.name == "data" and path.parent.parent.name == "validator"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "data/*" in pyproject["tool"]["setuptools"]["package-data"]["validator"]


# ---------------------------------------------------------------- loader errors

GOOD_PROBE = """
group = "poisoncheck"
[poisoncheck.p1]
protocol = "alloc"
fields = { index = "int", pfn = "int" }
kind = "kretprobe"
symbol = "some_function"
upstream = true
args = ["index=index:x64", "ret=$retval:s32"]
aux = ["ret"]
unfetched.pfn = "only a folio pointer is passed"
ret = "errno"
"""


def write(tmp_path, text):
    path = tmp_path / "cat.toml"
    path.write_text(text)
    return path


def test_a_small_catalogue_loads(tmp_path):
    cat = load_catalogue(write(tmp_path, GOOD_PROBE))
    assert [s.name for s in cat] == ["p1"]
    assert cat.buffer_size_kb > 0 and cat.trace_clock is None


@pytest.mark.parametrize("old, new, message", [
    ('protocol = "alloc"', 'protocol = "allocate"', "protocol 'allocate' is not a protocol event"),
    ('kind = "kretprobe"', 'kind = "uprobe"', "kind must be one of"),
    ('aux = ["ret"]', 'aux = []', "args: 'ret' is neither a field nor listed in aux"),
    ('unfetched.pfn = "only a folio pointer is passed"', "",
     "field 'pfn' is neither fetched (args), derived (derive) nor explained (unfetched)"),
    ('kind = "kretprobe"', 'kind = "kprobe"', "$retval exists only in a kretprobe"),
    ('ret = "errno"', 'ret = "errno"\nsymbl = "x"', "unknown key(s) symbl"),
    ('ret = "errno"', "", "ret = ... is missing"),
    ('ret = "errno"', 'ret = "errno"\nfilter = "idx == 1"', "filter uses 'idx', which is not one of args"),
    ('ret = "errno"', 'ret = "errno"\nderive.pfn = "index + npages"',
     "derive: pfn uses 'npages', which is not one of args"),
    ('ret = "errno"', 'ret = "errno"\nderive.pfn = "index * 2"', "only sums and differences"),
    ('index = "int", pfn', 'index = "string", pfn',
     "field index is a string but is fetched as a number: give values.index"),
    ('symbol = "some_function"', 'symbol = "some function"', "symbol must be a kernel function name"),
    ('upstream = true', 'upstream = "yes"', "upstream must be true or false"),
    ('"index=index:x64"', '"common_pid=index:x64"', "reserved by the kernel"),
    ('"index=index:x64"', '"index=index :x64"', "the fetch-arg is empty or has spaces"),
])
def test_loader_errors_name_file_and_event(tmp_path, old, new, message):
    assert old in GOOD_PROBE
    path = write(tmp_path, GOOD_PROBE.replace(old, new, 1))
    with pytest.raises(CatalogueError) as err:
        load_catalogue(path)
    text = str(err.value)
    assert text.startswith(f"{path}: [poisoncheck.p1]: "), text
    assert message in text
    # the replay's loader makes every check but those about making the probe
    try:
        replay_catalogue.load_catalogue(path)
        replay_text = ""
    except CatalogueError as replay_err:
        replay_text = str(replay_err)
    if message in PROBE_MAKING:
        assert message not in replay_text
    else:
        assert replay_text == text


# Rules only the kernel's kprobe_events needs (recording/kprobes.py checks them).
PROBE_MAKING = {"$retval exists only in a kretprobe", "filter uses 'idx', which is not one of args",
                "symbol must be a kernel function name", "upstream must be true or false",
                "reserved by the kernel", "the fetch-arg is empty or has spaces"}


NO_FORMAT = 'formats = [{ printk = "x", names = [] }]\n'


@pytest.mark.parametrize("extra, message", [
    ('[kmem.p1]\nprotocol = "page_free"\nkind = "tracepoint"\nfields = {}\n' + NO_FORMAT,
     "event name 'p1' is also [poisoncheck.p1]"),
    ('[kmem.other]\nprotocol = "alloc"\nkind = "tracepoint"\nfields = {}\n' + NO_FORMAT,
     "protocol event 'alloc' is already mapped by [poisoncheck.p1]"),
    ('[poisoncheck.tp]\nprotocol = "page_free"\nkind = "tracepoint"\nfields = {}\n' + NO_FORMAT,
     "a tracepoint cannot be in the probe group poisoncheck"),
    ('[kmem.pr]\nprotocol = "page_free"\nkind = "kprobe"\nfields = {}\nsymbol = "f"\n'
     'upstream = true\nargs = []\n', "a kprobe must be in the group [poisoncheck.*]"),
    ('[kmem.tp]\nprotocol = "page_free"\nkind = "tracepoint"\nfields = {}\nsymbol = "f"\n',
     "unknown key(s) symbol (only kprobe/kretprobe events have these)"),
])
def test_loader_checks_across_events(tmp_path, extra, message):
    path = write(tmp_path, GOOD_PROBE + extra)
    with pytest.raises(CatalogueError, match=re.escape(message)) as err:
        load_catalogue(path)
    assert str(err.value).startswith(f"{path}: ")


def test_loader_file_errors(tmp_path):
    with pytest.raises(CatalogueError, match="cannot read"):
        load_catalogue(tmp_path / "missing.toml")
    with pytest.raises(CatalogueError, match="not valid TOML"):
        load_catalogue(write(tmp_path, "group = \n"))
    with pytest.raises(CatalogueError, match="group is missing"):
        load_catalogue(write(tmp_path, GOOD_PROBE.replace('group = "poisoncheck"', "")))
    with pytest.raises(CatalogueError, match="unknown top-level key 'buffer'"):
        load_catalogue(write(tmp_path, "buffer = 3\n" + GOOD_PROBE))


# ---- the catalogue is the one place that maps trace events to protocol events ------------

# Modules that write ftrace text (they must name events to print them), not read it.
TRACE_WRITERS = {"ftrace_text.py", "bench_text.py", "benchgen.py",     # synth/: they write
                 "kprobe_text.py",
                 "scenarios.py"}                                        # traces


def test_the_replay_and_the_reader_take_the_mapping_from_the_catalogue(cat):
    from validator.replay import vocabulary as replay
    assert replay.PROBE_PROTOCOL == {s.name: s.protocol for s in cat.probes()}
    assert replay.UPSTREAM_PROTOCOL == {(s.system, s.name): s.protocol for s in cat.tracepoints()}
    assert replay.KNOWN_EVENTS.probe_group == cat.group
    assert replay.KNOWN_EVENTS.probe_names == {s.name for s in cat.probes()}
    assert {n: [f.names for f in tp.formats] for n, tp in replay.KNOWN_EVENTS.tracepoints.items()} == {
        s.name: [names for _, names in s.formats] for s in cat.tracepoints()}


def test_no_other_module_names_a_catalogue_event(cat):
    from conftest import ROOT
    # (some probes are named after their protocol event: those names are the protocol's)
    names = {s.name for s in cat} - {s.protocol for s in cat}
    offenders = []
    for path in sorted((ROOT / "validator").rglob("*.py")):
        if path.name in TRACE_WRITERS:
            continue
        text = path.read_text()
        offenders += [f"{path.relative_to(ROOT)}: {name}" for name in names
                      if re.search(rf"""["']{name}["']""", text)]
    assert offenders == []
