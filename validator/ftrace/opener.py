"""Opening trace input: files, stdin ("-"), .gz and .xz by extension, as a stream of text
lines. Reads bytes in large chunks and splits them itself because:
- only "\\n" ends a line (str.splitlines would also split on \\x0b, \\x1c, \\x85 ... that
  comms and markers may hold), "\\r\\n" is accepted;
- bytes that are not UTF-8 (comms cut mid-character, binary in markers) must survive:
  they decode to surrogate escapes, one per byte, and encode back unchanged;
- one line without a newline must not fill memory.  The one rule: a line holds at most
  MAX_LINE_BYTES bytes before its newline (a CR of CRLF counted); a longer one is cut there,
  read as a Truncated line (unparsed, counted) and the rest up to its newline is skipped,
  wherever the read chunks fall.
The first chunk is sniffed so that a binary, compressed, HTML or empty input gets one clear
error instead of thousands of unparsed lines."""

import gzip
import lzma
import os
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from .bounded import RatioBound

CHUNK_BYTES = 1 << 20
SNIFF_BYTES = 64 << 10
MAX_LINE_BYTES = 1 << 20
# A line that starts and ends inside one chunk is then never over the limit.
assert CHUNK_BYTES <= MAX_LINE_BYTES


class TraceInputError(Exception):
    """An input that cannot be read as a trace. str() is one line, naming the input."""


class NotFtraceError(TraceInputError):
    """The input was read, but it is not ftrace text."""


class Truncated(str):
    """A line cut at MAX_LINE_BYTES; the rest of it was skipped."""


_MAGIC = (
    (b"\x1f\x8b", "gzip-compressed data (name it *.gz, or pipe it through zcat)"),
    (b"\xfd7zXZ\x00", "xz-compressed data (name it *.xz, or pipe it through xzcat)"),
    (b"\x17\x08\x44tracing", "a binary trace-cmd trace.dat file (run `trace-cmd report` first)"),
    (b"PERFILE2", "a binary perf.data file (run `perf script` first)"),
)


def sniff(head: bytes) -> str | None:
    """Why the first bytes of an input say it is not ftrace text, or None."""
    if not head.strip():
        return "empty input" if not head else "input holds only whitespace"
    for magic, why in _MAGIC:
        if head.startswith(magic):
            return why
    start = head.lstrip()[:64].lower()
    if start.startswith((b"<!doctype html", b"<html")):
        return ("HTML, not ftrace text (an Android systrace? extract its "
                '<script class="trace-data"> block first)')
    if b"\r" in head and b"\n" not in head:
        return ("lines end in CR only (no LF): not ftrace text as written; convert it "
                "first (tr '\\r' '\\n')")
    if _binary_records(head):
        nul = head.find(b"\x00")
        return f"binary data (NUL byte at offset {nul}; the `bin` trace option writes binary records)"
    return None


def _binary_records(head: bytes) -> bool:
    """Binary from the start: at least half of the first lines that are not "#" headers hold
    a NUL (the `bin` option writes text headers, then binary records).  A NUL further on (a
    torn write) only spoils its own line, which the reader counts as unparsed."""
    if b"\x00" not in head:
        return False
    records = [line for line in head.split(b"\n") if line.strip() and line[:1] != b"#"]
    holding = sum(1 for line in records if b"\x00" in line)
    return holding * 2 >= len(records)


