"""Opening inputs: files, stdin, .gz/.xz, line splitting, and inputs that are not ftrace text."""

import gzip
import io
import lzma

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from validator.ftrace import (
    LineKind, NotFtraceError, TraceInputError, iter_lines, open_trace, read_file, read_lines, summarise,
)
from validator.ftrace import opener
from validator.ftrace import state as reader

TRACE = (
    b"# tracer: nop\n#\n"
    b"            bash-5402    [001] .....   584.034896: sys_write -> 0x2\n"
    b"            bash-5402    [001] d..2.   584.035950: sched_switch: prev_comm=bash prev_pid=5402\n"
)


def lines_of(data: bytes) -> list[str]:
    return list(iter_lines(io.BytesIO(data), "<test>"))


def test_splits_on_newline_only():
    data = b"a\x0bb\x1cc\xc2\x85d\r\ne\rf\n\xff\xfe\nlast"
    assert lines_of(b"# x\n" + data) == ["# x", "a\x0bb\x1cc\x85d", "e\rf", "\udcff\udcfe", "last"]


def test_last_line_without_newline_is_read():
    events = [e for line in read_lines(lines_of(TRACE.rstrip(b"\n"))) for e in line.events]
    assert [e.name for e in events] == ["sys_exit_write", "sched_switch"]


def test_crlf_line_endings():
    crlf = TRACE.replace(b"\n", b"\r\n")
    assert [line.kind for line in read_lines(lines_of(crlf))] == [
        LineKind.HEADER, LineKind.HEADER, LineKind.EVENT, LineKind.EVENT]


def test_lines_across_chunk_boundaries(monkeypatch):
    monkeypatch.setattr(opener, "CHUNK_BYTES", 7)
    monkeypatch.setattr(opener, "SNIFF_BYTES", 5)
    assert lines_of(TRACE) == TRACE.decode().split("\n")[:-1]


def test_overlong_line_is_cut_and_reported(monkeypatch):
    monkeypatch.setattr(opener, "MAX_LINE_BYTES", 200)
    monkeypatch.setattr(opener, "CHUNK_BYTES", 16)
    monkeypatch.setattr(opener, "SNIFF_BYTES", 16)
    data = TRACE + b"x" * 500 + b"\n" + TRACE.splitlines()[2] + b"\n"
    lines = list(read_lines(iter_lines(io.BytesIO(data), "<test>")))
    assert [line.kind for line in lines] == [LineKind.HEADER] * 2 + [LineKind.EVENT] * 2 + [
        LineKind.UNPARSED, LineKind.EVENT]
    assert lines[4].reason == reader.R_TOO_LONG and len(lines[4].text) == 200
    assert lines[5].line_no == 6


@pytest.mark.parametrize("suffix, compress", [(".gz", gzip.compress), (".xz", lzma.compress)])
def test_compressed_by_extension(tmp_path, suffix, compress):
    path = tmp_path / f"trace{suffix}"
    path.write_bytes(compress(TRACE))
    assert summarise(read_file(path)).events == 2


def test_stdin_dash():
    assert summarise(read_file("-", stdin=io.BytesIO(TRACE))).events == 2


@pytest.mark.parametrize("data, message", [
    (b"", "empty input"),
    (b" \n\n\t\n", "input holds only whitespace"),
    (b"\x7fELF\x02\x01\x01\x00\x00\x00", "binary data (NUL byte at offset 7"),
    (gzip.compress(TRACE), "gzip-compressed data"),
    (lzma.compress(TRACE), "xz-compressed data"),
    (b"\n  <!DOCTYPE html>\n<html><body>", "HTML, not ftrace text"),
    (b"Hello\nworld\n", "no ftrace records, headers or markers in 2 lines"),
])
def test_not_ftrace(tmp_path, data, message):
    path = tmp_path / "input.txt"
    path.write_bytes(data)
    with pytest.raises(NotFtraceError) as err:
        summarise(read_file(path))
    assert str(err.value) == f"{path}: {message}" or str(err.value).startswith(f"{path}: {message}")


def test_long_prose_is_refused_early(monkeypatch):
    monkeypatch.setattr(reader, "SNIFF_LINES", 50)
    seen = []
    with pytest.raises(NotFtraceError, match="first 50 lines"):
        for line in read_lines(["just prose"] * 10_000, name="notes.txt"):
            seen.append(line)
    assert len(seen) == 50


