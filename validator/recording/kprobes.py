"""Making the probe catalogue's events in tracefs: the kprobe_events lines, the event paths
to enable and filter, and the rules a probe must follow for the kernel to accept it.

The catalogue itself (what each event means) is the replay's (validator/replay/catalogue.py);
`load_catalogue()` here reads it with the probe-making rules added (ProbeMakingRules; each
message names the file and the event).
"""

from __future__ import annotations

import re
from pathlib import Path

from validator.replay.catalogue import (Catalogue, CatalogueError, LoaderRules, default_path,
                                        load_catalogue as load_replay_catalogue)
from validator.replay.probe_spec import ProbeSpec

__all__ = ["CatalogueError", "PROBE_MAKING_RULES", "default_path", "enable_path", "filter_path",
           "kprobe_line", "kprobe_lines", "load_catalogue", "remove_line", "upstream_events"]

# Field names the kernel reserves in every probe event (kernel/trace/trace_probe.c).
RESERVED_NAMES = frozenset({
    "common_type", "common_flags", "common_preempt_count", "common_pid", "common_tgid",
    "__probe_ip", "__probe_ret_ip", "__probe_func",
})
MAX_ARG_NAME_LEN = 32  # MAX_ARG_NAME_LEN, kernel/trace/trace_probe.h

_GOOD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # is_good_name() in trace_probe.h
_SYMBOL = re.compile(r"(?:[A-Za-z0-9_-]+:)?[A-Za-z_][A-Za-z0-9_.]*")  # [MOD:]SYM
_FILTER_NAME = re.compile(r"(?<![\w.])[A-Za-z_]\w*")


class ProbeMakingRules(LoaderRules):
    """The rules of kprobe_events, checked where the loader reads the probe: the symbol,
    `upstream`, each fetch-arg (name, reserved names, spaces, $retval) and the filter."""

    def probe(self, table: dict, kind: str, fail) -> None:
        symbol = table.get("symbol")
        if not isinstance(symbol, str) or not _SYMBOL.fullmatch(symbol):
            fail(f"symbol must be a kernel function name ([MODULE:]SYMBOL), not {symbol!r}")
        aliases = table.get("aliases", [])
        if (not isinstance(aliases, list)
                or not all(isinstance(a, str) and _SYMBOL.fullmatch(a) for a in aliases)):
            fail("aliases must list the function's other names (kernel function names)")
        if not isinstance(table.get("upstream"), bool):
            fail("upstream must be true or false (false: the function exists only with a "
                 "design's patch)")

    def arg(self, item: str, name: str, fetch: str, kind: str, fail) -> None:
        if not _GOOD_NAME.fullmatch(name) or len(name) > MAX_ARG_NAME_LEN:
            fail(f"args: {name!r} is not a valid argument name")
        if name in RESERVED_NAMES:
            fail(f"args: {name!r} is reserved by the kernel")
        if not fetch or any(c.isspace() for c in fetch):
            fail(f"args: {item!r}: the fetch-arg is empty or has spaces")
        if "$retval" in fetch and kind != "kretprobe":
            fail(f"args: {item!r}: $retval exists only in a kretprobe")

    def probe_done(self, table: dict, arg_names: list[str], fail) -> None:
        flt = table.get("filter")
        if flt is not None:
            if not isinstance(flt, str) or not flt.strip() or "\n" in flt:
                fail("filter must be a one-line string")
            for word in _FILTER_NAME.findall(flt):
                if word not in arg_names:
                    fail(f"filter uses {word!r}, which is not one of args")


PROBE_MAKING_RULES = ProbeMakingRules()


def load_catalogue(path: Path | str | None = None) -> Catalogue:
    """The catalogue (the packaged one by default), checked for the replay and for making
    its probes. Raises CatalogueError."""
    return load_replay_catalogue(path, PROBE_MAKING_RULES)


def kprobe_line(spec: ProbeSpec, symbol: str | None = None) -> str:
    """The line for kprobe_events: `p:GROUP/NAME SYMBOL ARGS` or `r:...`; `symbol` is the
    name this kernel has (one of spec.symbols; the catalogue's first by default)."""
    if not spec.is_probe:
        raise ValueError(f"{spec.qualname} is a tracepoint, not a probe")
    head = (f"{'p' if spec.kind == 'kprobe' else 'r'}:{spec.system}/{spec.name} "
            f"{symbol or spec.symbol}")
    return " ".join([head, *map(str, spec.args)])


def remove_line(spec: ProbeSpec) -> str:
    return f"-:{spec.system}/{spec.name}"


def enable_path(spec: ProbeSpec) -> str:
    """Relative to the tracefs root."""
    return f"events/{spec.system}/{spec.name}/enable"


def filter_path(spec: ProbeSpec) -> str:
    return f"events/{spec.system}/{spec.name}/filter"


def kprobe_lines(cat: Catalogue, only_upstream: bool = False) -> list[str]:
    return [kprobe_line(s) for s in cat.probes(only_upstream)]


def upstream_events(cat: Catalogue) -> list[tuple[str, str]]:
    """(system, name) of the upstream tracepoints to enable."""
    return [(s.system, s.name) for s in cat.tracepoints()]
