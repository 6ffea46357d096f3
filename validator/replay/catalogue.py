"""The probe catalogue (validator/data/probes.toml) as the replay reads it: which trace
events poisoncheck reads and which protocol event each one is.

`load_catalogue()` reads and checks the file (every error names the file and the event);
`Catalogue` looks events up by (system, name) or by bare name (the `trace` file does not print
the system).  The rules about making the probes (symbols, fetch-arg syntax, filters) are
checked by validator/recording/kprobes.py, which loads the catalogue through this module.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from validator.replay.probe_spec import RET_CONVENTIONS, FetchArg, ProbeSpec, as_int

# The protocol events the replay engine consumes (docs/protocol.md §6), in catalogue order.
PROTOCOL_EVENTS = (
    "alloc", "guest_get_pfn", "aug", "remove", "vm_bugged", "convert", "host_fault",
    "punch_hole", "error_folio", "gmem_free", "hugetlb_free", "set_hwpoison", "buggy_cleanup",
    "tdx_shutdown", "hkid_release", "reclaim", "hugetlb_alloc", "gmem_inode", "gmem_create",
    "cache_add", "cache_delete", "page_alloc", "page_free", "memory_failure", "spte_changed",
    "set_spte", "page_fault", "host_unmap_range", "set_attributes",
)

FIELD_TYPES = ("int", "string")
KINDS = ("tracepoint", "kprobe", "kretprobe")
MAX_EVENT_NAME_LEN = 64  # MAX_EVENT_NAME_LEN, kernel/trace/trace_probe.h

_GOOD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # is_good_name() in trace_probe.h
_DERIVE = re.compile(r"\s*([A-Za-z_]\w*)\s*((?:[+-]\s*[A-Za-z_]\w*\s*)*)")
_DERIVE_TERM = re.compile(r"([+-])\s*([A-Za-z_]\w*)")

_COMMON_KEYS = {"protocol", "summary", "source", "kind", "fields"}
_TRACEPOINT_KEYS = _COMMON_KEYS | {"formats", "required"}
_PROBE_KEYS = _COMMON_KEYS | {"symbol", "aliases", "upstream", "args", "aux", "derive", "filter",
                              "unfetched", "values", "ret"}
_TOP_KEYS = {"group": str, "buffer_size_kb": int, "trace_clock": str}


class CatalogueError(ValueError):
    """The catalogue file is missing, not TOML, or breaks a rule; the message names the
    file and the event."""


@dataclass(frozen=True)
class Catalogue:
    """The file's events in file order; the settings are recording's, kept as given."""

    path: str
    group: str                   # the kprobe event group of every probe
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
        """The upstream tracepoints."""
        return [s for s in self.events if not s.is_probe]

    def probe_protocols(self) -> dict[str, str]:
        """Probe event name -> protocol event (the trace file may not print the group)."""
        return {s.name: s.protocol for s in self.events if s.is_probe}

    def tracepoint_protocols(self) -> dict[tuple[str, str], str]:
        """(system, name) -> protocol event, for the upstream tracepoints."""
        return {(s.system, s.name): s.protocol for s in self.events if not s.is_probe}


def default_path() -> Path:
    return Path(str(resources.files("validator") / "data" / "probes.toml"))


class LoaderRules:
    """Checks a consumer of the catalogue adds to the loader (validator/recording adds the
    rules of kprobe_events), called where the loader reads what they check, so that the
    first fault of a file is the one reported.  `fail(message)` raises CatalogueError
    naming the file and the event.  These add none."""

    def probe(self, table: dict, kind: str, fail) -> None:
        """A kprobe/kretprobe's table, before its args are read."""

    def arg(self, item: str, name: str, fetch: str, kind: str, fail) -> None:
        """One "NAME=FETCHARG" of a probe's args."""

    def probe_done(self, table: dict, arg_names: list[str], fail) -> None:
        """A probe's table, after every other check."""


NO_EXTRA_RULES = LoaderRules()


def load_catalogue(path: Path | str | None = None,
                   rules: LoaderRules = NO_EXTRA_RULES) -> Catalogue:
    """Read and check a catalogue (the packaged one by default), with `rules` added."""
    if path is None:
        return _default_catalogue(rules)
    return _load(Path(path), rules)


@lru_cache(maxsize=4)
def _default_catalogue(rules: LoaderRules) -> Catalogue:
    return _load(default_path(), rules)


CATALOGUE_MAX_BYTES = 1 << 20      # the packaged one is about 27 KB


def _load(path: Path, rules: LoaderRules) -> Catalogue:
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
    return _parse(data, str(path), rules)


def _parse(data: dict, path: str, rules: LoaderRules) -> Catalogue:
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
                events.append(_parse_event(key, name, table, rules, lambda m, s=key, n=name:
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


def _parse_event(system: str, name: str, t: dict, rules: LoaderRules, fail) -> ProbeSpec:
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

    # --- kprobe / kretprobe (symbol, upstream, the fetch-args' syntax and the filter are
    # about making the probe: `rules` checks them, see recording/kprobes.py)
    rules.probe(t, kind, fail)
    raw_args = t.get("args")
    if not isinstance(raw_args, list):
        fail("args must be a list of \"NAME=FETCHARG\" strings (args = [] for none)")
    args = []
    for item in raw_args:
        if not isinstance(item, str) or "=" not in item:
            fail(f"args: {item!r} is not NAME=FETCHARG")
        aname, fetch = item.split("=", 1)
        rules.arg(item, aname, fetch, kind, fail)
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
            parsed = as_int(number)
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

    rules.probe_done(t, arg_names, fail)
    return ProbeSpec(system=system, name=name, protocol=protocol, kind=kind, fields=fields_t,
                     summary=t.get("summary", ""), source=t.get("source", ""),
                     symbol=t.get("symbol"), aliases=tuple(t.get("aliases", ())),
                     upstream=t.get("upstream"), args=tuple(args),
                     aux=tuple(aux), derive=derive, filter=t.get("filter"),
                     unfetched=dict(unfetched), values=values, ret=ret)


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