class TextLines:
    """The text lines of a binary stream, without their newlines. Iterate it for str lines,
    or call blocks() for lists of them (what the reader does: cheaper per line).
    Creating it reads and sniffs the first chunk; raises TraceInputError."""

    def __init__(self, stream: BinaryIO, name: str):
        self.stream = stream
        self.name = name
        self._head = _read(stream, name, SNIFF_BYTES)
        why = sniff(self._head)
        if why:
            raise NotFtraceError(f"{name}: {why}")

    def __iter__(self) -> Iterator[str]:
        for block in self.blocks():
            yield from block

    def blocks(self) -> Iterator[list[str]]:
        for piece in self.pieces():
            yield piece_lines(piece)

    def pieces(self) -> Iterator[bytes]:
        """The raw input cut at newlines, for piece_lines(): bytes of whole lines (the
        last newline left out), a Truncated line, or a LastLine (no newline after it).
        Cutting a piece again at any of its newlines gives the same lines (the parallel
        reader does)."""
        chunk, self._head = self._head, b""
        stream, name = self.stream, self.name
        rest = b""
        skipping = False  # inside an over-long line, dropping bytes up to its newline
        while chunk:
            if skipping:
                cut = chunk.find(b"\n")
                if cut < 0:
                    chunk = _read(stream, name)
                    continue
                skipping = False
                chunk = chunk[cut + 1:]
            if rest:
                # The line `rest` began ends in this chunk, or not: its length decides.
                end = chunk.find(b"\n")
                if len(rest) + (end if end >= 0 else len(chunk)) > MAX_LINE_BYTES:
                    whole = rest + chunk[:MAX_LINE_BYTES - len(rest)]
                    yield Truncated(whole.decode("utf-8", "surrogateescape"))
                    rest = b""
                    if end < 0:
                        skipping = True
                        chunk = _read(stream, name)
                        continue
                    chunk = chunk[end + 1:] or _read(stream, name)
                    continue
            data = rest + chunk if rest else chunk
            cut = data.rfind(b"\n")
            if cut >= 0:
                yield data[:cut]
                rest = data[cut + 1:]
            else:
                rest = data
            if len(rest) > MAX_LINE_BYTES:
                yield Truncated(rest[:MAX_LINE_BYTES].decode("utf-8", "surrogateescape"))
                rest = b""
                skipping = True
            chunk = _read(stream, name)
        if rest and not skipping:
            yield LastLine(rest)


class LastLine(bytes):
    """The input's last line, which had no newline after it."""


class NulLine(str):
    """A line holding a NUL byte, which the kernel never prints in text (a marker's text
    ends at its NUL): a torn write.  The reader takes it off its hot path (one search per
    piece) and counts it as unparsed."""


class Lines(list):
    """Lines of piece_lines(): their NUL lines are already NulLine."""


def piece_lines(piece: bytes | Truncated) -> Lines:
    """The text lines of one of TextLines.pieces()."""
    if type(piece) is Truncated:
        return Lines([piece])
    text = piece.decode("utf-8", "surrogateescape")
    if type(piece) is LastLine:
        return mark_nul(Lines([text.removesuffix("\r")]))
    if "\r" in text:  # "\r\n" ends a line too, also the piece's last (its "\n" was cut off)
        text = text.replace("\r\n", "\n").removesuffix("\r")
    lines = Lines(text.split("\n"))
    return mark_nul(lines) if "\x00" in text else lines


def mark_nul(lines: list[str]) -> Lines:
    """The lines, those holding a NUL as NulLine."""
    return Lines(NulLine(line) if type(line) is str and "\x00" in line else line
                 for line in lines)


def iter_lines(stream: BinaryIO, name: str) -> TextLines:
    """Text lines of a binary stream (see TextLines). Raises TraceInputError."""
    return TextLines(stream, name)


def _read(stream: BinaryIO, name: str, size: int | None = None) -> bytes:
    try:
        return stream.read(size or CHUNK_BYTES)
    except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
        raise TraceInputError(f"{name}: cannot read: {_why(exc)}") from None


def _why(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "compressed data ends early (truncated file?)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or exc.__class__.__name__


@contextmanager
def open_trace(path: str | os.PathLike, stdin: BinaryIO | None = None) -> Iterator[TextLines]:
    """`with open_trace("trace.gz") as lines: ...`; "-" reads stdin (bytes)."""
    name = os.fspath(path)
    if name == "-":
        yield iter_lines(stdin if stdin is not None else sys.stdin.buffer, "<stdin>")
        return
    try:
        if name.endswith((".gz", ".xz")):
            # a bound on the ratio: a compression bomb is refused, not read for an hour
            raw = open(name, "rb")
            inflated = gzip.GzipFile(fileobj=raw) if name.endswith(".gz") else lzma.LZMAFile(raw)
            stream = RatioBound(inflated, raw)
        else:
            stream = open(name, "rb")
    except OSError as exc:
        raise TraceInputError(f"{name}: {_why(exc)}") from None
    with stream:
        yield iter_lines(stream, name)
