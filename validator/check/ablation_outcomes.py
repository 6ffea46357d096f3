"""What one ablation variant did, compared with its design's baseline, and what
that makes the check: load-bearing, shortens, redundant (masked by a partner),
or, for a proposed check, what adding it changes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import NamedTuple

from validator.model import CheckSets
from validator.model.properties import HOLDS, PROPERTIES, VIOLATED
from validator.check.results import RunResult

# Property 5 only restates 1-4 for HWPoison; comparing it would repeat them.
COMPARED = tuple(p.key for p in PROPERTIES if p.kind != "derived")
SAFETY_KEYS = tuple(p.key for p in PROPERTIES if p.kind in ("invariant", "action"))
LIVENESS_KEYS = tuple(p.key for p in PROPERTIES if p.kind == "liveness")


def condition(check: str) -> str:
    """What a check tests: `hwpoison` in `do_fault.hwpoison`."""
    return check.split(".")[1]


def role_of(sets: CheckSets, design: str, check: str) -> str:
    """present | proposed (added, since the design tests its condition elsewhere or
    checks at the same site) | untried (neither) | absent."""
    if check in sets.present(design):
        return "present"
    if check not in sets.proposed:
        return "absent"
    tested = {condition(c) for c in sets.present(design)}
    sites = {c.split(".")[0] for c in sets.present(design)}
    near = condition(check) in tested or check.split(".")[0] in sites
    return "proposed" if near else "untried"


def same_path(sets: CheckSets, a: str, b: str) -> bool:
    """Two checks on one path: used by the same action, or testing the same condition."""
    return bool(sets.sites[a] & sets.sites[b]) or condition(a) == condition(b)


# ---------------------------------------------------------------------------
# Comparing a variant with its baseline.

@dataclass
class Violation:
    key: str
    steps: int
    setting: str
    counterexample: str | None = None


class StepChange(NamedTuple):
    """A violation both runs have, reached in a different number of steps."""
    base: int
    variant: int
    setting: str


@dataclass
class Diff:
    """What changed from the baseline, over the settings both were run on."""

    broken: dict[str, Violation] = field(default_factory=dict)   # holds -> violated (shortest)
    closed: dict[str, list[str]] = field(default_factory=dict)   # violated -> holds: settings
    still: dict[str, list[str]] = field(default_factory=dict)    # violated in both: settings
    shorter: dict[str, StepChange] = field(default_factory=dict)
    longer: dict[str, StepChange] = field(default_factory=dict)
    settings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.broken or self.closed or self.shorter or self.longer)


def compare(baseline: dict[str, RunResult], variant: dict[str, RunResult]) -> Diff:
    """Per setting and property, what the variant does differently from the baseline."""
    diff = Diff()
    for setting, var in variant.items():
        base = baseline.get(setting)
        if base is None:
            continue
        diff.settings.append(setting)
        for key in COMPARED:
            b, v = base.verdicts.get(key), var.verdicts.get(key)
            if b is None or v is None or {b.verdict, v.verdict} - {HOLDS, VIOLATED}:
                continue   # not run, not applicable, or an error
            if b.verdict == HOLDS and v.verdict == VIOLATED:
                old = diff.broken.get(key)
                if old is None or v.steps < old.steps:
                    diff.broken[key] = Violation(key, v.steps, setting, v.counterexample)
            elif b.verdict == VIOLATED and v.verdict == HOLDS:
                diff.closed.setdefault(key, []).append(setting)
            elif b.verdict == VIOLATED:
                diff.still.setdefault(key, []).append(setting)
                # Only breadth-first (safety) counterexamples are shortest; a
                # liveness lasso's length varies with TLC's fingerprint seed.
                if key in SAFETY_KEYS and v.steps != b.steps:
                    into = diff.shorter if v.steps < b.steps else diff.longer
                    old = into.get(key)
                    if old is None or abs(v.steps - b.steps) > abs(old.variant - old.base):
                        into[key] = StepChange(b.steps, v.steps, setting)
    return diff


# ---------------------------------------------------------------------------
# Classification.

LOAD_BEARING, SHORTENS, REDUNDANT = "load-bearing", "shortens", "redundant"
NOT_PRESENT, NOT_TRIED, ADDS_NOTHING, CHANGES = "not present", "not tried", "adds nothing", "changes"


@dataclass
class Outcome:
    design: str
    check: str
    role: str                      # "present" | "proposed" | "untried" | "absent"
    status: str
    diff: Diff | None = None
    masked_by: dict[str, Diff] = field(default_factory=dict)   # partner -> the pair's diff
    pairs_tried: list[str] = field(default_factory=list)


def classify(design: str, check: str, role: str, diff: Diff | None) -> Outcome:
    if role in ("absent", "untried") or diff is None:
        return Outcome(design, check, role, NOT_PRESENT if role == "absent" else NOT_TRIED)
    if role == "proposed":
        return Outcome(design, check, role, CHANGES if diff.changed else ADDS_NOTHING, diff)
    status = LOAD_BEARING if diff.broken else SHORTENS if diff.shorter else REDUNDANT
    return Outcome(design, check, role, status, diff)


def pair_candidates(sets: CheckSets, outcomes: list[Outcome], full: bool = False
                    ) -> list[tuple[str, str]]:
    """Pairs of redundant checks of one design on one path (all pairs if `full`)."""
    quiet = [o.check for o in outcomes if o.role == "present" and o.status == REDUNDANT]
    return [(a, b) for a, b in itertools.combinations(quiet, 2) if full or same_path(sets, a, b)]


def masking(singles: dict[str, Diff], pairs: dict[tuple[str, str], Diff]
            ) -> dict[str, dict[str, Diff]]:
    """check -> {partner: pair diff} when removing both breaks what neither alone breaks."""
    out: dict[str, dict[str, Diff]] = {}
    for (a, b), diff in pairs.items():
        if set(diff.broken) - set(singles[a].broken) - set(singles[b].broken):
            out.setdefault(a, {})[b] = diff
            out.setdefault(b, {})[a] = diff
    return out

