"""The validator's fast input path gives exactly what the plain reader gives.

Three ways to read a trace for the replay must agree item for item, and on the lines
that did not parse: the general way (read_lines, then observe() on every Event), the
shortcut (plain records straight to Observed), and worker processes reading chunks
(ftrace/parallel.py), with chunks cut small so that boundaries fall everywhere."""

import gzip
import io
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from validator.synth import benchgen
from validator.ftrace import LineKind, LostMarker, NotFtraceError
from validator.ftrace.hot import hot_event, hot_match
from validator.ftrace.parallel import ParallelReader
from validator.replay.input import Observations, _shortcut, read_file
from validator.replay.vocabulary import (INFORMATIONAL, INFORMATIONAL_RUN, KNOWN_EVENTS, observe,
                                         RELEVANT_NAMES)
from validator.cli.validate import validate_one

from test_ftrace_corpus import CORPUS, EXPECTED, NOT_FTRACE, corpus_files
from test_ftrace_fuzz import CORPUS_LINES, mutated_line

TRACES = sorted(Path("traces").glob("*.trace"))
DATA = sorted((Path(__file__).parent.parent / "data" / "ftrace").glob("*"))


def reference(path) -> tuple[list, int, list]:
    """The plain reader's answer: items, unparsed line count, (line, reason) of each."""
    items, unparsed = [], []
    for line in read_file(path):
        if line.kind is LineKind.UNPARSED:
            unparsed.append((line.line_no, line.reason))
        for event in line.events:
            if event.name in RELEVANT_NAMES:
                observed = observe(event)
                if observed is not None:
                    items.append(observed)
        if line.lost is not None:
            items.append(line.lost)
    return folded(items), len(unparsed), unparsed[:5]


def read(path, **kw) -> tuple[list, int, list]:
    obs = Observations(str(path), **kw)
    items = []
    for item in obs:   # text left out by workers is asked for while its chunk is recent
        if (type(item) is not LostMarker and item.raw is None
                and item.protocol not in INFORMATIONAL | {INFORMATIONAL_RUN}):
            item = item._replace(raw=obs.raw_of(item.line_no))
        items.append(item)
    unparsed = obs.unparsed_before(None)
    return folded(items), unparsed.count, unparsed.first


def folded(items: list) -> list:
    """Runs of INFORMATIONAL events as one count each, as the replay can tell them: the
    workers fold them (observations._pack), cut where their chunks end."""
    out, run = [], Counter()
    for item in items:
        if type(item) is not LostMarker and item.protocol in INFORMATIONAL:
            run[item.protocol] += 1
        elif type(item) is not LostMarker and item.protocol == INFORMATIONAL_RUN:
            run.update(item.fields)
        else:
            if run:
                out.append(("run", dict(sorted(run.items()))))
                run = Counter()
            out.append(item)
    if run:
        out.append(("run", dict(sorted(run.items()))))
    return out


WAYS = {
    "general": dict(shortcut=False),
    "shortcut": dict(),
    "workers": dict(jobs=2, chunk_bytes=1),             # a chunk per line
    "workers, chunks of ~700 bytes": dict(jobs=2, chunk_bytes=700),
    "three workers, no shortcut": dict(jobs=3, chunk_bytes=300, shortcut=False),
}


def check_all_ways(path):
    expected = reference(path)
    for way, kw in WAYS.items():
        assert read(path, **kw) == expected, way
    with always_ahead():
        assert read(path, jobs=2, chunk_bytes=500) == expected, "main process reads ahead"


@contextmanager
def always_ahead():
    """The main process reads chunks ahead of the workers whenever it may (it does so
    only while a worker's reply is late, which tests cannot arrange)."""
    ParallelReader.ALWAYS_AHEAD = True
    try:
        yield
    finally:
        ParallelReader.ALWAYS_AHEAD = False


