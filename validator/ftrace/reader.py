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
from .model import Event, Line, LineKind
from .opener import MAX_LINE_BYTES, NotFtraceError, TextLines, Truncated
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
R_NUL = "NUL byte: binary data in a text trace"
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
    if "\x00" in text:
        return R_NUL
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


def read_lines(lines: Iterable[str], *, engine: str = "fast", first_line: int = 1,
               require_ftrace: bool = True, name: str | None = None) -> Iterator[Line]:
    """Classify every line. With require_ftrace, raise NotFtraceError (after yielding what
    was read) when nothing in the input is ftrace: after SNIFF_LINES lines, or at the end.
    `name` prefixes error messages."""
    parse = ENGINES[engine]
    # The fast engine's hot path, fused into this loop: a kernel-format "name: payload"
    # record of an ordinary event goes straight to an Event, skipping the Parsed and build
    # layers (this is most lines; tests compare the whole output of both engines on every
    # corpus file, so the shortcut is checked against the grammar as well).
    hot = None
    if engine == "fast":
        hot = fastpath.HOT_RE.match
        parse = fastpath.parse_general  # the hot path is tried below
    early = fastpath.EARLY_CTX.search
    special = _SPECIAL_NAMES
    new = tuple.__new__
    armed = False  # just after a "# tracer:" header: a bare body means context-info is off
    nocontext = False
    owner = None  # line_no of the record that the next continuation line would belong to
    owner_marker = False  # ... and whether it is a marker (else a stack trace)
    evidence = False  # seen anything only ftrace prints
    line_no = first_line - 1
    blocks = lines.blocks() if isinstance(lines, TextLines) else _batched(lines)
    for block in blocks:
        for text in block:
            line_no += 1
            if len(text) > _SHORT and type(text) is Truncated:
                owner = None
                armed = False
                yield Line(line_no, UNPARSED, text, R_TOO_LONG)
                continue
            if hot is not None:
                m = hot(text)
                if m is not None and text[0] != "[":  # "[": a dmesg prefix may hide in the comm
                    task, pid, tgid, cpu, flags, ts, event_name, sym, payload = m.groups()
                    # markers need the general path; the rest is fastpath.hot_ok, inlined
                    if (sym is None and event_name not in MARKER_NAMES and task[-1] not in " \t"
                            and ".dat: " not in task and ("-" not in task or early(task) is None)):
                        if payload is None:
                            payload = ""
                        try:
                            if event_name in special or payload[:1] == "(":
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
                            # tuple.__new__: the NamedTuples without their Python-level __new__
                            line = new(Line, (line_no, EVENT, text, None, (new(Event, (
                                line_no, text, task.lstrip(" \t"), -int(pid), tgid, int(cpu.strip(" []")),
                                flags.strip() if flags is not None else None, stamp, unit, system,
                                event_name, payload, fields, probe, None)),), None, None, None))
                            evidence = True
                        except DecodeError as exc:
                            line = Line(line_no, UNPARSED, text, str(exc))
                        except ValueError:  # int() refuses numbers of thousands of digits
                            line = Line(line_no, UNPARSED, text, R_NUMBER)
                        nocontext = armed = False
                        owner = None
                        yield line
                        continue
            parsed = parse(text)
            kind = parsed.kind
            if kind == "record" or (kind == "body" and (nocontext or armed)):
                nocontext = kind == "body"
                armed = False
                line = _event_line(parsed, line_no, text, parse)
                if line.kind is LineKind.EVENT:
                    evidence = True
                    marker = _is_marker(parsed)
                    owner = line_no if marker or parsed.body == "stack_head" else None
                    owner_marker = marker
                else:
                    owner = None
                yield line
                continue
            if kind == "blank":
                owner = None
                yield Line(line_no, LineKind.BLANK, text)
                continue
            if kind == "header":
                owner = None
                header = build_header(parsed)
                if header.form == "tracer":  # a new trace section (files get concatenated)
                    armed = True
                    nocontext = False
                if header.form in _FTRACE_HEADERS:
                    evidence = True
                yield Line(line_no, LineKind.HEADER, text, header=header)
                continue
            armed = False
            if kind == "stack_entry":
                reason = "marker text" if owner_marker else "stack trace"
                yield Line(line_no, LineKind.CONTINUATION, text, reason, continues=owner)
            elif kind == "lost":
                owner = None
                evidence = True
                yield Line(line_no, LineKind.LOST, text, lost=build_lost(parsed, line_no))
            elif kind == "funcgraph":
                owner = None
                evidence = True
                yield Line(line_no, LineKind.FUNCGRAPH, text)
            elif owner is not None and owner_marker:  # bad or body: more of the marker's text
                yield Line(line_no, LineKind.CONTINUATION, text, "marker text", continues=owner)
            else:
                owner = None
                reason = R_NO_CONTEXT if kind == "body" else explain(text)
                yield Line(line_no, LineKind.UNPARSED, text, reason)
                if not evidence and require_ftrace and line_no - first_line + 1 >= SNIFF_LINES:
                    raise NotFtraceError(_named(
                        name, f"no ftrace records, headers or markers in the first {SNIFF_LINES} lines"))
    if require_ftrace and not evidence:
        read = line_no - first_line + 1
        lines_read = f"{read} line" + ("s" if read != 1 else "")
        raise NotFtraceError(_named(name, f"no ftrace records, headers or markers in {lines_read}"
                                    if read else "empty input"))


def _batched(lines: Iterable[str], size: int = 4096) -> Iterator[list[str]]:
    it = iter(lines)
    while block := list(islice(it, size)):
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
