"""Every file of the shared ftrace corpus, read as it is (never edited).

EXPECTED pins, per file, what the reader makes of it. A file added to the corpus fails
test_every_corpus_file_has_an_expectation until someone decides what it should give."""

import os
from pathlib import Path

import pytest

from validator.ftrace import LineKind, NotFtraceError, summarise
from validator.ftrace.state import R_BAD_BODY
# the reader as poisoncheck runs it: the probe catalogue's events typed
from validator.replay.input import read_file

# The shared corpus sits next to the repository (../shared/corpus/ftrace); read-only.
# A clone elsewhere (CI) finds it at the workplace's fixed place.
_CANDIDATES = [Path(__file__).resolve().parents[3] / "shared" / "corpus" / "ftrace",
               Path("/work/shared/corpus/ftrace")]
CORPUS = Path(os.environ.get("POISONCHECK_FTRACE_CORPUS") or next(
    (c for c in _CANDIDATES if c.is_dir()), _CANDIDATES[0]))

NOT_FTRACE = "not ftrace"
# file: (lines, events, unparsed, lost markers, continuation lines) or (NOT_FTRACE, why)
EXPECTED = {
    # documentation and captures of something else: one clear error each
    "MANIFEST.md": (NOT_FTRACE, "no ftrace records, headers or markers in 68 lines"),
    "trappy/LICENSE.trappy": (NOT_FTRACE, "no ftrace records, headers or markers in 202 lines"),
    "local-linux-6.18/UNAME.txt": (NOT_FTRACE, "no ftrace records, headers or markers in 1 line"),
    "local-linux-6.18/30-perf-script.stderr.txt": (NOT_FTRACE, "no ftrace records, headers or markers in 3 lines"),
    # the `bin` option writes binary records into `trace`
    "local-linux-6.18/07c-nop-events-bin.trace": (NOT_FTRACE, "binary data (NUL byte"),
    # Android systrace: ftrace text wrapped in HTML
    "trappy/tests_trace_legacy_systrace.html": (NOT_FTRACE, "HTML, not ftrace text"),
    "trappy/tests_trace_surfaceflinger.html": (NOT_FTRACE, "HTML, not ftrace text"),
    "trappy/tests_trace_systrace.html": (NOT_FTRACE, "HTML, not ftrace text"),
    "lkml/2022-08-30_seanjc_kvm_page_fault_vcpu_threads.txt": (7, 7, 0, 0, 0),
    "lkml/2023-03-30_minipli_kvm_vmx_nested_trace.txt": (27, 27, 0, 0, 0),
    "lkml/2024-10-08_paulmck_ftrace_dump_latency_format_LOST.txt": (36, 33, 0, 1, 0),
    # one marker with an embedded newline (1 continuation line) and one whose NUL glued the
    # next record onto its line (events = event lines + 1)
    "local-linux-6.18/01-nop-events-default.trace": (2505, 2493, 0, 0, 1),
    "local-linux-6.18/02-nop-events-record-tgid.trace": (1444, 1432, 0, 0, 1),
    "local-linux-6.18/03-nop-events-noirq-info.trace": (1466, 1460, 0, 0, 1),
    "local-linux-6.18/03b-nop-events-noirq-info-record-tgid.trace": (1455, 1449, 0, 0, 1),
    "local-linux-6.18/04-nop-events-latency-format.trace": (1558, 1540, 0, 0, 1),
    "local-linux-6.18/05-nop-events-latency-format-verbose.trace": (1217, 1208, 0, 0, 1),
    "local-linux-6.18/05b-nop-events-verbose.trace": (1351, 1349, 0, 0, 1),
    # no context columns: a glued record cannot be seen there
    "local-linux-6.18/06-nop-events-nocontext-info.trace": (1458, 1455, 0, 0, 1),
    "local-linux-6.18/07-nop-events-raw.trace": (1242, 1230, 0, 0, 1),
    "local-linux-6.18/07b-nop-events-hex.trace": (2592, 1290, 0, 0, 0),
    "local-linux-6.18/07d-nop-events-fields.trace": (1214, 1202, 0, 0, 0),
    "local-linux-6.18/08-clock-boot.trace": (1382, 1370, 0, 0, 1),
    "local-linux-6.18/08-clock-counter.trace": (1443, 1431, 0, 0, 1),
    "local-linux-6.18/08-clock-global.trace": (1262, 1250, 0, 0, 1),
    "local-linux-6.18/08-clock-mono.trace": (1368, 1356, 0, 0, 1),
    "local-linux-6.18/08-clock-mono_raw.trace": (1284, 1272, 0, 0, 1),
    "local-linux-6.18/08-clock-perf.trace": (1372, 1360, 0, 0, 1),
    "local-linux-6.18/08-clock-tai.trace": (1306, 1294, 0, 0, 1),
    "local-linux-6.18/08-clock-uptime.trace": (1346, 1334, 0, 0, 1),
    "local-linux-6.18/08-clock-x86-tsc.trace": (1359, 1347, 0, 0, 1),
    "local-linux-6.18/09-stacktrace-option.trace": (93, 18, 0, 0, 63),
    "local-linux-6.18/09b-userstacktrace-option.trace": (30, 12, 0, 0, 6),
    "local-linux-6.18/10-markers-only-function-tracer-refused.trace": (44, 32, 0, 0, 1),
    "local-linux-6.18/10b-markers-only-noprint-parent-sym-offset-sym-addr.trace": (32, 20, 0, 0, 1),
    "local-linux-6.18/10d-sched-events-plus-markers.trace": (421, 409, 0, 0, 1),
    "local-linux-6.18/11-overrun-annotate.trace": (598, 585, 0, 1, 0),
    "local-linux-6.18/12-trace_pipe-lost-events.head3000.txt": (3000, 2999, 0, 1, 0),
    "local-linux-6.18/13-per_cpu-cpu1.trace": (996, 984, 0, 0, 1),
    "local-linux-6.18/14-instance-sample.trace": (378, 366, 0, 0, 0),
    "local-linux-6.18/15-empty.trace": (12, 0, 0, 0, 0),
    "local-linux-6.18/15b-empty-latency-format.trace": (2, 0, 0, 0, 0),
    "local-linux-6.18/15c-empty-record-tgid.trace": (12, 0, 0, 0, 0),
    "local-linux-6.18/15d-empty-noirq-info.trace": (6, 0, 0, 0, 0),
    "local-linux-6.18/16-kvm-tiny-guest.trace": (288, 276, 0, 0, 0),
    # trace-cmd prints a marker cut by a NUL without the glued record
    "local-linux-6.18/20-trace-cmd-report-default.txt": (2120, 2118, 0, 0, 1),
    "local-linux-6.18/21-trace-cmd-report-l-latency.txt": (2120, 2118, 0, 0, 1),
    "local-linux-6.18/22-trace-cmd-report-t-nsec.txt": (2120, 2118, 0, 0, 1),
    "local-linux-6.18/23-trace-cmd-report-R-raw.txt": (2120, 2118, 0, 0, 1),
    "local-linux-6.18/24-trace-cmd-report-ts-diff.txt": (2120, 2118, 0, 0, 1),
    "local-linux-6.18/25-trace-cmd-report-two-inputs.txt": (4240, 4236, 0, 0, 2),
    "local-linux-6.18/26-trace-cmd-report-w-wakeup-latency.txt": (866, 854, 0, 0, 0),
    "local-linux-6.18/30-perf-script-default.txt": (1084, 1084, 0, 0, 0),
    "local-linux-6.18/31-perf-script-fields.txt": (1084, 1084, 0, 0, 0),
    "local-linux-6.18/32-perf-script-ns.txt": (1084, 1084, 0, 0, 0),
    # Brendan Gregg's example transcripts: trace output pasted between prose, shell commands
    # and usage texts. The unparsed lines are that prose (checked below: none looks like a
    # record); the function_graph output is counted as funcgraph lines.
    "perf-tools/funcgraph_example.txt": (2178, 0, 77, 0, 0),
    "perf-tools/funcslower_example.txt": (110, 0, 53, 0, 0),
    "perf-tools/functrace_example.txt": (341, 37, 239, 0, 0),
    "perf-tools/kprobe_example.txt": (379, 134, 122, 0, 30),
    "perf-tools/tpoint_example.txt": (210, 23, 71, 0, 67),
    "perf-tools/uprobe_example.txt": (321, 67, 151, 0, 10),
    "trappy/doc_trace.txt": (811, 804, 0, 0, 0),
    "trappy/doc_trace_dynamic.txt": (1600, 1600, 0, 0, 0),
    "trappy/tests_raw_trace.txt": (7, 3, 0, 0, 0),
    "trappy/tests_trace_common_clk.txt": (8, 8, 0, 0, 0),
    "trappy/tests_trace_empty.txt": (53, 51, 0, 0, 0),
    "trappy/tests_trace_equals.txt": (7, 7, 0, 0, 0),
    "trappy/tests_trace_failed_to_parse.txt": (11, 11, 0, 0, 0),
    "trappy/tests_trace_filesystem.txt": (69, 69, 0, 0, 0),
    "trappy/tests_trace_idle_unsorted.txt": (17, 15, 0, 0, 0),
    "trappy/tests_trace_no_trailing_line.txt": (10, 10, 0, 0, 0),
    "trappy/tests_trace_sched.txt": (13, 11, 0, 0, 0),
}
PROSE = {name for name in EXPECTED if name.startswith("perf-tools/")}


