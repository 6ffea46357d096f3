"""A run's results: a verdict per property, the state counts, what the matrix expected."""

from __future__ import annotations

from dataclasses import dataclass, field

from validator.check.matrix import Run
from validator.model.properties import PROPERTIES, VIOLATED
from validator.tlc.output import UNFINISHED

# A property the run did not check (distributed TLC checks safety only): shown, never a
# mismatch, never taken for "holds".
NOT_CHECKED = "not checked"
# UNFINISHED: a property whose TLC process was stopped at check --budget: no verdict either
# way; shown with the states explored so far, never a mismatch, never taken for "holds".
NO_VERDICT = (NOT_CHECKED, UNFINISHED)


@dataclass
class PropertyVerdict:
    verdict: str                      # holds | violated | - | not checked | unfinished | error
    steps: int | None = None
    counterexample: str | None = None  # path of the JSON counterexample
    error: str | None = None


@dataclass
class RunResult:
    run: Run
    verdicts: dict[str, PropertyVerdict] = field(default_factory=dict)
    distinct: int = 0
    generated: int = 0
    seconds: float = 0.0
    tlc_runs: int = 0
    collision: float | None = None    # the largest of its TLC processes' estimates
    peak_mib: float | None = None     # the largest peak memory of its TLC processes (JVMs)
    queue: int | None = None          # states left when a process was stopped (--budget)
    notes: list[str] = field(default_factory=list)    # how it was checked, where unusual

    def cell(self, key: str) -> str:
        v = self.verdicts.get(key)
        if v is None:
            return "?"
        if v.verdict == VIOLATED:
            return f"VIOLATED ({v.steps} steps)"
        if v.verdict == "error":
            return "ERROR"
        return v.verdict

    def mismatches(self) -> list[str]:
        out = []
        for prop in PROPERTIES:
            want = self.run.expect.get(prop.key)
            got = self.verdicts.get(prop.key)
            got_text = got.verdict if got else "?"
            if got_text != want and got_text not in NO_VERDICT:
                out.append(f"{self.run.name}: {prop.key} is {got_text}, the matrix expects {want}")
        return out

    def errors(self) -> list[str]:
        return [f"{self.run.name}: {k}: {v.error}" for k, v in self.verdicts.items()
                if v.verdict == "error"]

    def to_json(self) -> dict:
        return {
            "name": self.run.name, "kind": self.run.kind, "note": self.run.note,
            "constants": self.run.constants(),
            "verdicts": {k: {"verdict": v.verdict, "steps": v.steps,
                             "counterexample": v.counterexample, "error": v.error}
                         for k, v in self.verdicts.items()},
            "expected": self.run.expect, "mismatches": self.mismatches(),
            "distinct_states": self.distinct, "states_generated": self.generated,
            "seconds": round(self.seconds, 2), "tlc_runs": self.tlc_runs,
            "collision_probability": self.collision, "peak_mib": self.peak_mib,
            "queue_left": self.queue, "notes": self.notes,
        }
