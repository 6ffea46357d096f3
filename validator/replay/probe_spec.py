"""One event of the probe catalogue as the replay reads it (ProbeSpec), and how its
printed fields become the protocol's: derive, values, and the ret conventions.

What the catalogue says about making the event (symbol, fetch-args, filter, upstream) is
kept as given; validator/recording/ reads it to set up tracefs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# How a probe's `ret` reads; decode() maps each to 0 on success.
RET_CONVENTIONS = ("errno", "err_ptr", "vm_fault", "tdx_status")
MAX_ERRNO = 4095  # include/linux/err.h
VM_FAULT_ERROR = 0x873  # OOM|SIGBUS|SIGSEGV|HWPOISON|HWPOISON_LARGE|FALLBACK, include/linux/mm_types.h


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
    # how the probe is made (recording/kprobes.py checks and uses these)
    symbol: str | None = None
    aliases: tuple[str, ...] = ()       # the function's names in other kernels (renamed)
    upstream: bool = True               # false: the function exists only with a design's patch
    args: tuple[FetchArg, ...] = ()
    aux: tuple[str, ...] = ()
    derive: Mapping[str, tuple[tuple[int, str], ...]] = field(default_factory=dict)  # field -> (sign, arg)
    filter: str | None = None           # the probe's tracefs filter
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
    def symbols(self) -> tuple[str, ...]:
        """The probed function's names, the catalogue's first, then its other names."""
        return ((self.symbol,) if self.symbol else ()) + self.aliases

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
                terms = [(sign, as_int(raw.get(arg))) for sign, arg in self.derive[name]]
                value = (None if any(v is None for _, v in terms)
                         else sum(sign * v for sign, v in terms))
            elif name in self.unfetched:
                value = None
            else:
                value = raw.get(name)
                if ftype == "int":
                    value = as_int(value)
                elif name in self.values:
                    number = as_int(value)
                    if number is not None:
                        value = self.values[name].get(number, str(number))
            out[name] = value
        if self.ret is not None and isinstance(out.get("ret"), int):
            out["ret"] = normalise_ret(self.ret, out["ret"])
        if with_aux:
            for name in self.aux:
                out[name] = as_int(raw.get(name))
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
                numbers = [(sign, as_int(raw.get(arg))) for sign, arg in terms]
                if all(v is not None for _, v in numbers):
                    out[name] = sum(sign * v for sign, v in numbers)
        for name, table in self.values.items():
            value = out.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                out[name] = table.get(value, str(value))
        if self.ret is not None and isinstance(out.get("ret"), int):
            out["ret"] = normalise_ret(self.ret, out["ret"])
        return out

    def plan_reader(self, keep: Mapping[str, str]):
        """normalise() as the replay's fast reader needs it: (keys, finish).  `keys` are the
        printed fields that can reach a field of `keep`; finish(raw), given those of them a
        line prints (converted), gives normalise()'s fields of `keep` only, each keyed by
        keep[key] (one string object per key).  No copy of every pair is made."""
        derive = tuple((keep[name], terms) for name, terms in self.derive.items()
                       if name in keep)
        values = tuple((keep[name], table) for name, table in self.values.items()
                       if name in keep)
        keys = sorted(set(keep) | {arg for _, terms in derive for _, arg in terms})
        ret = self.ret if self.ret != "errno" and "ret" in keep else None   # errno: as printed

        def finish(raw: dict) -> dict:
            out = {keep[key]: value for key, value in raw.items() if key in keep}
            for name, terms in derive:
                if name not in raw:
                    total = 0
                    for sign, arg in terms:
                        value = raw.get(arg)
                        if type(value) is not int:      # as_int(), for what is not an int
                            value = as_int(value)
                            if value is None:
                                break
                        total += sign * value
                    else:
                        out[name] = total
            for name, table in values:
                value = out.get(name)
                if isinstance(value, int) and not isinstance(value, bool):
                    out[name] = table.get(value, str(value))
            if ret is not None and isinstance(out.get("ret"), int):
                out["ret"] = normalise_ret(ret, out["ret"])
            return out

        return keys, finish


def as_int(value) -> int | None:
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