def corpus_files() -> list[str]:
    return sorted(str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*") if p.is_file())


pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")


def test_every_corpus_file_has_an_expectation():
    assert corpus_files() == sorted(EXPECTED)


@pytest.mark.parametrize("name", corpus_files())
def test_corpus_file(name):
    expected = EXPECTED[name]
    path = CORPUS / name
    if expected[0] == NOT_FTRACE:
        with pytest.raises(NotFtraceError) as err:
            summarise(read_file(path))
        message = str(err.value)
        assert message.startswith(f"{path}: ") and expected[1] in message
        assert "\n" not in message
        return
    lines = list(read_file(path))
    summary = summarise(lines)
    got = (summary.lines, summary.events, summary.unparsed, summary.lost_markers,
           summary.by_kind[LineKind.CONTINUATION])
    assert got == expected
    # every line classified, once, in order
    assert [line.line_no for line in lines] == list(range(1, len(lines) + 1))
    assert sum(summary.by_kind.values()) == summary.lines
    if name in PROSE:
        for line in lines:
            if line.kind is LineKind.UNPARSED:
                assert line.reason != R_BAD_BODY, f"line {line.line_no} looks like a record: {line.text!r}"
    else:
        assert summary.unparsed == 0


def test_lost_markers_are_typed():
    lines = list(read_file(CORPUS / "local-linux-6.18/12-trace_pipe-lost-events.head3000.txt"))
    lost = [line for line in lines if line.kind is LineKind.LOST]
    assert [line.lost for line in lost] == [(294, "lost_events", 0, 897)]
    started = [line.lost for line in read_file(CORPUS / "local-linux-6.18/11-overrun-annotate.trace")
               if line.kind is LineKind.LOST]
    assert started == [(307, "buffer_started", 0, None)]
    dump = [line.lost for line in read_file(
        CORPUS / "lkml/2024-10-08_paulmck_ftrace_dump_latency_format_LOST.txt") if line.lost]
    assert dump == [(3, "lost_events", 1, 16689746)]


def test_overwritten_events_come_from_the_header():
    summary = summarise(read_file(CORPUS / "local-linux-6.18/11-overrun-annotate.trace"))
    assert summary.overwritten == 1865 - 585


def test_clock_displays():
    def first(name):
        return next(e for line in read_file(CORPUS / "local-linux-6.18" / name) for e in line.events)

    assert first("08-clock-global.trace")[7:9] == (585_903_675_000, "ns")
    assert first("08-clock-counter.trace")[7:9] == (3, "count")
    assert first("08-clock-uptime.trace")[7:9] == (58602, "count")
    assert first("08-clock-x86-tsc.trace")[7:9] == (1525009023616, "count")
    assert first("08-clock-tai.trace")[7:9] == (1795552510_350_838_000, "ns")
    assert first("04-nop-events-latency-format.trace")[7:9] == (19_758_000, "rel_ns")
    assert first("05-nop-events-latency-format-verbose.trace")[7:9] == (0x22DC5C0C * 1000, "ns")
    assert first("22-trace-cmd-report-t-nsec.txt")[7:9] == (674_316_951_184, "ns")
    assert first("32-perf-script-ns.txt")[7:9] == (690_547_471_892, "ns")


def test_invalid_utf8_comm_survives():
    events = [e for line in read_file(CORPUS / "local-linux-6.18/01-nop-events-default.trace")
              for e in line.events]
    raw_comms = {e.task.encode("utf-8", "surrogateescape") for e in events if e.task}
    # a UTF-8 name cut mid-character at 15 bytes, and bytes that are not UTF-8 at all
    assert "tâche-ünïç".encode() + b"\xc3" in raw_comms
    assert b"\xff\xfebin" in raw_comms
    comms = {e.task for e in events}
    assert {"worker with sp", "a-b-1234", "[brkt] x:y", "CPU 0/KVM", "<idle>"} <= comms


def test_perf_pid_tid_and_system():
    event = next(e for line in read_file(CORPUS / "local-linux-6.18/31-perf-script-fields.txt")
                 for e in line.events if e.task == "Thread-1")
    assert (event.pid, event.tgid, event.system) == (4785, 4762, "sched")


def test_continuations_point_at_their_record():
    lines = list(read_file(CORPUS / "local-linux-6.18/09-stacktrace-option.trace"))
    by_no = {line.line_no: line for line in lines}
    for line in lines:
        if line.kind is LineKind.CONTINUATION:
            owner = by_no[line.continues]
            assert owner.events[0].name == "kernel_stack"
    marker = [line for line in read_file(CORPUS / "local-linux-6.18/01-nop-events-default.trace")
              if line.kind is LineKind.CONTINUATION]
    assert [(m.text, m.reason, m.continues) for m in marker] == [
        ("line two (embedded newline)", "marker text", 1975)]
