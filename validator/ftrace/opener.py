"""Opening trace input: files, stdin ("-"), .gz and .xz by extension, as a stream of text
lines. Reads bytes in large chunks and splits them itself because:
- only "\\n" ends a line (str.splitlines would also split on \\x0b, \\x1c, \\x85 ... that
  comms and markers may hold), "\\r\\n" is accepted;
- bytes that are not UTF-8 (comms cut mid-character, binary in markers) must survive:
  they decode to surrogate escapes, one per byte, and encode back unchanged;
- one line without a newline must not fill memory: lines stop at MAX_LINE_BYTES.
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

CHUNK_BYTES = 1 << 20
SNIFF_BYTES = 64 << 10
MAX_LINE_BYTES = 1 << 20


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
    nul = head.find(b"\x00")
    if nul >= 0:
        return f"binary data (NUL byte at offset {nul}; the `bin` trace option writes binary records)"
    return None


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


def piece_lines(piece: bytes | Truncated) -> list[str]:
    """The text lines of one of TextLines.pieces()."""
    if type(piece) is Truncated:
        return [piece]
    text = piece.decode("utf-8", "surrogateescape")
    if type(piece) is LastLine:
        return [text.removesuffix("\r")]
    if "\r" in text:  # "\r\n" ends a line too, also the piece's last (its "\n" was cut off)
        text = text.replace("\r\n", "\n").removesuffix("\r")
    return text.split("\n")


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
        if name.endswith(".gz"):
            stream = gzip.open(name, "rb")
        elif name.endswith(".xz"):
            stream = lzma.open(name, "rb")
        else:
            stream = open(name, "rb")
    except OSError as exc:
        raise TraceInputError(f"{name}: {_why(exc)}") from None
    with stream:
        yield iter_lines(stream, name)
