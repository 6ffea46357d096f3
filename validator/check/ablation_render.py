"""The ablation as a table: one cell per check and design, assembled from the
computed outcomes (no verdict is written here in advance).  The phrases for
properties, step counts and closed violations are shared with the claims."""

from __future__ import annotations

from tabulate import tabulate

from validator.check.ablation import Ablation
from validator.check.ablation_outcomes import (ADDS_NOTHING, LOAD_BEARING, NOT_PRESENT,
                                               REDUNDANT, SHORTENS, Diff, Outcome, StepChange,
                                               condition)
from validator.model.properties import BY_KEY, VIOLATED


def prop_label(key: str) -> str:
    """P1 for NoHostAccessToTdPage: the property's number in docs/protocol.md."""
    return f"P{BY_KEY[key].number}"


def by_number(keys) -> list[str]:
    return sorted(keys, key=lambda k: BY_KEY[k].number)


def _violations(diff: Diff) -> str:
    ordered = sorted(diff.broken.values(), key=lambda v: (v.steps, BY_KEY[v.key].number))
    first, rest = ordered[0], ordered[1:]
    return ", ".join([f"{prop_label(first.key)} ({first.steps} steps)"]
                     + [f"{prop_label(v.key)} ({v.steps})" for v in rest])


def steps_text(changes: dict[str, StepChange]) -> str:
    """P1 (7→6 steps), for a shortened or delayed counterexample."""
    return ", ".join(f"{prop_label(k)} ({changes[k].base}→{changes[k].variant} steps)"
                     for k in by_number(changes))


def closed_text(diff: Diff) -> str:
    """P7, or `P1 on buddy-f1m1 only` when it stays violated on another setting."""
    return ", ".join(prop_label(k)
                     + (f" on {', '.join(diff.closed[k])} only" if k in diff.still else "")
                     for k in by_number(diff.closed))


def render_cell(o: Outcome) -> str:
    if o.role == "absent":
        return NOT_PRESENT
    if o.role == "untried":
        return f"n/a (tests no {condition(o.check)})"
    d = o.diff or Diff()
    parts: list[str] = []
    if o.role == "present":
        if o.status == LOAD_BEARING:
            parts.append(f"load-bearing: {_violations(d)}")
        elif o.status == SHORTENS:
            parts.append(f"shortens {steps_text(d.shorter)}")
        else:
            masked = f" (masked by {', '.join(o.masked_by)})" if o.masked_by else ""
            parts.append(REDUNDANT + masked)
        if d.closed:   # the check itself is what violates these
            parts.append(f"off: {closed_text(d)} holds")
        return "; ".join(parts)
    if not d.changed:
        return ADDS_NOTHING
    if d.closed:
        parts.append(f"closes: {closed_text(d)}")
    if d.longer:
        parts.append(f"delays {steps_text(d.longer)}")
    if d.shorter:
        parts.append(f"hastens {steps_text(d.shorter)}")
    if d.broken:
        parts.append(f"breaks: {_violations(d)}")
    return "; ".join(parts)


def render_table(a: Ablation, fmt: str = "simple") -> str:
    rows = []
    for check in a.checks:
        name = check + (" (proposed)" if check in a.sets.proposed else "")
        rows.append([name] + [render_cell(a.outcomes[(d, check)]) for d in a.designs])
    return tabulate(rows, headers=["check"] + list(a.designs), tablefmt=fmt,
                    disable_numparse=True)


def baseline_line(a: Ablation, design: str) -> str:
    """What the design violates with every check on, per setting."""
    broken = []
    for setting, result in a.baselines[design].items():
        for key in by_number(k for k in result.verdicts if BY_KEY[k].kind != "derived"):
            v = result.verdicts[key]
            if v.verdict == VIOLATED:
                broken.append(f"{prop_label(key)} on {setting} ({v.steps} steps)")
    return f"{design}: " + ("; ".join(broken) if broken else "every property holds")