@pytest.mark.parametrize("path", TRACES + DATA, ids=lambda p: p.name)
def test_every_way_reads_the_traces_and_test_data_alike(path):
    try:
        check_all_ways(path)
    except NotFtraceError:
        for kw in WAYS.values():
            with pytest.raises(NotFtraceError):
                read(path, **kw)


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")
@pytest.mark.parametrize("name", [n for n in corpus_files() if EXPECTED[n][0] != NOT_FTRACE])
def test_every_way_reads_the_corpus_alike(name):
    check_all_ways(CORPUS / name)


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")
@pytest.mark.parametrize("name", [n for n in corpus_files() if EXPECTED[n][0] == NOT_FTRACE])
def test_what_is_not_ftrace_is_refused_every_way(name):
    for kw in WAYS.values():
        with pytest.raises(NotFtraceError):
            read(CORPUS / name, **kw)


@pytest.fixture(scope="module", params=["tracepoint", "kprobe"])
def generated(tmp_path_factory, request):
    """The bench's trace in both styles (kprobe: record's kprobe events, read by the
    shortcut's layouts)."""
    path = tmp_path_factory.mktemp("gen") / "valid.trace"
    benchgen.generate(path, 20_000, seed=11, design="HWPoison", failures=2, folios=64,
                      style=request.param)
    return path


def test_a_generated_trace_reads_alike_with_real_chunk_sizes(generated):
    expected = reference(generated)
    assert len(expected[0]) > 10_000
    for kw in (dict(), dict(jobs=2, chunk_bytes=64 << 10), dict(jobs=2, chunk_bytes=4096)):
        assert read(generated, **kw) == expected, kw


# Lines that carry state from one to the next, or are read otherwise than plain records.
TRICKY = [
    "# tracer: nop",
    "#",
    "gmem_alloc: (kvm_gmem_get_pfn+0x5e/0x1a0 <- kvm_gmem_get_folio) index=0x1 pfn=0x1001 order=0",
    "sched_switch: prev_comm=a prev_pid=1 prev_prio=120 prev_state=S ==> next_comm=b next_pid=2 next_prio=120",
    " qemu-4130    [002] .....   584.000031: tracing_mark_write: hello",
    "second line of the marker",
    " qemu-4130    [002] .....   584.000032: tracing_mark_write: glued\x00 qemu-4130    [002] .....   584.000033: gmem_free: (kvm_gmem_free_folio+0x0/0x60) pfn=0x1001 order=0",
    " qemu-4130    [002] .....   584.000034: <stack trace>",
    " => kvm_gmem_free_folio",
    " => truncate_inode_pages_final+0x4b/0x60",
    "CPU:2 [LOST 12 EVENTS]",
    "",
    "garbage that is not a trace line",
    " qemu-4130    [002] .....   584.000035: gmem_get_pfn: (kvm_mmu_faultin_pfn+0x2a1/0x6c0 <- kvm_gmem_get_pfn) index=0x1 pfn=0x1001 ret=-133",
    " qemu-4130    [002] .....   584.000036: gmem_convert: (kvm_gmem_ioctl+0x1c6/0x2d0 <- kvm_gmem_set_attributes) start=0x1 end=0x2 to=\"shared\" ret=0",
    " qemu-4130    [002] .....   584.000037: gmem_convert: (kvm_gmem_ioctl+0x1c6/0x2d0 <- kvm_gmem_set_attributes) start=0x1 end=0x2 to=\"sha red\" ret=0",
    " qemu-4130    [002] .....   584.000038: tdx_aug: (tdx_sept_set_private_spte+0x1f3/0x3c0 <- tdx_mem_page_aug) gfn=0x1 pfn=0x1001 level=1 ret=0\t",
    " qemu-4130    [002] .....   584.000039: mm_page_alloc: page=000000000010044c pfn=0x1001 order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE",
    " qemu-4130    [002] .....   584.000040: mm_page_alloc: pfn=4097 order=0",
    " qemu-4130    [002] .....   584.000041: kvm_page_fault: vcpu 0 rip 0xffffffff81511f37 address 0x0000000000c42000 error_code 0x181",
    " qemu-4130    [002] .....   584.000042: kvm_page_fault: not a fault",
    " qemu-4130    [002] .....   584.000043: gmem_free: no probe payload",
    "[  12.345678] qemu-4130    [002] .....   584.000044: gmem_free: (kvm_gmem_free_folio+0x0/0x60) pfn=0x1001 order=0",
    " qemu-4130    [002] .....   584.000045: gmem_host_fault: (__do_fault+0x3b/0x160 <- kvm_gmem_fault_user_mapping) index=0x1 pfn=0x1001 ret=0x2",
]
POOL = TRICKY + [line for line in CORPUS_LINES if len(line) < 400][:2000]


