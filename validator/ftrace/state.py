"""What the reader carries from line to line, what it counts of the lines it cannot
parse, and why a line is unparsed."""

import re

from .opener import MAX_LINE_BYTES, NotFtraceError

SNIFF_LINES = 10_000  # give up on an input with no ftrace evidence after this many lines

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

    def sync(self) -> None:
        """Become synced(): the state after a plain record."""
        self.nocontext = self.armed = self.owner_marker = False
        self.owner = None
        self.evidence = True

    def to_tuple(self) -> tuple:
        return (self.armed, self.nocontext, self.owner, self.owner_marker, self.evidence,
                self.first_line)

    @classmethod
    def from_tuple(cls, values: tuple) -> "ReaderState":
        state = cls()
        (state.armed, state.nocontext, state.owner, state.owner_marker, state.evidence,
         state.first_line) = values
        return state

    def gave_up(self, line_no: int) -> bool:
        """No ftrace evidence in the first SNIFF_LINES lines."""
        return not self.evidence and line_no - self.first_line + 1 >= SNIFF_LINES


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


def gave_up_error(name: str | None) -> NotFtraceError:
    return NotFtraceError(named(name, "no ftrace records, headers or markers in the first "
                                      f"{SNIFF_LINES} lines"))


def check_evidence(state: ReaderState, line_no: int, require_ftrace: bool, name) -> None:
    if require_ftrace and not state.evidence:
        read = line_no - state.first_line + 1
        lines_read = f"{read} line" + ("s" if read != 1 else "")
        raise NotFtraceError(named(name, f"no ftrace records, headers or markers in {lines_read}"
                                   if read else "empty input"))


def named(name: str | None, message: str) -> str:
    """`message`, prefixed with the input's name when there is one."""
    return f"{name}: {message}" if name else message
