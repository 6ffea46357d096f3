"""The streaming reader: text lines in, one classified Line out per line, in order.

Per line it asks a parser (fastpath by default, the lark grammar on request) what the line
says, then adds what needs state across lines:
- continuation lines: the lines after a marker whose text held a newline, and the
  " => frame" lines after a <stack trace> record;
- the no-context mode (context-info off): bare "name: payload" lines under a header;
- records glued onto one line (a NUL in a marker swallows the newline; ftrace-formats §7.7).
Nothing is held but the current line, so memory stays flat on any input size."""

import re
from collections.abc import Iterable, Iterator
from itertools import islice

from . import fastpath, grammar
from .build import DecodeError, build_event, build_header, build_lost, named_fields, timestamp
from .decoders import POISONCHECK_PROBES, TRACEPOINTS, LazyFields
from .model import Event, Line, LineKind, LostMarker
from .opener import MAX_LINE_BYTES, Lines, NotFtraceError, TextLines, Truncated, mark_nul
from .parsed import Parsed

ENGINES = {"fast": fastpath.parse_line, "lark": grammar.parse_line}

# Events whose text is free-form (trace_marker, trace_printk): they may span lines and may
# hide another record when a NUL cut them short.
MARKER_NAMES = frozenset({"tracing_mark_write", "tracing_mark", "print", "bprint", "bputs"})

EVENT = LineKind.EVENT
UNPARSED = LineKind.UNPARSED
_SHORT = MAX_LINE_BYTES // 4  # a Truncated line has more characters (UTF-8: <= 4 bytes each)
# Events the hot path must not treat as plain (fields decoded lazily): typed ones, markers
_SPECIAL_NAMES = frozenset(MARKER_NAMES | TRACEPOINTS.keys() | POISONCHECK_PROBES)

# Header forms that only ftrace tools print; comments and tool messages do not count.
_FTRACE_HEADERS = frozenset({"tracer", "entries", "legend", "cpus"})
SNIFF_LINES = 10_000  # give up on an input with no ftrace evidence after this many lines

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

# Reasons for unparsed lines
R_NUL = "NUL byte: the kernel prints none in text (a torn write?)"
R_TOO_LONG = f"line longer than {MAX_LINE_BYTES} bytes (truncated)"
R_NO_CONTEXT = "event body without the task-pid [cpu] timestamp columns"
R_BAD_BODY = "task-pid [cpu] timestamp columns, but the rest fits no known record form"
R_NOT_FTRACE = "not an ftrace line: no record columns, header or lost-event marker"
R_NUMBER = "a number in this record is too large to read"
_LOOKS_LIKE_CONTEXT = re.compile(
    r"-?\d+ +(?:\(.*?\) +)?\[\d+\] .*?\d+(?:\.\d+)?:"  # pid [cpu] ... timestamp:
    r"|\d+[^\s\d:]\S* +\d+(?:us|\.\d+)"  # latency: cpu+flags time
)


def explain(text: str) -> str:
    """Why a line that matched nothing is unparsed, in one phrase."""
    if _LOOKS_LIKE_CONTEXT.search(text[:512]):  # the columns come first; bounded on long lines
        return R_BAD_BODY
    return R_NOT_FTRACE


def _is_marker(parsed: Parsed) -> bool:
    if parsed.body == "named":
        return parsed.name in MARKER_NAMES or parsed.sym is not None
    return parsed.body == "raw_print"


def _split_glued(parsed: Parsed, parse) -> tuple[Parsed, list[tuple[str, Parsed]]]:
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
        if not _is_marker(candidate):
            return first, glued
        payload = candidate.payload or ""
    return first, glued


class ReaderState:
    """What the reader carries from one line to the next. After a plain record (the hot
    path) it is always the same, synced(): the parallel reader starts its chunks there."""

    __slots__ = ("armed", "nocontext", "owner", "owner_marker", "evidence", "first_line")

    def __init__(self, first_line: int = 1):
        self.armed = False  # just after a "# tracer:" header: a bare body means context-info is off
        self.nocontext = False
        self.owner = None  # line_no of the record that the next continuation line would belong to
        self.owner_marker = False  # ... and whether it is a marker (else a stack trace)
        self.evidence = False  # seen anything only ftrace prints
        self.first_line = first_line  # the input's first line (for the sniff limit)

    @classmethod
    def synced(cls) -> "ReaderState":
        state = cls()
        state.evidence = True
        return state

    def to_tuple(self) -> tuple:
        return (self.armed, self.nocontext, self.owner, self.owner_marker, self.evidence,
                self.first_line)

    @classmethod
    def from_tuple(cls, values: tuple) -> "ReaderState":
        state = cls()
        (state.armed, state.nocontext, state.owner, state.owner_marker, state.evidence,
         state.first_line) = values
        return state