@st.composite
def trace_text(draw) -> str:
    lines = draw(st.lists(st.one_of(st.sampled_from(POOL), mutated_line()), min_size=1,
                          max_size=60))
    return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\r\n"]))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=trace_text(), chunk=st.integers(1, 400), jobs=st.integers(2, 3))
def test_random_mixes_read_alike_every_way(tmp_path, text, chunk, jobs):
    path = tmp_path / "mix.trace"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    try:
        expected = reference(path)
    except NotFtraceError:
        for kw in (dict(), dict(jobs=jobs, chunk_bytes=chunk)):
            with pytest.raises(NotFtraceError):
                read(path, **kw)
        return
    assert read(path) == expected
    assert read(path, jobs=jobs, chunk_bytes=chunk) == expected
    with always_ahead():
        assert read(path, jobs=jobs, chunk_bytes=chunk) == expected


def test_the_sniff_gives_up_at_the_same_line_every_way(tmp_path):
    path = tmp_path / "prose.txt"
    path.write_text("just prose\n" * 12_000 + TRICKY[2] + "\n")
    for kw in (dict(), dict(jobs=2, chunk_bytes=1000)):
        with pytest.raises(NotFtraceError, match="first 10000 lines"):
            read(path, **kw)


def test_crlf_at_chunk_edges_is_one_line_end(tmp_path):
    """A CRLF file whose chunks end between "\\r" and "\\n" (the reader's own 1 MB
    pieces did keep the "\\r" before this was fixed)."""
    line = TRICKY[13]
    path = tmp_path / "crlf.trace"
    path.write_bytes((("\r\n".join([line] * 50_000)) + "\r\n").encode())
    lines = list(read_file(path))
    assert all(not line.text.endswith("\r") for line in lines)
    assert sum(1 for line in lines if line.kind is LineKind.EVENT) == 50_000
    check_all_ways(path)


def test_the_shortcut_takes_the_usual_renderings():
    """So that the comparison below is not vacuous: the common lines do go the short way."""
    usual = [TRICKY[i] for i in (13, 14, 17, 19, 23)]
    for text in usual:
        groups = hot_match(text)
        short = _shortcut(groups[6], groups[8], text, 7)
        assert short is not None and short == observe(hot_event(groups, text, 7, KNOWN_EVENTS)), text
    assert short.fields == {"index": 1, "pfn": 0x1001, "ret": 2}
    for text in (TRICKY[15], TRICKY[16], TRICKY[18], TRICKY[20], TRICKY[21]):  # the long way
        groups = hot_match(text)
        assert _shortcut(groups[6], groups[8], text, 7) is None, text


@st.composite
def probe_payload(draw) -> str:
    value = st.one_of(
        st.integers(-200, 1 << 40).map(str), st.integers(0, 1 << 40).map(hex),
        st.sampled_from(['"shared"', '"private"', '"a b"', '"x=y"', '""', '"\\"q\\""', "0X1F",
                         "1_000", "+5", "0x", "-", "x y", "\t", "a\tb", "é", "12 (34)", "9 [x]"]))
    key = st.sampled_from(["pfn", "index", "order", "ret", "start", "end", "to", "gfn", "x.y", "_k"])
    pairs = draw(st.lists(st.tuples(key, value), min_size=0, max_size=5))
    site = draw(st.sampled_from(["kvm_gmem_free_folio+0x0/0x60",
                                 "tdx_sept_set_private_spte+0xa4/0x3c0 <- tdx_sept_remove_leaf_spte",
                                 "400123", "a b+0x0/0x1", "f+0x0/0x1 <- g h"]))
    sep = draw(st.sampled_from([" ", "  "]))
    tail = draw(st.sampled_from(["", " ", "\t"]))
    return f"({site})" + "".join(f"{sep}{k}={v}" for k, v in pairs) + tail


