"""What `poisoncheck ablate` writes: the JSON (which `poisoncheck report` reads)
and the text (the table, the baselines and the claims' answers)."""

from __future__ import annotations

from pathlib import Path

from validator.check.ablation import Ablation
from validator.check.ablation_outcomes import Diff
from validator.check.ablation_render import baseline_line, render_cell, render_table
from validator.check.claims import CLAIMS, answer
from validator.model.properties import PROPERTIES


def _diff_json(d: Diff | None) -> dict | None:
    if d is None:
        return None
    return {"broken": {k: {"steps": v.steps, "setting": v.setting,
                           "counterexample": v.counterexample} for k, v in d.broken.items()},
            "closed": d.closed, "still_violated": d.still,
            "shorter": {k: list(v) for k, v in d.shorter.items()},
            "longer": {k: list(v) for k, v in d.longer.items()}, "settings": d.settings}


def to_json(a: Ablation) -> dict:
    return {
        "designs": list(a.designs), "settings": [s.name for s in a.settings],
        "seconds": round(a.seconds, 1), "tlc_cpu_seconds": round(a.cpu_seconds, 1),
        "tlc_processes": a.tlc_processes, "tlc_runs": len(a.results), "jobs": a.jobs,
        "baselines": {d: {s: {k: {"verdict": v.verdict, "steps": v.steps}
                              for k, v in r.verdicts.items()} for s, r in by_s.items()}
                      for d, by_s in a.baselines.items()},
        "checks": {c: {d: {"role": o.role, "status": o.status, "cell": render_cell(o),
                           "sites": sorted(a.sets.sites.get(c, ())),
                           "diff": _diff_json(o.diff),
                           "masked_by": {b: _diff_json(pd) for b, pd in o.masked_by.items()},
                           "pairs_tried": o.pairs_tried}
                       for d in a.designs for o in [a.outcomes[(d, c)]]}
                   for c in a.checks},
        # poisoncheck report reads "designs", "checks" (cells) and "claims".
        "claims": [{"quote": c.quote, "check": c.check, "design": c.design,
                    "answer": answer(a, c)} for c in CLAIMS],
    }


def to_text(a: Ablation, out_dir: Path) -> str:
    """The table, a legend, the baselines, the claims' answers and what it cost."""
    lines = [render_table(a)]
    lines.append("\nP" + ", P".join(f"{p.number} {p.key}" for p in PROPERTIES
                                     if p.kind != "derived")
                 + f"; settings: {', '.join(s.name for s in a.settings)} (backing, removal "
                 "failures, memory errors); n steps = transitions in TLC's counterexample "
                 "(the shortest for P1-P4; for P7 the lasso TLC found).")
    lines.append("\nBaselines (every check on):")
    lines += [f"  {baseline_line(a, d)}" for d in a.designs]
    lines.append("\nThe thread's claims:")
    lines += [f"- \"{claim.quote}\": {answer(a, claim)}" for claim in CLAIMS]
    lines.append(f"\n{len(a.results)} TLC runs, {a.tlc_processes} TLC processes, "
                 f"{a.seconds:.0f} s wall with {a.jobs} in parallel "
                 f"({a.cpu_seconds:.0f} s CPU); JSON and counterexamples in {out_dir}")
    return "\n".join(lines)
