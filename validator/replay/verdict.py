"""What a replay says: the Verdict (both engines give one) and the coverage of the spec."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from validator import model
from validator.replay.folio_table import PlanInputError

ReplayInputError = PlanInputError     # the trace cannot be replayed at all (line given); exit 2


@dataclass
class Verdict:
    design: str
    verdict: str = "accepted"            # accepted | violation | inconclusive
    kind: str | None = None              # step | property
    property: str | None = None
    line: int | None = None
    event: str | None = None              # the raw trace line
    protocol_event: str | None = None
    file: str | None = None               # the guest_memfd file the violation is about
    reason: str | None = None
    accepted_prefix: int = 0              # the last line accepted before the verdict
    candidates: list[dict] = field(default_factory=list)   # before the failing event
    guards: list[str] = field(default_factory=list)        # the guards that failed
    notes: list[str] = field(default_factory=list)
    events: int = 0                       # protocol events replayed (steps judged)
    folio_events: int = 0                 # ... of them about a folio guest_memfd allocated
    folios: int = 0                       # folios (pfns) the trace showed in guest_memfd
    observability: dict = field(default_factory=dict)   # see evidence.observability()
    unparsed: int = 0                     # lines of the trace that did not parse
    stopped_at: int | None = None         # the line the replay stopped at (None: the end)
    coverage: dict | None = None          # with coverage asked for: see Coverage.to_json

    def to_json(self) -> dict:
        return {"verdict": self.verdict, "kind": self.kind, "property": self.property,
                "design": self.design, "line": self.line, "event": self.event,
                "protocol_event": self.protocol_event, "file": self.file,
                "reason": self.reason,
                "accepted_prefix": self.accepted_prefix, "guards": self.guards,
                "candidates": self.candidates, "notes": self.notes, "events": self.events,
                "folio_events": self.folio_events, "folios": self.folios,
                "observability": self.observability, "unparsed_lines": self.unparsed,
                **({"coverage": self.coverage} if self.coverage is not None else {})}


CHECK_IN_GUARD = re.compile(r"\b([a-z_]+\.[a-z_]+):")


@dataclass
class Coverage:
    actions: set[str] = field(default_factory=set)       # actions some accepted step took
    refusals: set[str] = field(default_factory=set)      # named checks that refused a step

    def to_json(self) -> dict:
        every = set(model.ACTION_NAMES)
        checks = set(model.ALL_CHECKS)
        return {"actions": sorted(self.actions), "actions_never": sorted(every - self.actions),
                "checks_refused": sorted(self.refusals),
                "checks_never": sorted(checks - self.refusals)}
