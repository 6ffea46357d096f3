"""Marker events (trace_marker, trace_printk): free-form text that may span lines and may
hide further records when a NUL cut it short (ftrace-formats §7.7)."""

import re
from itertools import islice

from .parsed import Parsed

# Events whose text is free-form (trace_marker, trace_printk): they may span lines and may
# hide another record when a NUL cut them short.
MARKER_NAMES = frozenset({"tracing_mark_write", "tracing_mark", "print", "bprint", "bputs"})

# A second record inside a marker's payload: its columns after the comm, in kernel, latency
# or verbose format. The comm field before them is 16 (kernel, verbose, trace-cmd) or 8
# (latency) wide.
_EMBEDDED_CTX = re.compile(
    r"-\d+ +(?:\( *(?:\d+|-+)\) +)?\[\d+\] +(?:[^\s\d:][^\s:]* +)?\d+(?:\.\d+)?: "
    r"|-\d+ +\d+[^\s\d:][^\s:]* +\d+(?:\.\d+|us[ !+#*@$])?: "
    r"| +\d+ +\d+ \d+ [0-9a-f]{8} [0-9a-f]{8} \[[0-9a-f]+\] \d+\.\d+ms \(\+\d+\.\d+ms\): "
)
_EMBEDDED_RAW = re.compile(r" (?=\d+ \d+ \d+ (?:type: \d+$|# [0-9a-f]+ ))")
_COMM_WIDTHS = (16, 8)
# A real glued record is found at the first candidate; the caps keep a long marker full of
# record-like text linear.
_MAX_CANDIDATES = 4
_MAX_GLUED = 16


def is_marker(parsed: Parsed) -> bool:
    if parsed.body == "named":
        return parsed.name in MARKER_NAMES or parsed.sym is not None
    return parsed.body == "raw_print"


def split_glued(parsed: Parsed, parse) -> tuple[Parsed, list[tuple[str, Parsed]]]:
    """A marker's payload may hold further records -> (first record, [(text, record), ...])."""
    glued = []
    first = parsed
    payload = parsed.payload or ""
    while len(glued) < _MAX_GLUED:
        found = None
        for m in islice(_EMBEDDED_CTX.finditer(payload), _MAX_CANDIDATES):
            for width in _COMM_WIDTHS:
                start = m.start() - width
                if start > 0:
                    tail = payload[start:]
                    candidate = parse(tail)
                    if candidate.kind == "record":
                        found = (start, tail, candidate)
                        break
            if found:
                break
        if found is None and parsed.form in ("raw_dec", "raw_hex"):
            m = _EMBEDDED_RAW.search(payload)
            if m is not None:
                tail = payload[m.end():]
                candidate = parse(tail)
                if candidate.kind == "record":
                    found = (m.end(), tail, candidate)
        if found is None:
            return first, glued
        start, tail, candidate = found
        head = payload[:start].rstrip()
        if glued:
            text, last = glued[-1]
            glued[-1] = (text[: len(text) - len(tail)].rstrip(), last._replace(payload=head))
        else:
            first = first._replace(payload=head)
        glued.append((tail, candidate))
        if not is_marker(candidate):
            return first, glued
        payload = candidate.payload or ""
    return first, glued
