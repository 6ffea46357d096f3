"""The probe catalogue (validator/data/probes.toml): which trace events poisoncheck reads,
how the kprobe events are made, and which protocol event each one is.

`load_catalogue()` reads and checks the file (every error names the file and the event);
`Catalogue` looks events up by (system, name) or by bare name (the `trace` file does not print
the system), gives the kprobe_events lines and the upstream events to enable;
`ProbeSpec.decode()` turns an event's printed fields into its protocol fields.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

# The protocol events the replay engine consumes (protocol.md §6), in catalogue order.
PROTOCOL_EVENTS = (
    "alloc", "guest_get_pfn", "aug", "remove", "vm_bugged", "convert", "host_fault",
    "punch_hole", "error_folio", "gmem_free", "hugetlb_free", "set_hwpoison", "buggy_cleanup",
    "tdx_shutdown", "hkid_release", "reclaim", "hugetlb_alloc",
    "cache_add", "cache_delete", "page_alloc", "page_free", "memory_failure", "spte_changed",
    "set_spte", "page_fault", "host_unmap_range", "set_attributes",
)

FIELD_TYPES = ("int", "string")
KINDS = ("tracepoint", "kprobe", "kretprobe")

# How a probe's `ret` reads; decode() maps each to 0 on success.
RET_CONVENTIONS = ("errno", "err_ptr", "vm_fault", "tdx_status")
MAX_ERRNO = 4095  # include/linux/err.h
VM_FAULT_ERROR = 0x873  # OOM|SIGBUS|SIGSEGV|HWPOISON|HWPOISON_LARGE|FALLBACK, include/linux/mm_types.h

# Field names the kernel reserves in every probe event (kernel/trace/trace_probe.c).
RESERVED_NAMES = frozenset({
    "common_type", "common_flags", "common_preempt_count", "common_pid", "common_tgid",
    "__probe_ip", "__probe_ret_ip", "__probe_func",
})
MAX_EVENT_NAME_LEN = 64  # MAX_EVENT_NAME_LEN, kernel/trace/trace_probe.h
MAX_ARG_NAME_LEN = 32  # MAX_ARG_NAME_LEN

_GOOD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # is_good_name() in trace_probe.h
_SYMBOL = re.compile(r"(?:[A-Za-z0-9_-]+:)?[A-Za-z_][A-Za-z0-9_.]*")  # [MOD:]SYM
_FILTER_NAME = re.compile(r"(?<![\w.])[A-Za-z_]\w*")
_DERIVE = re.compile(r"\s*([A-Za-z_]\w*)\s*((?:[+-]\s*[A-Za-z_]\w*\s*)*)")
_DERIVE_TERM = re.compile(r"([+-])\s*([A-Za-z_]\w*)")

_COMMON_KEYS = {"protocol", "summary", "source", "kind", "fields"}
_TRACEPOINT_KEYS = _COMMON_KEYS | {"formats", "required"}
_PROBE_KEYS = _COMMON_KEYS | {"symbol", "upstream", "args", "aux", "derive", "filter",
                              "unfetched", "values", "ret"}
_TOP_KEYS = {"group": str, "buffer_size_kb": int, "trace_clock": str}


class CatalogueError(ValueError):
    """The catalogue file is missing, not TOML, or breaks a rule; the message names the
    file and the event."""


@dataclass(frozen=True)
class FetchArg:
    name: str
    fetch: str  # the part after NAME=, kprobe_events syntax

    def __str__(self) -> str:
        return f"{self.name}={self.fetch}"


@dataclass(frozen=True)
class ProbeSpec:
    """One event of the catalogue: an upstream tracepoint or a poisoncheck kprobe event."""

    system: str
    name: str
    protocol: str
    kind: str  # "tracepoint" | "kprobe" | "kretprobe"
    fields: tuple[tuple[str, str], ...]  # (name, "int" | "string"), protocol fields in order
    summary: str = ""
    source: str = ""
    symbol: str | None = None
    upstream: bool = True
    args: tuple[FetchArg, ...] = ()
    aux: tuple[str, ...] = ()
    derive: Mapping[str, tuple[tuple[int, str], ...]] = field(default_factory=dict)  # field -> (sign, arg)
    filter: str | None = None
    unfetched: Mapping[str, str] = field(default_factory=dict)  # field -> why
    values: Mapping[str, Mapping[int, str]] = field(default_factory=dict)
    ret: str | None = None
    # tracepoints: TP_printk renderings, newest first: (format, field name per conversion)
    formats: tuple[tuple[str, tuple[str, ...]], ...] = ()
    required: tuple[str, ...] = ()      # int fields a key=value rendering must carry

    @property
    def qualname(self) -> str:
        return f"{self.system}:{self.name}"

    @property
    def is_probe(self) -> bool:
        return self.kind != "tracepoint"

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.fields)

    def field_type(self, name: str) -> str:
        return dict(self.fields)[name]

    @property
    def fetched(self) -> tuple[str, ...]:
        """Protocol fields printed by the event itself."""
        if not self.is_probe:
            return self.field_names
        names = {a.name for a in self.args}
        return tuple(f for f in self.field_names if f in names)

    def kprobe_line(self) -> str:
        """The line for kprobe_events: `p:GROUP/NAME SYMBOL ARGS` or `r:...`."""
        if not self.is_probe:
            raise ValueError(f"{self.qualname} is a tracepoint, not a probe")
        head = f"{'p' if self.kind == 'kprobe' else 'r'}:{self.system}/{self.name} {self.symbol}"
        return " ".join([head, *map(str, self.args)])

    def remove_line(self) -> str:
        return f"-:{self.system}/{self.name}"

    def enable_path(self) -> str:
        """Relative to the tracefs root."""
        return f"events/{self.system}/{self.name}/enable"

    def filter_path(self) -> str:
        return f"events/{self.system}/{self.name}/filter"

    def decode(self, raw: Mapping[str, int | str],
               with_aux: bool = False) -> dict[str, int | str | None]:
        """Printed fields (as the reader decodes them) -> protocol fields.

        Numbers given as text are parsed; `values` maps numbers to strings; `derive` adds and
        subtracts fetched values; `ret` is normalised so that 0 means success for every
        probe.  A field the event does not show (unfetched, or missing from `raw`) is None:
        unknown, never assumed.  with_aux adds the aux args too (e.g. `page`, the struct page
        pointer that links events which cannot print a pfn)."""
        out: dict[str, int | str | None] = {}
        for name, ftype in self.fields:
            if name in self.derive:
                terms = [(sign, _as_int(raw.get(arg))) for sign, arg in self.derive[name]]
                value = (None if any(v is None for _, v in terms)
                         else sum(sign * v for sign, v in terms))
            elif name in self.unfetched:
                value = None
            else:
                value = raw.get(name)
                if ftype == "int":
                    value = _as_int(value)
                elif name in self.values:
                    number = _as_int(value)
                    if number is not None:
                        value = self.values[name].get(number, str(number))
            out[name] = value
        if self.ret is not None and isinstance(out.get("ret"), int):
            out["ret"] = normalise_ret(self.ret, out["ret"])
        if with_aux:
            for name in self.aux:
                out[name] = _as_int(raw.get(name))
        return out


    @property
    def needs_normalising(self) -> bool:
        """Whether normalise() can change a field: something is derived, mapped to a
        string, or `ret` reads other than as 0 / -errno."""
        return bool(self.derive or self.values or self.ret not in (None, "errno"))

    def normalise(self, raw: Mapping[str, int | str]) -> dict[str, int | str]:
        """The printed fields as the replay reads them: `raw` (every field, aux included)
        plus the derived fields the line does not print itself, strings for `values`,
        and `ret` as 0 for success.  Lines that already print a protocol field (older
        captures print `pfn=` and `end=`) keep it."""
        out = dict(raw)
        for name, terms in self.derive.items():
            if name not in out:
                numbers = [(sign, _as_int(raw.get(arg))) for sign, arg in terms]
                if all(v is not None for _, v in numbers):
                    out[name] = sum(sign * v for sign, v in numbers)
        for name, table in self.values.items():
            value = out.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                out[name] = table.get(value, str(value))
        if self.ret is not None and isinstance(out.get("ret"), int):
            out["ret"] = normalise_ret(self.ret, out["ret"])
        return out


def _as_int(value) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip(), 0)
        except ValueError:
            return None
    return None


def normalise_ret(convention: str, value: int) -> int:
    """0 for success, else the error: -errno, the vm_fault_t error bits, the TDX status."""
    if convention == "errno":
        return value
    if convention == "err_ptr":
        if value >= 1 << 63:  # printed unsigned
            value -= 1 << 64
        return value if -MAX_ERRNO <= value < 0 else 0
    if convention == "vm_fault":
        return value & VM_FAULT_ERROR
    if convention == "tdx_status":
        return value
    raise ValueError(f"unknown ret convention {convention!r}")


@dataclass(frozen=True)
class Catalogue:
    path: str
    group: str
    buffer_size_kb: int
    trace_clock: str | None
    events: tuple[ProbeSpec, ...]

    def __iter__(self) -> Iterator[ProbeSpec]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def __getitem__(self, key: tuple[str, str]) -> ProbeSpec:
        system, name = key
        for spec in self.events:
            if spec.system == system and spec.name == name:
                return spec
        raise KeyError(f"{system}:{name}")

    def get(self, system: str | None, name: str) -> ProbeSpec | None:
        """By (system, name); system None matches by bare name (names are unique)."""
        for spec in self.events:
            if spec.name == name and (system is None or spec.system == system):
                return spec
        return None

    def by_protocol(self, protocol: str) -> ProbeSpec:
        for spec in self.events:
            if spec.protocol == protocol:
                return spec
        raise KeyError(protocol)

    def probes(self, only_upstream: bool = False) -> list[ProbeSpec]:
        return [s for s in self.events if s.is_probe and (s.upstream or not only_upstream)]

    def tracepoints(self) -> list[ProbeSpec]:
        """The upstream events to enable."""
        return [s for s in self.events if not s.is_probe]

    def kprobe_lines(self, only_upstream: bool = False) -> list[str]:
        return [s.kprobe_line() for s in self.probes(only_upstream)]

    def upstream_events(self) -> list[tuple[str, str]]:
        return [(s.system, s.name) for s in self.tracepoints()]

    def probe_protocols(self) -> dict[str, str]:
        """Probe event name -> protocol event (the trace file may not print the group)."""
        return {s.name: s.protocol for s in self.events if s.is_probe}

    def tracepoint_protocols(self) -> dict[tuple[str, str], str]:
        """(system, name) -> protocol event, for the upstream tracepoints."""
        return {(s.system, s.name): s.protocol for s in self.events if not s.is_probe}


def default_path() -> Path:
    return Path(str(resources.files("validator") / "data" / "probes.toml"))


def load_catalogue(path: Path | str | None = None) -> Catalogue:
    """Read and check a catalogue (the packaged one by default)."""
    if path is None:
        return _default_catalogue()
    return _load(Path(path))


@lru_cache(maxsize=1)
def _default_catalogue() -> Catalogue:
    return _load(default_path())


CATALOGUE_MAX_BYTES = 1 << 20      # the packaged one is about 27 KB


def _load(path: Path) -> Catalogue:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(CATALOGUE_MAX_BYTES + 1)     # /dev/zero must not fill memory
        if len(raw) > CATALOGUE_MAX_BYTES:
            raise CatalogueError(f"{path}: larger than {CATALOGUE_MAX_BYTES >> 10} KiB: "
                                 f"not a probe catalogue")
        data = tomllib.loads(raw.decode("utf-8"))
    except OSError as err:
        raise CatalogueError(f"{path}: cannot read: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise CatalogueError(f"{path}: not UTF-8 text: {err.reason} at byte {err.start}") from None
    except tomllib.TOMLDecodeError as err:
        raise CatalogueError(f"{path}: not valid TOML: {err}") from None
    return _parse(data, str(path))


def _parse(data: dict, path: str) -> Catalogue:
    def fail(msg: str):
        raise CatalogueError(f"{path}: {msg}")

    settings = {}
    events: list[ProbeSpec] = []
    for key, value in data.items():
        if key in _TOP_KEYS:
            expected = _TOP_KEYS[key]
            if not isinstance(value, expected) or isinstance(value, bool):
                fail(f"{key} must be {'a string' if expected is str else 'an integer'}")
            settings[key] = value
        elif isinstance(value, dict):
            if not _GOOD_NAME.fullmatch(key):
                fail(f"[{key}]: not a valid event system name")
            for name, table in value.items():
                if not isinstance(table, dict):
                    fail(f"[{key}]: {name} = ... is not an event table ([{key}.{name}])")
                events.append(_parse_event(key, name, table, lambda m, s=key, n=name:
                                           fail(f"[{s}.{n}]: {m}")))
        else:
            fail(f"unknown top-level key {key!r} (expected {', '.join(_TOP_KEYS)} or event tables)")

    group = settings.get("group")
    if not group:
        fail("group is missing (the kprobe event group, e.g. group = \"poisoncheck\")")
    if not _GOOD_NAME.fullmatch(group):
        fail(f"group {group!r} is not a valid event group name")
    buffer_kb = settings.get("buffer_size_kb", 16384)
    if buffer_kb <= 0:
        fail("buffer_size_kb must be positive")

    seen_protocol: dict[str, str] = {}
    seen_name: dict[str, str] = {}
    for spec in events:
        where = f"[{spec.system}.{spec.name}]"
        if spec.is_probe and spec.system != group:
            fail(f"{where}: a {spec.kind} must be in the group [{group}.*]")
        if not spec.is_probe and spec.system == group:
            fail(f"{where}: a tracepoint cannot be in the probe group {group}")
        if spec.protocol in seen_protocol:
            fail(f"{where}: protocol event {spec.protocol!r} is already mapped by "
                 f"[{seen_protocol[spec.protocol]}]")
        seen_protocol[spec.protocol] = f"{spec.system}.{spec.name}"
        if spec.name in seen_name:
            fail(f"{where}: event name {spec.name!r} is also [{seen_name[spec.name]}]; "
                 "names must be unique because the trace file does not print the system")
        seen_name[spec.name] = f"{spec.system}.{spec.name}"
    if not events:
        fail("no events")
    return Catalogue(path=path, group=group, buffer_size_kb=buffer_kb,
                     trace_clock=settings.get("trace_clock"), events=tuple(events))


def _parse_event(system: str, name: str, t: dict, fail) -> ProbeSpec:
    if not _GOOD_NAME.fullmatch(name) or len(name) > MAX_EVENT_NAME_LEN:
        fail("not a valid event name (letters, digits, _; at most 64)")
    kind = t.get("kind")
    if kind not in KINDS:
        fail(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    allowed = _PROBE_KEYS if kind != "tracepoint" else _TRACEPOINT_KEYS
    unknown = sorted(set(t) - allowed)
    if unknown:
        extra = " (only kprobe/kretprobe events have these)" if set(unknown) & _PROBE_KEYS else ""
        fail(f"unknown key(s) {', '.join(unknown)}{extra}")

    protocol = t.get("protocol")
    if protocol not in PROTOCOL_EVENTS:
        fail(f"protocol {protocol!r} is not a protocol event ({', '.join(PROTOCOL_EVENTS)})")
    for key in ("summary", "source"):
        if not isinstance(t.get(key, ""), str):
            fail(f"{key} must be a string")

    raw_fields = t.get("fields")
    if not isinstance(raw_fields, dict):
        fail("fields must be a table of name = \"int\" | \"string\" (fields = {} for none)")
    fields = []
    for fname, ftype in raw_fields.items():
        if not _GOOD_NAME.fullmatch(fname):
            fail(f"field {fname!r}: not a valid field name")
        if ftype not in FIELD_TYPES:
            fail(f"field {fname}: type must be \"int\" or \"string\", not {ftype!r}")
        fields.append((fname, ftype))
    fields_t = tuple(fields)
    if kind == "tracepoint":
        formats, required = _parse_formats(t, [f for f, _ in fields], fail)
        return ProbeSpec(system=system, name=name, protocol=protocol, kind=kind, fields=fields_t,
                         summary=t.get("summary", ""), source=t.get("source", ""),
                         formats=formats, required=required)

    # --- kprobe / kretprobe
    symbol = t.get("symbol")
    if not isinstance(symbol, str) or not _SYMBOL.fullmatch(symbol):
        fail(f"symbol must be a kernel function name ([MODULE:]SYMBOL), not {symbol!r}")
    upstream = t.get("upstream")
    if not isinstance(upstream, bool):
        fail("upstream must be true or false (false: the function exists only with a design's patch)")

    raw_args = t.get("args")
    if not isinstance(raw_args, list):
        fail("args must be a list of \"NAME=FETCHARG\" strings (args = [] for none)")
    args = []
    for item in raw_args:
        if not isinstance(item, str) or "=" not in item:
            fail(f"args: {item!r} is not NAME=FETCHARG")
        aname, fetch = item.split("=", 1)
        if not _GOOD_NAME.fullmatch(aname) or len(aname) > MAX_ARG_NAME_LEN:
            fail(f"args: {aname!r} is not a valid argument name")
        if aname in RESERVED_NAMES:
            fail(f"args: {aname!r} is reserved by the kernel")
        if not fetch or any(c.isspace() for c in fetch):
            fail(f"args: {item!r}: the fetch-arg is empty or has spaces")
        if "$retval" in fetch and kind != "kretprobe":
            fail(f"args: {item!r}: $retval exists only in a kretprobe")
        if any(a.name == aname for a in args):
            fail(f"args: {aname!r} twice")
        args.append(FetchArg(aname, fetch))
    arg_names = [a.name for a in args]
    field_names = [f for f, _ in fields]

    aux = t.get("aux", [])
    if not isinstance(aux, list) or not all(isinstance(a, str) for a in aux):
        fail("aux must be a list of argument names")
    for a in aux:
        if a not in arg_names:
            fail(f"aux: {a!r} is not one of args")
        if a in field_names:
            fail(f"aux: {a!r} is a protocol field; aux lists only the other args")
    for a in arg_names:
        if a not in field_names and a not in aux:
            fail(f"args: {a!r} is neither a field nor listed in aux")

    derive = {}
    raw_derive = t.get("derive", {})
    if not isinstance(raw_derive, dict):
        fail("derive must be a table: field = \"arg + arg - arg\"")
    for fname, expr in raw_derive.items():
        if fname not in field_names:
            fail(f"derive: {fname!r} is not a field")
        if fname in arg_names:
            fail(f"derive: {fname!r} is also fetched by args")
        m = _DERIVE.fullmatch(expr) if isinstance(expr, str) else None
        if m is None:
            fail(f"derive: {fname} = {expr!r}: only sums and differences of args")
        terms = [(1, m.group(1))] + [(1 if s == "+" else -1, n)
                                     for s, n in _DERIVE_TERM.findall(m.group(2))]
        for _, arg in terms:
            if arg not in arg_names:
                fail(f"derive: {fname} uses {arg!r}, which is not one of args")
        derive[fname] = tuple(terms)

    unfetched = t.get("unfetched", {})
    if not isinstance(unfetched, dict):
        fail("unfetched must be a table: field = \"why it cannot be fetched\"")
    for fname, why in unfetched.items():
        if fname not in field_names:
            fail(f"unfetched: {fname!r} is not a field")
        if not isinstance(why, str) or not why.strip():
            fail(f"unfetched: {fname}: say why it cannot be fetched")
        if fname in arg_names or fname in derive:
            fail(f"unfetched: {fname!r} is fetched or derived after all")
    for fname in field_names:
        if fname not in arg_names and fname not in derive and fname not in unfetched:
            fail(f"field {fname!r} is neither fetched (args), derived (derive) nor explained "
                 "(unfetched)")

    values = {}
    raw_values = t.get("values", {})
    if not isinstance(raw_values, dict):
        fail("values must be a table: field = { NUMBER = \"string\", ... }")
    for fname, mapping in raw_values.items():
        if fname not in field_names or dict(fields)[fname] != "string":
            fail(f"values: {fname!r} is not a string field")
        if not isinstance(mapping, dict) or not mapping:
            fail(f"values: {fname} must map numbers to strings")
        table = {}
        for number, text in mapping.items():
            parsed = _as_int(number)
            if parsed is None or not isinstance(text, str):
                fail(f"values: {fname}: {number!r} = {text!r} is not NUMBER = \"string\"")
            table[parsed] = text
        values[fname] = table
    for fname, ftype in fields:
        fetch = next((a.fetch for a in args if a.name == fname), None)
        if (ftype == "string" and fetch is not None and fname not in values
                and not re.search(r":(?:u?string|symstr)$", fetch)):
            fail(f"field {fname} is a string but is fetched as a number: give values.{fname}")

    ret = t.get("ret")
    if ret is not None:
        if ret not in RET_CONVENTIONS:
            fail(f"ret must be one of {', '.join(RET_CONVENTIONS)}, not {ret!r}")
        if "ret" not in arg_names:
            fail("ret names how `ret` reads, but no arg fetches ret")
    elif "ret" in arg_names:
        fail(f"ret = ... is missing: say how `ret` reads ({', '.join(RET_CONVENTIONS)})")

    flt = t.get("filter")
    if flt is not None:
        if not isinstance(flt, str) or not flt.strip() or "\n" in flt:
            fail("filter must be a one-line string")
        for word in _FILTER_NAME.findall(flt):
            if word not in arg_names:
                fail(f"filter uses {word!r}, which is not one of args")

    return ProbeSpec(system=system, name=name, protocol=protocol, kind=kind, fields=fields_t,
                     summary=t.get("summary", ""), source=t.get("source", ""), symbol=symbol,
                     upstream=upstream, args=tuple(args), aux=tuple(aux), derive=derive,
                     filter=flt, unfetched=dict(unfetched), values=values, ret=ret)


_CONVERSION = re.compile(r"%[#0-9l]*[xdup]|%s")


def _parse_formats(t: dict, field_names: list[str], fail):
    """A tracepoint's `formats` and `required` (see the catalogue's header)."""
    raw = t.get("formats")
    if not isinstance(raw, list) or not raw:
        fail("formats must list the TP_printk renderings: [{ printk = \"...\", names = [...] }]")
    formats = []
    for item in raw:
        if not isinstance(item, dict) or set(item) != {"printk", "names"}:
            fail("each format is { printk = \"...\", names = [...] }")
        printk, names = item["printk"], item["names"]
        if not isinstance(printk, str) or not isinstance(names, list):
            fail("formats: printk is a string, names a list")
        if len(_CONVERSION.findall(printk)) != len(names):
            fail(f"formats: {printk!r} has {len(_CONVERSION.findall(printk))} conversions "
                 f"but {len(names)} names")
        unknown = [n for n in names if n not in field_names]
        if unknown:
            fail(f"formats: {', '.join(unknown)} not among fields")
        formats.append((printk, tuple(names)))
    if list(formats[0][1]) != field_names:
        fail("the newest format (the first) must name every field, in order")
    required = t.get("required", [])
    if not isinstance(required, list) or any(r not in field_names for r in required):
        fail("required must list fields")
    return tuple(formats), tuple(required)
