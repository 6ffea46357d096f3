"""Parsed (strings, as printed) -> typed records: Event, LostMarker, Header.

Shared by both parsers, so that they only have to agree on Parsed."""

from types import MappingProxyType

from .decoders import LazyFields, convert, decode_probe, decode_tracepoint
from .known import KnownEvents
from .model import Event, Header, LostMarker
from .parsed import Parsed

_NS = 1_000_000_000
_EMPTY = MappingProxyType({})


class DecodeError(ValueError):
    """A record whose context parsed but whose payload does not fit its event's format."""


def timestamp(form: str, ts: str | None) -> tuple[int | None, str | None]:
    """-> (value, unit). unit: "ns" (seconds display, exact), "count" (raw clock counter),
    "rel_ns"/"rel_count" (latency format: since the start of the trace)."""
    if ts is None:
        return None, None
    if form == "verbose":  # "[22dc5c0c]": absolute microseconds in hex
        return int(ts, 16) * 1000, "ns"
    if form == "raw_hex":
        return int(ts, 16), "count"
    if form == "latency":
        if ts.endswith(("us", "!", "+", "#", "*", "@", "$")):  # "19758us!" (mark = delay class)
            return int(ts.rstrip("!+#*@$")[:-2]) * 1000, "rel_ns"
        if "." not in ts:
            return int(ts), "rel_count"
    sec, dot, frac = ts.partition(".")
    if not dot:
        return int(sec), "count"
    return int(sec) * _NS + int(frac[:9].ljust(9, "0")), "ns"


def _pid_tgid(parsed: Parsed) -> tuple[int | None, int | None]:
    pid = parsed.pid
    if pid is None:
        return None, None
    if "/" in pid:  # perf -F pid,tid prints "pid/tid"
        tgid, tid = pid.split("/", 1)
        return int(tid), int(tgid)
    tgid = parsed.tgid
    base = 16 if parsed.form == "raw_hex" else 10
    return int(pid, base), (int(tgid) if tgid is not None and tgid[0] != "-" else None)


def _syscall(prefix: str, name: str) -> str:
    # the text prints "sys_write"; the tracefs events are sys_enter_write / sys_exit_write
    return f"sys_{prefix}_{name[4:]}" if name.startswith("sys_") else f"{name}_{prefix}"


def _sys_enter_fields(args: str) -> dict:
    fields = {}
    for item in args.split(", "):
        key, sep, value = item.partition(": ")
        if sep:
            fields[key] = convert(value)
    return fields


def build_event(parsed: Parsed, line_no: int, raw: str, known: KnownEvents) -> Event:
    """A record or bare body -> Event. Raises DecodeError when the payload of a typed event
    (a known tracepoint or a probe of the known group) does not fit."""
    body = parsed.body
    name = parsed.name
    payload = parsed.payload if parsed.payload is not None else ""
    system = parsed.system
    probe = None
    if body == "named":
        fields, probe, system = named_fields(name, payload, system, known)
    elif body == "sys_exit":
        name = _syscall("exit", name)
        fields = {"ret": convert(payload)}
        system = system or "syscalls"
    elif body == "sys_enter":
        name = _syscall("enter", name)
        fields = _sys_enter_fields(payload)
        system = system or "syscalls"
    elif body == "function":
        fields = {"func": name + (parsed.sym or "")}
        if parsed.payload is not None:
            fields["parent"] = parsed.payload
        name, system = "function", "ftrace"
    elif body == "stack_head":
        name = "user_stack" if name.startswith("<user") else "kernel_stack"
        fields, system = _EMPTY, "ftrace"
    elif body == "raw_print":  # raw option: "# <ip> text" is the trace_marker print event
        name, system = "print", "ftrace"
        fields = {"ip": int(parsed.sym, 16), "buf": payload}
    else:  # raw_type, unknown_type: the kernel could not print this record as text
        name = f"type_{payload}"
        fields = {"type": int(payload)}
    ts, unit = timestamp(parsed.form, parsed.ts)
    pid, tgid = _pid_tgid(parsed)
    cpu = parsed.cpu
    if cpu is not None:
        cpu = int(cpu, 16) if parsed.form == "raw_hex" else int(cpu)
    return Event(line_no, raw, parsed.task, pid, tgid, cpu, parsed.flags, ts, unit, system,
                 name, payload, fields, probe, parsed.source)


def named_fields(name: str, payload: str, system: str | None, known: KnownEvents):
    """(fields, probe, system) of a "name: payload" event: typed when `known` names it."""
    tp = known.tracepoints.get(name)
    if tp is not None and (system is None or system == tp.system):
        fields = decode_tracepoint(tp, payload)
        if fields is None:
            raise DecodeError(f"{tp.system}:{name}: payload matches no known format of this event")
        return fields, None, tp.system
    if payload.startswith("("):
        decoded = decode_probe(payload)
        if decoded is not None:
            probe, fields = decoded
            if system is None and name in known.probe_names:
                system = known.probe_group
            return fields, probe, system
    if name in known.probe_names and system in (None, known.probe_group):
        raise DecodeError(f"{known.probe_group}:{name}: expected a probe payload '(site) key=value ...'")
    return LazyFields(payload), None, system


def build_lost(parsed: Parsed, line_no: int) -> LostMarker:
    cpu, count = parsed.numbers
    return LostMarker(line_no, parsed.form, int(cpu) if cpu is not None else None,
                      int(count) if count is not None else None)


def build_header(parsed: Parsed) -> Header:
    form = parsed.form
    if form == "tracer":
        return Header(form, {"tracer": parsed.payload})
    if form == "entries":
        in_buffer, written, cpus = (int(n) for n in parsed.numbers)
        return Header(form, {"in_buffer": in_buffer, "written": written, "cpus": cpus})
    if form == "cpus":
        return Header(form, {"cpus": int(parsed.numbers[0])})
    return Header(form, _EMPTY)
