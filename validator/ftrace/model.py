"""The typed records the reader yields: one Line per input line, Events inside.

NamedTuples rather than frozen dataclasses: they are immutable too, and about six times
cheaper to create, which matters at a million lines."""

from collections.abc import Mapping
from enum import StrEnum
from typing import NamedTuple


class LineKind(StrEnum):
    EVENT = "event"  # one (rarely two) trace records: Line.events
    HEADER = "header"  # "#" lines, trace-cmd/perf preambles and summaries, tool messages
    LOST = "lost"  # lost-event markers: Line.lost
    CONTINUATION = "continuation"  # stack-trace lines, 2nd+ lines of a multi-line marker
    BLANK = "blank"
    FUNCGRAPH = "funcgraph"  # function_graph tracer output: recognised, not decoded
    UNPARSED = "unparsed"  # Line.reason says why


class Probe(NamedTuple):
    """Where a kprobe/kretprobe/uprobe event fired, from its "(...)" payload prefix."""

    kind: str  # "kprobe" | "kretprobe" | "uprobe" | "uretprobe"
    func: str  # the probed function (symbol, or address for uprobes)
    site: str  # kprobe: "sym+0x0/0x80"; kretprobe: the return site "caller+0x1e/0x20"


class Event(NamedTuple):
    line_no: int  # 1-based line of the input it came from
    raw: str  # the record's text (the whole line, or its part when two records share a line)
    task: str | None  # comm as printed (None when context-info is off); may hold surrogate escapes
    pid: int | None
    tgid: int | None  # record-tgid column, or perf's pid of pid/tid; None if absent or (-------)
    cpu: int | None
    flags: str | None  # irq-info flag characters as printed ("d..2.", "dNh1", "d.h413.")
    ts: int | None  # see ts_unit
    ts_unit: str | None  # "ns" | "count" | "rel_ns" | "rel_count" (latency format: since trace start)
    system: str | None  # printed by perf; inferred for the protocol's events and probes
    name: str
    payload: str  # the text after "name: "
    fields: Mapping[str, int | str]  # typed for known events, else decoded on first use
    probe: Probe | None = None
    source: str | None = None  # trace-cmd input file prefix ("kvm.dat")

    @property
    def qualname(self) -> str:
        return f"{self.system}:{self.name}" if self.system else self.name


class LostMarker(NamedTuple):
    line_no: int
    form: str  # "lost_events" | "events_dropped" | "buffer_started" | "line_too_big"
    cpu: int | None
    count: int | None  # None when the marker does not say how many


class Header(NamedTuple):
    form: str  # tracer | entries | legend | comment | cpus | preamble | summary | tool
    values: Mapping[str, int | str]  # tracer: {"tracer"}; entries: {"in_buffer", "written", "cpus"}


class Line(NamedTuple):
    line_no: int
    kind: LineKind
    text: str
    reason: str | None = None  # unparsed: why; continuation: what it continues
    events: tuple[Event, ...] = ()
    lost: LostMarker | None = None
    header: Header | None = None
    continues: int | None = None  # continuation: line_no of the record it belongs to