class UnparsedCount:
    """Lines a reader could not parse: how many, the first few (line, reason), and with
    keep_lines every line number (for a part of the input read ahead of its consumer)."""

    KEEP = 5

    def __init__(self, keep_lines: bool = False):
        self.count = 0
        self.first: list[tuple[int, str]] = []
        self.lines: list[int] | None = [] if keep_lines else None

    def add(self, line_no: int, reason: str) -> None:
        self.count += 1
        if len(self.first) < self.KEEP:
            self.first.append((line_no, reason))
        if self.lines is not None:
            self.lines.append(line_no)

    def merge(self, other: "UnparsedCount", before: int | None = None) -> None:
        """Add `other`'s lines (only those before line `before`: other must keep lines)."""
        if before is None:
            self.count += other.count
            self.first.extend(other.first[: self.KEEP - len(self.first)])
            return
        self.count += sum(1 for line in other.lines if line < before)
        room = self.KEEP - len(self.first)
        self.first.extend([item for item in other.first if item[0] < before][:room])


def hot_match(text: str):
    """The groups of a plain kernel-format record of an ordinary event (the hot path), or
    None when the line needs the general path. Plain records parse the same whatever the
    reader's state, and leave it synced()."""
    if type(text) is not str:   # Truncated, NulLine
        return None
    m = _HOT(text)
    if m is None or text[0] == "[":  # "[": a dmesg prefix may hide in the comm
        return None
    groups = m.groups()
    # markers need the general path (a symbol after the name marks one too)
    if groups[7] is not None or groups[6] in MARKER_NAMES:
        return None
    ok = _TASK_OK.get(groups[0])
    if ok is None:
        ok = _task_ok(groups[0])
    return groups if ok else None


def _task_ok(task: str) -> bool:
    """fastpath.hot_ok, and no trace-cmd input prefix; remembered: a trace has few comms."""
    if len(_TASK_OK) >= 4096:
        _TASK_OK.clear()
    ok = _TASK_OK[task] = (task[-1] not in " \t" and ".dat: " not in task
                           and ("-" not in task or _EARLY(task) is None))
    return ok


_TASK_OK: dict[str, bool] = {}
_HOT = fastpath.HOT_RE.match
_EARLY = fastpath.EARLY_CTX.search
_NEW = tuple.__new__
# Below this length no number in a line is too long for int() (see R_NUMBER)
_INT_SAFE = 4000


def hot_event(groups: tuple, text: str, line_no: int) -> Event:
    """The Event of a line hot_match() accepted. Raises DecodeError (payload does not fit
    its typed event) or ValueError (a number too long for int())."""
    task, pid, tgid, cpu, flags, ts, event_name, _, payload = groups
    if payload is None:
        payload = ""
    if event_name in _SPECIAL_NAMES or payload[:1] == "(":
        fields, probe, system = named_fields(event_name, payload, None)
    else:
        fields, probe, system = LazyFields(payload), None, None
    if len(ts) > 7 and ts[-7] == ".":  # sec.usec, the default clocks
        stamp, unit = int(ts.replace(".", "")) * 1000, "ns"
    else:
        stamp, unit = timestamp("kernel", ts.strip())
    if tgid is not None:
        tgid = tgid.strip()[1:-1].strip()
        tgid = int(tgid) if tgid[0] != "-" else None
    # tuple.__new__: the NamedTuple without its Python-level __new__
    return _NEW(Event, (line_no, text, task.lstrip(" \t"), -int(pid), tgid, int(cpu.strip(" []")),
                        flags.strip() if flags is not None else None, stamp, unit, system,
                        event_name, payload, fields, probe, None))


def _hot_line(groups: tuple, text: str, line_no: int, state: ReaderState) -> Line:
    try:
        line = _NEW(Line, (line_no, EVENT, text, None, (hot_event(groups, text, line_no),),
                           None, None, None))
        state.evidence = True
    except DecodeError as exc:
        line = Line(line_no, UNPARSED, text, str(exc))
    except ValueError:  # int() refuses numbers of thousands of digits
        line = Line(line_no, UNPARSED, text, R_NUMBER)
    state.nocontext = state.armed = state.owner_marker = False
    state.owner = None
    return line


def read_lines(lines: Iterable[str], *, engine: str = "fast", first_line: int = 1,
               require_ftrace: bool = True, name: str | None = None) -> Iterator[Line]:
    """Classify every line. With require_ftrace, raise NotFtraceError (after yielding what
    was read) when nothing in the input is ftrace: after SNIFF_LINES lines, or at the end.
    `name` prefixes error messages."""
    parse = ENGINES[engine]
    state = ReaderState(first_line)
    # The fast engine's hot path: a plain record goes straight to an Event, skipping the
    # Parsed and build layers (this is most lines; tests compare the whole output of both
    # engines on every corpus file, so the shortcut is checked against the grammar too).
    hot = engine == "fast"
    if hot:
        parse = fastpath.parse_general  # the hot path is tried first
    line_no = first_line - 1
    sniff = require_ftrace
    blocks = lines.blocks() if isinstance(lines, TextLines) else _batched(lines)
    for block in blocks:
        for text in block:
            line_no += 1
            if hot:
                groups = hot_match(text)
                if groups is not None:
                    yield _hot_line(groups, text, line_no, state)
                    continue
            line = general_line(text, line_no, state, parse)
            yield line
            if sniff and line.kind is UNPARSED and _gave_up(state, line_no):
                raise NotFtraceError(_named(
                    name, f"no ftrace records, headers or markers in the first {SNIFF_LINES} lines"))
    check_evidence(state, line_no, require_ftrace, name)


