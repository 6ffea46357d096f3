"""Opening inputs: files, stdin, .gz/.xz, line splitting, and inputs that are not ftrace text."""

import gzip
import io
import lzma

import pytest

from validator.ftrace import (
    LineKind, NotFtraceError, TraceInputError, iter_lines, open_trace, read_file, read_lines, summarise,
)
from validator.ftrace import opener, reader

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
    monkeypatch.setattr(reader, "_SHORT", 0)
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
