"""The hot path: a plain kernel-format record of an ordinary event (most lines of a trace)
goes straight to an Event, skipping the Parsed and build layers. Tests compare the whole
output with the grammar's on every corpus file, so the shortcut is checked against it."""

from . import fastpath
from .build import DecodeError, named_fields, timestamp
from .decoders import LazyFields
from .known import KnownEvents
from .markers import MARKER_NAMES
from .model import Event, Line, LineKind
from .state import R_NUMBER, ReaderState

EVENT = LineKind.EVENT
UNPARSED = LineKind.UNPARSED
HOT_MATCH = fastpath.HOT_RE.match
_EARLY = fastpath.EARLY_CTX.search
_NEW = tuple.__new__
# Below this length no number in a line is too long for int() (see R_NUMBER)
INT_SAFE = 4000
# task -> whether it may start a plain record (task_ok); a trace has few comms
TASK_OK: dict[str, bool] = {}


def hot_match(text: str):
    """The groups of a plain kernel-format record of an ordinary event (the hot path), or
    None when the line needs the general path. Plain records parse the same whatever the
    reader's state, and leave it synced()."""
    if type(text) is not str:   # Truncated, NulLine
        return None
    m = HOT_MATCH(text)
    if m is None or text[0] == "[":  # "[": a dmesg prefix may hide in the comm
        return None
    groups = m.groups()
    # markers need the general path (a symbol after the name marks one too)
    if groups[7] is not None or groups[6] in MARKER_NAMES:
        return None
    ok = TASK_OK.get(groups[0])
    if ok is None:
        ok = task_ok(groups[0])
    return groups if ok else None


def task_ok(task: str) -> bool:
    """fastpath.hot_ok, and no trace-cmd input prefix; remembered in TASK_OK."""
    if len(TASK_OK) >= 4096:
        TASK_OK.clear()
    ok = TASK_OK[task] = (task[-1] not in " \t" and ".dat: " not in task
                          and ("-" not in task or _EARLY(task) is None))
    return ok


def hot_event(groups: tuple, text: str, line_no: int, known: KnownEvents) -> Event:
    """The Event of a line hot_match() accepted. Raises DecodeError (payload does not fit
    its typed event) or ValueError (a number too long for int())."""
    task, pid, tgid, cpu, flags, ts, event_name, _, payload = groups
    if payload is None:
        payload = ""
    if event_name in known.special_names or payload[:1] == "(":
        fields, probe, system = named_fields(event_name, payload, None, known)
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


def hot_line(groups: tuple, text: str, line_no: int, state: ReaderState,
             known: KnownEvents) -> Line:
    """The Line of a plain record; the state becomes synced()."""
    try:
        line = _NEW(Line, (line_no, EVENT, text, None, (hot_event(groups, text, line_no, known),),
                           None, None, None))
        state.evidence = True
    except DecodeError as exc:
        line = Line(line_no, UNPARSED, text, str(exc))
    except ValueError:  # int() refuses numbers of thousands of digits
        line = Line(line_no, UNPARSED, text, R_NUMBER)
    state.nocontext = state.armed = state.owner_marker = False
    state.owner = None
    return line
