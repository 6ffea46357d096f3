"""Payload decoders: raw text values to ints, key=value and probe payloads, and typed
decoders for tracepoints whose TP_printk format the caller names (known.KnownEvents).

A typed decoder is compiled from the kernel's own TP_printk format string, so a new
tracepoint is one more format, given as data."""

import re
from collections.abc import Iterator, Mapping
from typing import NamedTuple

from .fastpath import KV_ARGS_RE, PROBE_RE, parse_kv_args
from .model import Probe

# ---------------------------------------------------------------------------- values
_INT_RE = re.compile(r"-?(?:0x[0-9a-fA-F]+|[0-9]+)")
# `fields` option: "0x151a (5402)"; sched_stat_*: "7778999 [ns]"; softirq: "9 [action=RCU]"
_INT_NOTE_RE = re.compile(r"(?P<num>-?(?:0x[0-9a-fA-F]+|[0-9]+))(?: \((?P<dec>-?[0-9]+)\)| \[[^\]]*\])")


_MAX_DIGITS = 4000  # int() refuses longer decimal strings (sys.int_info.str_digits_check_threshold)


def to_int(text: str) -> int | None:
    """"42", "-133", "0x1f" -> int; anything else -> None."""
    if len(text) <= _MAX_DIGITS and _INT_RE.fullmatch(text):
        return int(text, 16) if "x" in text else int(text)
    return None


def convert(raw: str) -> int | str:
    """A printed value as an int where it is a number, else the string (quotes removed)."""
    value = raw.rstrip()
    number = to_int(value)
    if number is not None:
        return number
    m = _INT_NOTE_RE.fullmatch(value)
    if m is not None and len(value) <= _MAX_DIGITS:
        return int(m["dec"]) if m["dec"] is not None else to_int(m["num"])
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


CONVERT_CACHE: dict[str, int | str] = {}
CONVERT_CACHE_MAX = 1 << 16


def convert_cached(raw: str) -> int | str:
    """convert(), remembered: traces print the same values (pfns, return codes) again and
    again. The memory is bounded: it starts over when full."""
    value = CONVERT_CACHE.get(raw)
    if value is None:
        if len(CONVERT_CACHE) >= CONVERT_CACHE_MAX:
            CONVERT_CACHE.clear()
        value = CONVERT_CACHE[raw] = convert(raw)
    return value


def decode_simple_kv(args: str) -> dict[str, int | str]:
    """decode_kv() for arguments _SIMPLE_ARGS accepts ("k=v k=v", values without spaces,
    quotes or "="), where splitting at spaces is what the grammar does."""
    conv = convert_cached
    return {key: conv(value) for key, _, value in (pair.partition("=") for pair in args.split(" "))}


def decode_kv(payload: str) -> dict[str, int | str]:
    """Best effort, never raises: "a=1 b=x y" -> {"a": 1, "b": "x y"}; {} if not key=value."""
    parsed = parse_kv_args(payload.rstrip())
    if parsed is None:
        return {}
    return {key: convert(value) for key, value in parsed[1]}


class _Lazy(Mapping):
    """Fields decoded on first access: most events are counted, never looked into."""

    __slots__ = ("_fields",)

    def _decoded(self) -> dict:
        if self._fields is None:
            self._fields = self._decode()
        return self._fields

    def __getitem__(self, key):
        return self._decoded()[key]

    def __iter__(self) -> Iterator:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def __repr__(self) -> str:
        return repr(self._decoded())


class LazyFields(_Lazy):
    """key=value fields of a payload (decode_kv)."""

    __slots__ = ("_payload",)

    def __init__(self, payload: str):
        self._payload = payload
        self._fields = None

    def _decode(self) -> dict:
        return decode_kv(self._payload)


class SimpleFields(LazyFields):
    """key=value fields of probe arguments _SIMPLE_ARGS accepts (decode_simple_kv)."""

    __slots__ = ()

    def _decode(self) -> dict:
        return decode_simple_kv(self._payload)


class TypedFields(_Lazy):
    """Fields of a payload that matched a tracepoint format: converted on first access."""

    __slots__ = ("_format", "_match")

    def __init__(self, fmt: "Format", match: re.Match):
        self._format = fmt
        self._match = match
        self._fields = None

    def _decode(self) -> dict:
        fmt = self._format
        values = self._match.groups()
        return {name: conv(value) for name, conv, value in zip(fmt.names, fmt.converters, values)}


