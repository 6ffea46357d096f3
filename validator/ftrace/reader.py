"""The streaming reader: text lines in, one classified Line out per line, in order.

Per line it asks a parser (fastpath by default, the lark grammar on request) what the line
says, then adds what needs state across lines (state.ReaderState):
- continuation lines: the lines after a marker whose text held a newline, and the
  " => frame" lines after a <stack trace> record;
- the no-context mode (context-info off): bare "name: payload" lines under a header;
- records glued onto one line (a NUL in a marker swallows the newline; markers.py).
Nothing is held but the current line, so memory stays flat on any input size.

Which events get typed fields is the caller's word (known.KnownEvents); by default none."""

from collections.abc import Iterable, Iterator
from itertools import islice

from . import fastpath, grammar
from .build import DecodeError, build_event, build_header, build_lost
from .hot import HOT_MATCH, INT_SAFE, TASK_OK, hot_line, hot_match, task_ok
from .known import NO_KNOWN_EVENTS, KnownEvents
from .markers import MARKER_NAMES, is_marker, split_glued
from .model import Line, LineKind, LostMarker
from .opener import Lines, TextLines, Truncated, mark_nul
from .parsed import Parsed
from .state import (R_NO_CONTEXT, R_NUL, R_NUMBER, R_TOO_LONG, ReaderState, UnparsedCount,
                    check_evidence, explain, gave_up_error)

ENGINES = {"fast": fastpath.parse_line, "lark": grammar.parse_line}

__all__ = ["ENGINES", "MARKER_NAMES", "ReaderState", "UnparsedCount", "general_line",
           "hot_match", "read_events", "read_lines"]

EVENT = LineKind.EVENT
UNPARSED = LineKind.UNPARSED
# Header forms that only ftrace tools print; comments and tool messages do not count.
_FTRACE_HEADERS = frozenset({"tracer", "entries", "legend", "cpus"})


def read_lines(lines: Iterable[str], *, known: KnownEvents = NO_KNOWN_EVENTS,
               engine: str = "fast", first_line: int = 1, require_ftrace: bool = True,
               name: str | None = None) -> Iterator[Line]:
    """Classify every line; the events `known` names get typed fields. With
    require_ftrace, raise NotFtraceError (after yielding what was read) when nothing in
    the input is ftrace: after SNIFF_LINES lines, or at the end. `name` prefixes error
    messages."""
    parse = ENGINES[engine]
    state = ReaderState(first_line)
    # The fast engine tries the hot path (hot.py) first; the rest goes the general way.
    hot = engine == "fast"
    if hot:
        parse = fastpath.parse_general
    line_no = first_line - 1
    sniff = require_ftrace
    blocks = lines.blocks() if isinstance(lines, TextLines) else _batched(lines)
    for block in blocks:
        for text in block:
            line_no += 1
            if hot:
                groups = hot_match(text)
                if groups is not None:
                    yield hot_line(groups, text, line_no, state, known)
                    continue
            line = general_line(text, line_no, state, parse, known)
            yield line
            if sniff and line.kind is UNPARSED and state.gave_up(line_no):
                raise gave_up_error(name)
    check_evidence(state, line_no, require_ftrace, name)


def read_events(lines: Iterable[str], wanted: frozenset, unparsed: UnparsedCount, *,
                known: KnownEvents = NO_KNOWN_EVENTS, first_line: int = 1,
                require_ftrace: bool = True, name: str | None = None,
                state: ReaderState | None = None, final: bool = True, shortcut=None
                ) -> Iterator:
    """The events named in `wanted` and the lost-event markers (Event | LostMarker), in
    order: what read_lines() would give for them, without building the lines nothing
    asks for. Unparsed lines are counted in `unparsed`; the rest is skipped.

    shortcut(name, payload, text, line_no), when given, is tried on plain records of
    wanted events: whatever it returns (not None) is yielded instead of the Event. It must
    return None wherever the Event would not be built (a payload that does not fit)."""
    parse = fastpath.parse_general
    state = state if state is not None else ReaderState(first_line)
    special, ok_of, hot, markers, plain_str = (known.special_names, TASK_OK, HOT_MATCH,
                                               MARKER_NAMES, str)
    line_no = first_line - 1
    # hot_match() inlined, and the state of a plain record (synced()) written back only
    # when another kind of line needs it: this loop runs once per line of the trace.
    plain = False
    blocks = lines.blocks() if isinstance(lines, TextLines) else _batched(lines)
    try:
        for block in blocks:
            for text in block:
                line_no += 1
                line = None
                if type(text) is plain_str:        # not Truncated, not NulLine
                    m = hot(text)
                    if m is not None and text[0] != "[":
                        task, event_name, sym, payload = m.group(1, 7, 8, 9)
                        if sym is None and event_name not in markers:
                            ok = ok_of.get(task)
                            if ok is None:
                                ok = task_ok(task)
                            if ok:
                                if event_name not in wanted:
                                    if event_name not in special and len(text) < INT_SAFE:
                                        plain = True    # nobody asked for it; it parses
                                        continue
                                elif shortcut is not None and len(text) < INT_SAFE:
                                    item = shortcut(event_name, payload, text, line_no)
                                    if item is not None:
                                        plain = True
                                        yield item
                                        continue
                                if plain:
                                    state.sync()
                                    plain = False
                                line = hot_line(m.groups(), text, line_no, state, known)
                if line is None:
                    if plain:
                        state.sync()
                        plain = False
                    line = general_line(text, line_no, state, parse, known)
                if line.events:
                    for event in line.events:
                        if event.name in wanted:
                            yield event
                elif line.lost is not None:
                    yield line.lost
                elif line.kind is UNPARSED:
                    unparsed.add(line_no, line.reason)
                    if require_ftrace and state.gave_up(line_no):
                        raise gave_up_error(name)
    finally:
        if plain:
            state.sync()
    if final:
        check_evidence(state, line_no, require_ftrace, name)