@settings(max_examples=600, deadline=None)
@given(name=st.sampled_from(sorted(RELEVANT_NAMES) + ["sched_switch", "my_probe"]),
       payload=st.one_of(probe_payload(), st.sampled_from(CORPUS_LINES[:500] + TRICKY)))
def test_the_shortcut_gives_what_observe_gives_or_steps_aside(name, payload):
    text = f" qemu-4130    [002] .....   584.000035: {name}: {payload}"
    groups = hot_match(text)
    if groups is None:
        return
    short = _shortcut(groups[6], groups[8], text, 7)
    if short is None:
        return
    event = hot_event(groups, text, 7, KNOWN_EVENTS)      # raises where the line would be unparsed
    assert short == observe(event)


def test_validate_gives_the_same_verdicts_and_notes_with_workers(tmp_path, generated):
    garbage = "garbage line\n" * 3
    cases = []
    for trace in TRACES:
        mixed = tmp_path / trace.name
        text = trace.read_text()
        lines = text.splitlines(keepends=True)
        mixed.write_text("".join(lines[:5]) + garbage + "".join(lines[5:]) + garbage)
        cases.append(mixed)
    cases.append(generated)
    for path in cases:
        for design in ("NoHold", "HWPoison", "FolioRef"):
            one = validate_one(str(path), design).to_json()
            for chunk in (200, 5000):
                obs_kw = dict(jobs=2)
                many = _validate_chunked(str(path), design, chunk, **obs_kw).to_json()
                assert many == one, (path.name, design, chunk)


def _validate_chunked(path, design, chunk, jobs):
    """validate_one with small chunks (monkeypatching the default would hide the case)."""
    import validator.cli.validate as cmd
    original = cmd.Observations
    cmd.Observations = lambda p, j: original(p, j, chunk_bytes=chunk)
    try:
        return validate_one(path, design, jobs=jobs)
    finally:
        cmd.Observations = original


def test_reading_stops_cleanly_when_the_replay_stops_early(generated, tmp_path):
    """A violation on the first lines: the rest is still read (the evidence counts what the
    whole capture holds, its unparsed last line too) and every worker ends."""
    bad = tmp_path / "bad.trace"
    head = Path("traces/removal-fails-then-reused.trace").read_text()
    bad.write_text(head + generated.read_text() + "garbage\n")
    verdict = _validate_chunked(str(bad), "NoHold", 2000, jobs=2)
    assert (verdict.verdict, verdict.property, verdict.line) == ("violation", "NoHostAccessToTdPage", 23)
    assert verdict.event == head.splitlines()[22] and verdict.unparsed == 1
    assert verdict.observability["folioLoc: page cache, allocator"].get("after_verdict")


def test_gzip_and_stdin_read_alike(tmp_path, generated):
    gz = tmp_path / "valid.trace.gz"
    gz.write_bytes(gzip.compress(generated.read_bytes()))
    expected = reference(generated)
    assert read(gz, jobs=2, chunk_bytes=8192) == expected
    stdin = io.BytesIO(generated.read_bytes())
    assert read("-", jobs=2, chunk_bytes=8192, stdin=stdin) == expected


def test_a_worker_that_dies_is_one_clear_error(generated, monkeypatch):
    """No traceback and no hang: the command says a reader process died (exit 2)."""
    import os
    import signal

    from validator.ftrace import parallel

    def dying(inbox_conn, conn, *args):
        os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(parallel, "_work", dying)
    with pytest.raises(parallel.WorkerError, match="died"):
        read(generated, jobs=2, chunk_bytes=4096)
