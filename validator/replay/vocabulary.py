"""The replay's words for trace events: which events are protocol events (the probe
catalogue's mapping, one source), which the reader must type (KNOWN_EVENTS: the
tracepoints' formats, the probes' group and names, handed to validator/ftrace as data)
and what the replay reads of each (Observed)."""

from __future__ import annotations

import sys
from typing import NamedTuple

from validator.ftrace import Event, KnownEvents, TracepointFormat
from validator.ftrace.markers import MARKER_NAMES
from validator.replay.catalogue import load_catalogue

# The mapping from trace events to protocol events: the probe catalogue's (one source).
_CATALOGUE = load_catalogue()
# What the reader types: the catalogue's tracepoints (by their TP_printk formats) and probes.
KNOWN_EVENTS = KnownEvents.of(
    tracepoints=[TracepointFormat(s.system, s.name, s.formats, s.required)
                 for s in _CATALOGUE.tracepoints()],
    probe_group=_CATALOGUE.group, probe_names=[s.name for s in _CATALOGUE.probes()])
UPSTREAM_PROTOCOL = _CATALOGUE.tracepoint_protocols()
PROBE_PROTOCOL = _CATALOGUE.probe_protocols()
PROBE_GROUP = _CATALOGUE.group
_UPSTREAM_NAMES = frozenset(name for _, name in UPSTREAM_PROTOCOL)
# How each probe's printed fields become the fields the planner reads (derive, values, ret).
_NORMALISERS = {s.name: s.normalise for s in _CATALOGUE.probes() if s.needs_normalising}
# The only event names protocol_of() does not map to None (markers: record's own lines).
RELEVANT_NAMES = frozenset(PROBE_PROTOCOL) | _UPSTREAM_NAMES | MARKER_NAMES
# Events that carry no information the model holds (counted, and shown as observed).
INFORMATIONAL = {"page_fault", "spte_changed", "set_attributes", "set_spte", "host_unmap_range"}
# An Observed that stands for a run of INFORMATIONAL events: fields {protocol: count}
INFORMATIONAL_RUN = "informational run"
MARKER_PREFIX = "poisoncheck "


def protocol_of(event: Event) -> str | None:
    if event.system == PROBE_GROUP or (event.probe is not None and event.name in PROBE_PROTOCOL):
        return PROBE_PROTOCOL.get(event.name)
    if event.name in MARKER_NAMES:
        return "marker" if _marker_text(event).startswith(MARKER_PREFIX) else None
    return UPSTREAM_PROTOCOL.get((event.system, event.name))


def _marker_text(event: Event) -> str:
    text = event.fields.get("buf") if event.name == "print" else None
    return (text if isinstance(text, str) else event.payload or "").strip()


class Observed(NamedTuple):
    """What the replay reads of a protocol event (see observe()): small, so that reader
    processes can hand it over cheaply."""

    line_no: int
    raw: str | None          # the traced line; None for INFORMATIONAL events (never shown)
                             # and where Replay's raw_of() finds it
    name: str                # the event's own name (for messages)
    protocol: str            # protocol_of(event)
    fields: dict | None      # the fields plan() reads, where the event has them


# Every field the planner reads.
PLAN_FIELDS = ("pfn", "order", "index", "ret", "start", "end", "to", "major", "minor", "ofs",
               "page", "ino", "flags")


class UntypedEvent(ValueError):
    """An event read without KNOWN_EVENTS: the replay would skip it without a word."""


def observe(event: Event) -> Observed | None:
    """The event as the replay sees it, or None when it is not a protocol event.  Raises
    UntypedEvent for a protocol tracepoint read without KNOWN_EVENTS (a plain
    validator.ftrace.read_file): the reader names its system only when it knows the event,
    so the replay would miss it (a reuse of the page, say) and still give a verdict."""
    protocol = protocol_of(event)
    if protocol is None:
        if event.system is None and event.name in _UPSTREAM_NAMES:
            raise UntypedEvent(f"line {event.line_no}: {event.name} was read without "
                               f"poisoncheck's tracepoint formats; read the trace with "
                               f"validator.replay.input.read_file or read_lines")
        return None
    name = sys.intern(event.name)
    if protocol in INFORMATIONAL:
        return Observed(event.line_no, None, name, protocol, None)
    if protocol == "marker":
        pairs = (word.partition("=") for word in _marker_text(event)[len(MARKER_PREFIX):].split())
        return Observed(event.line_no, event.raw, name, protocol,
                        {key: value for key, eq, value in pairs if eq})
    fields = _fields(event)
    normalise = _NORMALISERS.get(event.name) if event.probe is not None else None
    if normalise is not None:
        fields = normalise(fields)
    return Observed(event.line_no, event.raw, name, protocol,
                    {key: fields[key] for key in PLAN_FIELDS if key in fields})


def _fields(ev: Event):
    """The event's fields as a dict when the reader decodes them lazily (the Mapping
    interface costs a Python call per key; the replay reads several keys per event)."""
    fields = ev.fields
    decoded = getattr(fields, "_decoded", None)     # validator.ftrace.decoders._Lazy
    return decoded() if decoded is not None else fields