def general_line(text: str, line_no: int, state: ReaderState, parse,
                 known: KnownEvents) -> Line:
    """One line that is not a plain record (see hot_match): parse it and update state."""
    if type(text) is Truncated:
        state.owner = None
        state.armed = False
        return Line(line_no, UNPARSED, text, R_TOO_LONG)
    if "\x00" in text:     # the kernel prints no NUL (a marker's text ends at one): torn
        state.owner = None
        state.armed = False
        return Line(line_no, UNPARSED, text, R_NUL)
    parsed = parse(text)
    kind = parsed.kind
    if kind == "record" or (kind == "body" and (state.nocontext or state.armed)):
        state.nocontext = kind == "body"
        state.armed = False
        line = _event_line(parsed, line_no, text, parse, known)
        if line.kind is EVENT:
            state.evidence = True
            marker = is_marker(parsed)
            state.owner = line_no if marker or parsed.body == "stack_head" else None
            state.owner_marker = marker
        else:
            state.owner = None
        return line
    if kind == "blank":
        state.owner = None
        return Line(line_no, LineKind.BLANK, text)
    if kind == "header":
        state.owner = None
        try:
            header = build_header(parsed)
        except ValueError:  # int() refuses numbers of thousands of digits
            return Line(line_no, UNPARSED, text, R_NUMBER)
        if header.form == "tracer":  # a new trace section (files get concatenated)
            state.armed = True
            state.nocontext = False
        if header.form in _FTRACE_HEADERS:
            state.evidence = True
        return Line(line_no, LineKind.HEADER, text, header=header)
    state.armed = False
    if kind == "stack_entry":
        reason = "marker text" if state.owner_marker else "stack trace"
        return Line(line_no, LineKind.CONTINUATION, text, reason, continues=state.owner)
    if kind == "lost":
        state.owner = None
        state.evidence = True
        try:
            lost = build_lost(parsed, line_no)
        except ValueError:  # a count of thousands of digits: events were lost, how many is unknown
            lost = LostMarker(line_no, parsed.form, None, None)
        return Line(line_no, LineKind.LOST, text, lost=lost)
    if kind == "funcgraph":
        state.owner = None
        state.evidence = True
        return Line(line_no, LineKind.FUNCGRAPH, text)
    if state.owner is not None and state.owner_marker:  # bad or body: more of the marker's text
        return Line(line_no, LineKind.CONTINUATION, text, "marker text", continues=state.owner)
    state.owner = None
    return Line(line_no, UNPARSED, text, R_NO_CONTEXT if kind == "body" else explain(text))


def _batched(lines: Iterable[str], size: int = 4096) -> Iterator[list[str]]:
    if type(lines) is Lines:        # piece_lines() marked them already
        yield lines
        return
    it = iter(lines)
    while block := mark_nul(islice(it, size)):
        yield block


def _event_line(parsed: Parsed, line_no: int, text: str, parse, known: KnownEvents) -> Line:
    glued = ()
    if is_marker(parsed):
        parsed, glued = split_glued(parsed, parse)
    try:
        if glued:
            first_raw = text[: len(text) - len(glued[0][0])].rstrip()
            events = [build_event(parsed, line_no, first_raw, known)]
            events.extend(build_event(p, line_no, raw, known) for raw, p in glued)
            return Line(line_no, LineKind.EVENT, text, events=tuple(events))
        return Line(line_no, LineKind.EVENT, text, events=(build_event(parsed, line_no, text, known),))
    except DecodeError as exc:
        return Line(line_no, LineKind.UNPARSED, text, str(exc))
    except ValueError:  # int() refuses numbers of thousands of digits
        return Line(line_no, LineKind.UNPARSED, text, R_NUMBER)