@pytest.mark.parametrize("name, content, message", [
    ("missing.trace", None, "No such file or directory"),
    ("bad.gz", b"not gzip at all", "cannot read"),
    ("truncated.xz", lzma.compress(TRACE * 50)[:40], "cannot read"),
])
def test_unreadable(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(TraceInputError) as err:
        summarise(read_file(path))
    assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_directory_is_an_input_error(tmp_path):
    with pytest.raises(TraceInputError):
        with open_trace(tmp_path) as lines:
            list(lines)


@settings(max_examples=300, deadline=None)
@given(lengths=st.lists(st.integers(1, 60), min_size=1, max_size=12),
       chunk=st.integers(1, 24), crlf=st.booleans(), last_newline=st.booleans())
def test_one_line_length_rule_wherever_chunks_fall(lengths, chunk, crlf, last_newline):
    """A line of more than MAX_LINE_BYTES bytes before its newline is cut, whatever the chunk
    size; a line of at most that many is read whole."""
    limit = 24
    saved = opener.MAX_LINE_BYTES, opener.CHUNK_BYTES, opener.SNIFF_BYTES
    opener.MAX_LINE_BYTES, opener.CHUNK_BYTES, opener.SNIFF_BYTES = limit, chunk, limit
    try:
        body = ["# t"] + ["x" * n for n in lengths]   # a short first line: the sniff's
        end = "\r\n" if crlf else "\n"
        data = end.join(body) + (end if last_newline else "")
        got = lines_of(data.encode())
    finally:
        opener.MAX_LINE_BYTES, opener.CHUNK_BYTES, opener.SNIFF_BYTES = saved
    cr = 1 if crlf else 0
    want, cut = [], []
    for i, line in enumerate(body):
        counted = len(line) + (cr if (i < len(body) - 1 or last_newline) else 0)
        cut.append(counted > limit)
        want.append((line + "\r" * cr)[:limit] if cut[-1] else line)
    assert got == want
    assert [type(g) is opener.Truncated for g in got] == cut


@pytest.mark.parametrize("length, cut", [
    (opener.MAX_LINE_BYTES, False), (opener.MAX_LINE_BYTES + 1, True),
    (opener.MAX_LINE_BYTES * 3 // 2, True), (2 * opener.MAX_LINE_BYTES - 1, True)])
@pytest.mark.parametrize("offset", [1, opener.CHUNK_BYTES // 2, opener.CHUNK_BYTES - 3])
def test_the_limit_at_its_real_size(length, cut, offset):
    """Lines between 1 and 2 MiB were read whole or cut depending on the chunking."""
    data = b"#" + b"p" * (offset - 2) + b"\n" + b"y" * length + b"\nz\n"
    lines = lines_of(data)
    assert lines[-1] == "z" and len(lines) == 3
    assert (type(lines[1]) is opener.Truncated) is cut
    assert len(lines[1]) == min(length, opener.MAX_LINE_BYTES)


def test_a_nul_inside_a_capture_spoils_only_its_line(tmp_path):
    """A torn write (NUL bytes) past the first line: that line is unparsed and named."""
    torn = TRACE + b"            bash-5402    [001] ..\x00\x00\x00\x00 584.0400: sys_wr\n" + TRACE[14:]
    path = tmp_path / "torn.trace"
    path.write_bytes(torn)
    summary = summarise(read_file(path))
    assert summary.events == 4
    assert [(u.line, u.reason) for u in summary.first_unparsed] == [(5, reader.R_NUL)]


def test_binary_records_after_a_text_header_are_refused(tmp_path):
    """The `bin` option: text headers, then records full of NULs (corpus capture 07c)."""
    path = tmp_path / "bin.trace"
    path.write_bytes(b"# tracer: nop\n#\n" + b"\x1a\x15\x00\x00(\xa0!Y type: 839\n" * 3)
    with pytest.raises(NotFtraceError, match="binary data"):
        summarise(read_file(path))


def test_a_nul_in_a_header_line_is_a_torn_write(tmp_path):
    path = tmp_path / "torn-header.trace"
    path.write_bytes(b"# trac\x00er: nop\n" + TRACE)
    summary = summarise(read_file(path))
    assert summary.events == 2
    assert [(u.line, u.reason) for u in summary.first_unparsed] == [(1, reader.R_NUL)]


@pytest.mark.parametrize("engine", ["fast", "lark"])
@pytest.mark.parametrize("line", [
    # a plain record (the hot path) and a marker: the kernel prints a NUL in neither
    "            bash-5402    [001] d..2.   584.035950: sched_switch: prev_comm=ba\x00sh",
    "            bash-5402    [001] .....   584.035951: tracing_mark_write: glued\x00 more",
])
def test_a_nul_spoils_its_line_in_every_way_of_reading(tmp_path, engine, line):
    path = tmp_path / "nul.trace"
    path.write_bytes(TRACE + line.encode() + b"\n")
    from_file = list(read_lines(iter_lines(path.open("rb"), "nul"), engine=engine))
    from_list = list(read_lines(TRACE.decode().splitlines() + [line], engine=engine))
    for lines in (from_file, from_list):
        assert [(x.kind, x.reason) for x in lines[-2:]] == [(LineKind.EVENT, None),
                                                           (LineKind.UNPARSED, reader.R_NUL)]
