"""The events a caller wants typed: what the reader knows beyond generic ftrace.

The reader is generic: it knows ftrace's record forms, not which tracepoints a tool
replays.  A caller that wants some events decoded into typed fields (and their bad
payloads refused) says so with a KnownEvents value, built from plain data: each
tracepoint's TP_printk renderings, and a kprobe group with its probe names.  Without
one (NO_KNOWN_EVENTS) every event's fields are its key=value pairs, read on first use.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from .decoders import Tracepoint, compile_format
from .markers import MARKER_NAMES


class TracepointFormat(NamedTuple):
    """A tracepoint as plain data: where it lives and how the kernel prints it."""

    system: str
    name: str
    formats: tuple[tuple[str, tuple[str, ...]], ...]  # (TP_printk, field per conversion), newest first
    required: tuple[str, ...] = ()  # int fields a key=value rendering must carry


@dataclass(frozen=True, slots=True)
class KnownEvents:
    """Compiled once by its caller and handed to every reading (workers too: forked
    processes inherit it; pickling rebuilds it from the plain data)."""

    tracepoint_formats: tuple[TracepointFormat, ...] = ()
    probe_group: str | None = None       # the group of the caller's kprobe events
    probe_names: frozenset[str] = frozenset()
    tracepoints: dict[str, Tracepoint] = field(init=False, compare=False, repr=False)
    # Names the hot path must not treat as plain events: typed ones and markers
    special_names: frozenset[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        tracepoints = {tp.name: Tracepoint(tp.system, tp.name,
                                           tuple(compile_format(f, tuple(n)) for f, n in tp.formats),
                                           tuple(tp.required))
                       for tp in self.tracepoint_formats}
        object.__setattr__(self, "tracepoints", tracepoints)
        object.__setattr__(self, "special_names",
                           frozenset(MARKER_NAMES | tracepoints.keys() | self.probe_names))

    @classmethod
    def of(cls, tracepoints: Iterable[TracepointFormat] = (), probe_group: str | None = None,
           probe_names: Iterable[str] = ()) -> KnownEvents:
        return cls(tuple(TracepointFormat(*tp) for tp in tracepoints), probe_group,
                   frozenset(probe_names))

    def __reduce__(self):
        # the compiled formats hold converter functions, which do not pickle
        return (type(self), (self.tracepoint_formats, self.probe_group, self.probe_names))


NO_KNOWN_EVENTS = KnownEvents()