# ---------------------------------------------------------------------------- probes
# Plain "k=v k=v" (no spaces, quotes or "=" in values): a subset of what the grammar accepts,
# checked first because KV_ARGS_RE is slow.
_SIMPLE_ARGS = re.compile(r"[A-Za-z_][\w.]*=[^ \"=]*(?: [A-Za-z_][\w.]*=[^ \"=]*)*")
# "func+0x4/0x350", and " [kvm]" after it for a module's function (kernel/trace/trace_kprobe.c
# prints the site with %pS)
_KPROBE_SITE = re.compile(r"[\w.$]+\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[[\w.-]+\])?")
_ADDR_SITE = re.compile(r"(?:0x)?[0-9a-f]+")


def decode_probe(payload: str) -> tuple[Probe, Mapping] | None:
    """"(sym+0x0/0x80) a=0x1" / "(caller+0x1e/0x20 <- sym) ret=-133" -> (Probe, fields).
    Accepts what fastpath.parse_probe_args accepts; the arguments are converted lazily."""
    if not payload.startswith("("):
        return None
    m = PROBE_RE.match(payload.rstrip())
    if m is None:
        return None
    args = m["args"]
    simple = True
    if args:
        simple = _SIMPLE_ARGS.fullmatch(args) is not None
        if not simple and KV_ARGS_RE.match(args) is None:
            return None
    where = (m["site"], m["func"])
    probe = _PROBES.get(where)
    if probe is None:
        if len(_PROBES) >= _PROBES_MAX:
            _PROBES.clear()
        probe = _PROBES[where] = _probe(*where)
    if probe is False:
        return None
    return probe, (SimpleFields(args) if simple and args else LazyFields(args or ""))


# Probe of (site, func) as PROBE_RE printed them; False: not a probe site. A trace has few.
_PROBES: dict[tuple, Probe | bool] = {}
_PROBES_MAX = 4096


def _probe(site: str, func: str | None) -> Probe | bool:
    site = site.strip()
    if _KPROBE_SITE.fullmatch(site):
        user = False
    elif _ADDR_SITE.fullmatch(site):
        user = True
    else:
        return False
    if func is not None:
        return Probe("uretprobe" if user else "kretprobe", func.split("<-", 1)[1].strip(), site)
    return Probe("uprobe" if user else "kprobe", site if user else site.split("+", 1)[0], site)


# ---------------------------------------------------------------------------- tracepoints
# printf conversion -> (regex, converter). Hex without "0x" must be read as hex: the kvmmmu
# formats print gfn and SPTEs with %llx, and old kvm_page_fault printed "address %lx".
# A decimal too long for int() stays text: the replay refuses it as a field, with its line.
_CONVERSIONS = (
    (r"%#0?\d*l{0,2}x", r"(0x[0-9a-f]+|0+)", lambda s: int(s, 16)),  # glibc prints 0 bare
    (r"%0?\d*l{0,2}x", r"([0-9a-f]+)", lambda s: int(s, 16)),
    (r"%0?\d*l{0,2}[du]", r"(-?[0-9]+)", lambda s: int(s) if len(s) <= _MAX_DIGITS else s),
    (r"%p", r"(\S+)", str),
    (r"%s", r"(.*?)", str),
)
_CONVERSION_RE = re.compile("|".join(f"({c[0]})" for c in _CONVERSIONS))


class Format(NamedTuple):
    regex: re.Pattern
    converters: tuple
    names: tuple[str, ...]


def compile_format(fmt: str, names: tuple[str, ...]) -> Format:
    """TP_printk format + field names -> a full-match regex with typed converters."""
    parts = []
    converters = []
    pos = 0
    for m in _CONVERSION_RE.finditer(fmt):
        parts.append(re.escape(fmt[pos:m.start()]))
        _, regex, conv = _CONVERSIONS[m.lastindex - 1]
        parts.append(regex)
        converters.append(conv)
        pos = m.end()
    parts.append(re.escape(fmt[pos:]))
    if len(converters) != len(names):
        raise ValueError(f"{fmt!r}: {len(converters)} conversions, {len(names)} names")
    pattern = "".join(parts)
    if pattern.endswith("(.*?)"):  # a trailing %s takes the rest of the line
        pattern = pattern[:-5] + "(.*)"
    return Format(re.compile(pattern), tuple(converters), names)


class Tracepoint(NamedTuple):
    system: str
    name: str
    formats: tuple[Format, ...]  # newest first
    required: tuple[str, ...]  # int fields a key=value rendering must have (trace-cmd -R, fields)


def decode_tracepoint(tp: Tracepoint, payload: str) -> Mapping[str, int | str] | None:
    """Typed fields, or None if the payload matches none of the event's known renderings."""
    text = payload.rstrip()
    for fmt in tp.formats:
        m = fmt.regex.fullmatch(text)
        if m is not None:
            return TypedFields(fmt, m)
    # key=value renderings: trace-cmd report -R, the `fields` trace option
    fields = decode_kv(text)
    if all(isinstance(fields.get(key), int) for key in tp.required):
        return fields
    return None