def read_events(lines: Iterable[str], wanted: frozenset, unparsed: UnparsedCount, *,
                first_line: int = 1, require_ftrace: bool = True, name: str | None = None,
                state: ReaderState | None = None, final: bool = True, shortcut=None
                ) -> Iterator[Event | LostMarker]:
    """The events named in `wanted` and the lost-event markers, in order: what
    read_lines() would give for them, without building the lines nothing asks for.
    Unparsed lines are counted in `unparsed`; the rest is skipped.

    shortcut(name, payload, text, line_no), when given, is tried on plain records of
    wanted events: whatever it returns (not None) is yielded instead of the Event. It must
    return None wherever the Event would not be built (a payload that does not fit)."""
    parse = fastpath.parse_general
    state = state if state is not None else ReaderState(first_line)
    special, task_ok, hot, markers, plain_str = _SPECIAL_NAMES, _TASK_OK, _HOT, MARKER_NAMES, str
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
                            ok = task_ok.get(task)
                            if ok is None:
                                ok = _task_ok(task)
                            if ok:
                                if event_name not in wanted:
                                    if event_name not in special and len(text) < _INT_SAFE:
                                        plain = True    # nobody asked for it; it parses
                                        continue
                                elif shortcut is not None and len(text) < _INT_SAFE:
                                    item = shortcut(event_name, payload, text, line_no)
                                    if item is not None:
                                        plain = True
                                        yield item
                                        continue
                                if plain:
                                    _sync(state)
                                    plain = False
                                line = _hot_line(m.groups(), text, line_no, state)
                if line is None:
                    if plain:
                        _sync(state)
                        plain = False
                    line = general_line(text, line_no, state, parse)
                if line.events:
                    for event in line.events:
                        if event.name in wanted:
                            yield event
                elif line.lost is not None:
                    yield line.lost
                elif line.kind is UNPARSED:
                    unparsed.add(line_no, line.reason)
                    if require_ftrace and _gave_up(state, line_no):
                        raise NotFtraceError(_named(name, "no ftrace records, headers or "
                                                    f"markers in the first {SNIFF_LINES} lines"))
    finally:
        if plain:
            _sync(state)
    if final:
        check_evidence(state, line_no, require_ftrace, name)


def _sync(state: ReaderState) -> None:
    """The state after a plain record (ReaderState.synced())."""
    state.nocontext = state.armed = state.owner_marker = False
    state.owner = None
    state.evidence = True


def _gave_up(state: ReaderState, line_no: int) -> bool:
    return not state.evidence and line_no - state.first_line + 1 >= SNIFF_LINES


def check_evidence(state: ReaderState, line_no: int, require_ftrace: bool, name) -> None:
    if require_ftrace and not state.evidence:
        read = line_no - state.first_line + 1
        lines_read = f"{read} line" + ("s" if read != 1 else "")
        raise NotFtraceError(_named(name, f"no ftrace records, headers or markers in {lines_read}"
                                    if read else "empty input"))


def general_line(text: str, line_no: int, state: ReaderState, parse) -> Line:
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
        line = _event_line(parsed, line_no, text, parse)
        if line.kind is EVENT:
            state.evidence = True
            marker = _is_marker(parsed)
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


def _named(name: str | None, message: str) -> str:
    return f"{name}: {message}" if name else message


def _event_line(parsed: Parsed, line_no: int, text: str, parse) -> Line:
    glued = ()
    if _is_marker(parsed):
        parsed, glued = _split_glued(parsed, parse)
    try:
        if glued:
            first_raw = text[: len(text) - len(glued[0][0])].rstrip()
            events = [build_event(parsed, line_no, first_raw)]
            events.extend(build_event(p, line_no, raw) for raw, p in glued)
            return Line(line_no, LineKind.EVENT, text, events=tuple(events))
        return Line(line_no, LineKind.EVENT, text, events=(build_event(parsed, line_no, text),))
    except DecodeError as exc:
        return Line(line_no, LineKind.UNPARSED, text, str(exc))
    except ValueError:  # int() refuses numbers of thousands of digits
        return Line(line_no, LineKind.UNPARSED, text, R_NUMBER)
