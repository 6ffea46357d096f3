"""Reading Linux ftrace text into typed events.

    from validator.ftrace import read_file, summarise, LineKind

    for line in read_file("trace.txt"):          # one Line per input line, streamed
        if line.kind is LineKind.EVENT:
            for event in line.events:             # Event: task, pid, cpu, ts, name, fields, ...
                ...
        elif line.kind is LineKind.LOST:          # events are missing from here on
            ...

Inputs: the tracefs `trace` file (every header and option variant), `trace_pipe`,
`trace-cmd report` and `perf script` output; "-" is stdin; .gz/.xz by extension.
The grammar is ftrace.lark (grammar.py runs it); fastpath.py runs the same grammar as
regexes and is the default engine. Formats: docs/parse.md.

The reader knows no tool's events: a caller that wants some tracepoints and probes typed
passes `known=KnownEvents.of(...)` (known.py) to read_file/read_lines/read_events."""

from collections.abc import Iterable, Iterator

from .build import DecodeError, timestamp
from .decoders import convert, decode_kv
from .known import NO_KNOWN_EVENTS, KnownEvents, TracepointFormat
from .model import Event, Header, Line, LineKind, LostMarker, Probe
from .opener import NotFtraceError, TraceInputError, iter_lines, open_trace
from .reader import ENGINES, read_lines
from .summary import Summary, Unparsed, printable, summarise

__all__ = [
    "DecodeError", "ENGINES", "Event", "Header", "KnownEvents", "Line", "LineKind",
    "LostMarker", "NO_KNOWN_EVENTS", "NotFtraceError", "Probe", "Summary", "TraceInputError",
    "TracepointFormat", "Unparsed", "convert", "decode_kv", "iter_events", "iter_lines",
    "open_trace", "printable", "read_file", "read_lines", "summarise", "timestamp",
]


def read_file(path, *, known: KnownEvents = NO_KNOWN_EVENTS, engine: str = "fast",
              stdin=None) -> Iterator[Line]:
    """Open `path` ("-" = stdin) and stream its classified lines (the events `known` names
    typed). Raises TraceInputError (NotFtraceError for inputs that are not ftrace text) as
    it goes."""
    with open_trace(path, stdin=stdin) as lines:
        yield from read_lines(lines, known=known, engine=engine,
                              name="<stdin>" if str(path) == "-" else str(path))


def iter_events(lines: Iterable[Line]) -> Iterator[Event | LostMarker]:
    """The events and lost-event markers of a line stream, in order: what a replay needs."""
    for line in lines:
        if line.events:
            yield from line.events
        elif line.lost is not None:
            yield line.lost
