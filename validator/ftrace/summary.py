"""Counting what a trace holds: lines by kind, events by name, lost markers, and the first
unparsed lines with their reasons. Consumes the reader's stream; keeps only counters."""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from .model import Line, LineKind

FIRST_UNPARSED = 10
TEXT_LIMIT = 200


def printable(text: str, limit: int = TEXT_LIMIT) -> str:
    """Safe to print and to put in JSON: undecodable bytes as \\xNN, control characters
    escaped, cut at `limit` characters."""
    text = text[: limit + 1]
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        raw = text.encode("utf-8", "backslashreplace")
    text = raw.decode("utf-8", "backslashreplace")
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class Unparsed:
    source: str | None
    line: int
    text: str
    reason: str


@dataclass
class Summary:
    lines: int = 0
    events: int = 0
    unparsed: int = 0
    lost_markers: int = 0
    lost_events: int = 0  # sum of the counts the markers state
    overwritten: int = 0  # entries-written minus entries-in-buffer, from `trace` headers
    by_kind: Counter = field(default_factory=Counter)
    by_event: Counter = field(default_factory=Counter)
    first_unparsed: list[Unparsed] = field(default_factory=list)
    keep: int = FIRST_UNPARSED

    def add(self, line: Line, source: str | None = None) -> None:
        self.lines += 1
        kind = line.kind
        self.by_kind[kind] += 1
        if kind is LineKind.EVENT:
            for event in line.events:
                self.events += 1
                self.by_event[event.name] += 1
        elif kind is LineKind.UNPARSED:
            self.unparsed += 1
            if len(self.first_unparsed) < self.keep:
                self.first_unparsed.append(Unparsed(source, line.line_no, printable(line.text), line.reason))
        elif kind is LineKind.LOST:
            self.lost_markers += 1
            self.lost_events += line.lost.count or 0
        elif kind is LineKind.HEADER and line.header.form == "entries":
            values = line.header.values
            self.overwritten += max(0, values["written"] - values["in_buffer"])

    def merge(self, other: "Summary") -> None:
        for name in ("lines", "events", "unparsed", "lost_markers", "lost_events", "overwritten"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.by_kind.update(other.by_kind)
        self.by_event.update(other.by_event)
        room = self.keep - len(self.first_unparsed)
        self.first_unparsed.extend(other.first_unparsed[:max(0, room)])

    def to_dict(self) -> dict:
        return {
            "lines": self.lines,
            "events": self.events,
            "unparsed": self.unparsed,
            "lost_markers": self.lost_markers,
            "lost_events": self.lost_events,
            "overwritten": self.overwritten,
            "by_kind": {str(kind): n for kind, n in sorted(self.by_kind.items())},
            "by_event": dict(sorted(self.by_event.items(), key=lambda item: (-item[1], item[0]))),
            "first_unparsed": [
                {"file": u.source, "line": u.line, "text": u.text, "reason": u.reason}
                for u in self.first_unparsed
            ],
        }


def summarise(lines: Iterable[Line], source: str | None = None, keep: int = FIRST_UNPARSED) -> Summary:
    summary = Summary(keep=keep)
    for line in lines:
        summary.add(line, source)
    return summary
