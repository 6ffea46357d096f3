"""The thread's claims about the checks, answered from the ablation's outcomes.

Each answer is assembled from what TLC found (the outcome of the claim's
check in the claim's design, and in the others); none is written in advance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from validator.check.ablation import Ablation
from validator.check.ablation_outcomes import (LOAD_BEARING, SAFETY_KEYS, SHORTENS, Diff,
                                               Outcome, condition)
from validator.check.ablation_render import (by_number, closed_text, prop_label, render_cell,
                                             steps_text)
from validator.model.properties import BY_KEY, VIOLATED


@dataclass(frozen=True)
class Claim:
    quote: str
    check: str
    design: str      # the design the claim was made for
    kind: str        # "unneeded": the check is not needed; "relied": the design relies on it


CLAIMS = (
    Claim("guest_memfd doesn't need to check HWpoison on conversions",
          "convert.hwpoison", "HWPoison", "unneeded"),
    Claim("free_pages_prepare() will check for HWpoison",
          "free_pages_prepare.hwpoison", "HWPoison", "relied"),
    Claim("guest_memfd will not return HugeTLB pages that are poisoned",
          "gmem_free.hwpoison", "HWPoison", "relied"),
)


def _name(key: str) -> str:
    return f"{prop_label(key)} {key}"


def _actions(path: str | None) -> str:
    """The counterexample's actions, from the JSON check_runs saved."""
    try:
        data = json.loads(Path(path).read_text()) if path else None
    except (OSError, ValueError):
        data = None
    if not data:
        return ""
    steps = [s["action"] for s in data["trace"][1:]]
    if data.get("loop_to"):
        steps.append(f"back to state {data['loop_to']}")
    elif data.get("stuttering"):
        steps.append("then stutters")
    return f" [{', '.join(steps)}]"


def _broken_text(diff: Diff, trace: bool = False) -> str:
    ordered = sorted(diff.broken.values(), key=lambda v: (v.steps, BY_KEY[v.key].number))
    return ", ".join(f"{_name(v.key)} in {v.steps} steps on {v.setting}"
                     + (_actions(v.counterexample) if trace and i == 0 else "")
                     for i, v in enumerate(ordered))


def describe(o: Outcome) -> str:
    """One clause: what the ablation found for this check in this design."""
    d = o.diff or Diff()
    if o.role == "absent":
        return "is not part of this design"
    if o.role == "untried":
        return (f"was not tried: the design tests `{condition(o.check)}` nowhere and checks "
                f"nothing at `{o.check.split('.')[0]}`")
    if o.role == "proposed":
        if not d.changed:
            return f"would change no verdict if added (settings {', '.join(d.settings)})"
        parts = [f"close {closed_text(d)}"] if d.closed else []
        if not any(k in d.closed for k in SAFETY_KEYS):
            parts.insert(0, "close no safety property")
        if d.longer:
            parts.append(f"delay {steps_text(d.longer)}")
        if d.shorter:
            parts.append(f"hasten {steps_text(d.shorter)}")
        if d.broken:
            parts.append(f"break {_broken_text(d, trace=True)}")
        return "would, if added, " + " and ".join(parts)
    causes = (f" (and it is what violates {closed_text(d)}: without it that holds)"
              if d.closed else "")
    if o.status == LOAD_BEARING:
        return f"is load-bearing: without it {_broken_text(d, trace=True)}{causes}"
    if o.status == SHORTENS:
        return ("breaks nothing new, but without it an existing violation comes sooner: "
                + steps_text(d.shorter) + causes)
    if o.masked_by:
        who = "; ".join(f"disabling it together with `{b}` breaks {_broken_text(pd, trace=True)}"
                        for b, pd in o.masked_by.items())
        return f"is redundant alone under these constants{causes}; {who}"
    tried = f" (pairs tried: {', '.join(o.pairs_tried)})" if o.pairs_tried else ""
    return f"is redundant under these constants, and nothing tried masks it{tried}{causes}"


def _elsewhere(a: Ablation, claim: Claim) -> str:
    groups: dict[str, list[str]] = {}
    for d in a.designs:
        o = a.outcome(d, claim.check)
        if d != claim.design and o is not None:
            groups.setdefault(render_cell(o), []).append(d)
    if not groups:
        return ""
    return " Other designs: " + "; ".join(f"{', '.join(ds)}: {cell}" for cell, ds in groups.items()) + "."


def _safety_of_baseline(a: Ablation, design: str) -> list[str]:
    return [f"{prop_label(k)} on {s}" for s, r in a.baselines[design].items() for k in SAFETY_KEYS
            if r.verdicts.get(k) and r.verdicts[k].verdict == VIOLATED]


def answer(a: Ablation, claim: Claim) -> str:
    """The claim's answer, assembled from the computed outcomes."""
    o = a.outcome(claim.design, claim.check)
    if o is None:
        return f"not answered: {claim.design} / `{claim.check}` was not part of this ablation."
    lead = f"In {claim.design}, `{claim.check}` {describe(o)}."
    d = o.diff or Diff()
    if claim.kind == "unneeded":
        closes_safety = [k for k in SAFETY_KEYS if k in d.closed]
        base_broken = _safety_of_baseline(a, claim.design)
        if closes_safety:
            verdict = f"Refuted: the check is needed, it closes {', '.join(map(prop_label, closes_safety))}."
        elif base_broken:
            verdict = (f"Not needed, but not sufficient either: {claim.design} violates "
                       f"{', '.join(base_broken)} with or without it.")
        else:
            verdict = (f"Holds in the model: {claim.design} keeps P1-P4 without the check, "
                       f"and adding it closes nothing.")
        if d.broken:
            verdict += f" Adding it costs {', '.join(prop_label(k) for k in by_number(d.broken))}."
    else:
        if o.role != "present":
            verdict = f"Cannot be judged: {claim.design} does not perform this check."
        elif o.status == LOAD_BEARING:
            verdict = f"{claim.design} relies on this check: it is what stops those counterexamples."
        elif o.masked_by:
            verdict = (f"{claim.design} does not rely on it alone: "
                       f"{', '.join(f'`{b}`' for b in o.masked_by)} also stops the same behaviours; "
                       f"only removing both breaks a property.")
        else:
            verdict = f"{claim.design} does not rely on it under these constants."
    return f"{lead} {verdict}{_elsewhere(a, claim)}"

