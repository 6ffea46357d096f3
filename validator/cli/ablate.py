"""`poisoncheck ablate`: which checks carry the load, design by design, as a table.

The cells and the answers to the thread's claims are assembled from the
computed outcomes (validator.ablation); no verdict is written here in advance.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import click
from tabulate import tabulate

from validator.check.ablation import (ADDS_NOTHING, DEFAULT_SETTINGS, LOAD_BEARING, NOT_PRESENT,
                                      REDUNDANT, SAFETY_KEYS, SHORTENS, Ablation, AblationError,
                                      Diff, Outcome, condition, matrix_shapes, read_check_sets,
                                      run_ablation)
from validator.cli.errors import InputError, writing_to
from validator.check.matrix import BACKINGS, DESIGNS, MatrixError
from validator.model.properties import BY_KEY, PROPERTIES, VIOLATED
from validator.tlc.runner import TlcSetup, default_tlc_jobs
from validator.paths import build_dir, spec_dir as packaged_spec_dir
from validator.tlc.setup import SetupError, default_jar, find_java, verify_jar


# ---------------------------------------------------------------------------
# Cells.

def _p(key: str) -> str:
    return f"P{BY_KEY[key].number}"


def _by_number(keys) -> list[str]:
    return sorted(keys, key=lambda k: BY_KEY[k].number)


def _violations(diff: Diff) -> str:
    ordered = sorted(diff.broken.values(), key=lambda v: (v.steps, BY_KEY[v.key].number))
    first, rest = ordered[0], ordered[1:]
    return ", ".join([f"{_p(first.key)} ({first.steps} steps)"]
                     + [f"{_p(v.key)} ({v.steps})" for v in rest])


def _steps(changes: dict[str, tuple[int, int, str]]) -> str:
    return ", ".join(f"{_p(k)} ({changes[k][0]}→{changes[k][1]} steps)" for k in _by_number(changes))


def _closed(diff: Diff) -> str:
    """P7, or `P1 on buddy-f1m1 only` when it stays violated on another setting."""
    return ", ".join(_p(k) + (f" on {', '.join(diff.closed[k])} only" if k in diff.still else "")
                     for k in _by_number(diff.closed))


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
            parts.append(f"shortens {_steps(d.shorter)}")
        else:
            masked = f" (masked by {', '.join(o.masked_by)})" if o.masked_by else ""
            parts.append(REDUNDANT + masked)
        if d.closed:   # the check itself is what violates these
            parts.append(f"off: {_closed(d)} holds")
        return "; ".join(parts)
    if not d.changed:
        return ADDS_NOTHING
    if d.closed:
        parts.append(f"closes: {_closed(d)}")
    if d.longer:
        parts.append(f"delays {_steps(d.longer)}")
    if d.shorter:
        parts.append(f"hastens {_steps(d.shorter)}")
    if d.broken:
        parts.append(f"breaks: {_violations(d)}")
    return "; ".join(parts)


def render_table(a: Ablation, fmt: str = "simple") -> str:
    rows = []
    for check in a.checks:
        label = check + (" (proposed)" if check in a.sets.proposed else "")
        rows.append([label] + [render_cell(a.outcomes[(d, check)]) for d in a.designs])
    return tabulate(rows, headers=["check"] + list(a.designs), tablefmt=fmt,
                    disable_numparse=True)


def baseline_line(a: Ablation, design: str) -> str:
    """What the design violates with every check on, per setting."""
    broken = []
    for setting, result in a.baselines[design].items():
        for key in _by_number(k for k in result.verdicts if BY_KEY[k].kind != "derived"):
            v = result.verdicts[key]
            if v.verdict == VIOLATED:
                broken.append(f"{_p(key)} on {setting} ({v.steps} steps)")
    return f"{design}: " + ("; ".join(broken) if broken else "every property holds")


# ---------------------------------------------------------------------------
# The thread's claims, answered from the outcomes.

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
    return f"{_p(key)} {key}"


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
        parts = [f"close {_closed(d)}"] if d.closed else []
        if not any(k in d.closed for k in SAFETY_KEYS):
            parts.insert(0, "close no safety property")
        if d.longer:
            parts.append(f"delay {_steps(d.longer)}")
        if d.shorter:
            parts.append(f"hasten {_steps(d.shorter)}")
        if d.broken:
            parts.append(f"break {_broken_text(d, trace=True)}")
        return "would, if added, " + " and ".join(parts)
    causes = (f" (and it is what violates {_closed(d)}: without it that holds)"
              if d.closed else "")
    if o.status == LOAD_BEARING:
        return f"is load-bearing: without it {_broken_text(d, trace=True)}{causes}"
    if o.status == SHORTENS:
        return ("breaks nothing new, but without it an existing violation comes sooner: "
                + _steps(d.shorter) + causes)
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
    return [f"{_p(k)} on {s}" for s, r in a.baselines[design].items() for k in SAFETY_KEYS
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
            verdict = f"Refuted: the check is needed, it closes {', '.join(map(_p, closes_safety))}."
        elif base_broken:
            verdict = (f"Not needed, but not sufficient either: {claim.design} violates "
                       f"{', '.join(base_broken)} with or without it.")
        else:
            verdict = (f"Holds in the model: {claim.design} keeps P1-P4 without the check, "
                       f"and adding it closes nothing.")
        if d.broken:
            verdict += f" Adding it costs {', '.join(_p(k) for k in _by_number(d.broken))}."
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


# ---------------------------------------------------------------------------
# JSON.

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


# ---------------------------------------------------------------------------
# The command.

def _designs(values: tuple[str, ...]) -> tuple[str, ...]:
    if not values or "all" in values:
        return DESIGNS
    by_lower = {d.lower(): d for d in DESIGNS}
    unknown = [v for v in values if v.lower() not in by_lower]
    if unknown:
        raise InputError(f"--design {unknown[0]} is not one of {', '.join(DESIGNS)} or all")
    return tuple(d for d in DESIGNS if d.lower() in {v.lower() for v in values})


@click.command()
@click.option("--design", "design", multiple=True, metavar="D",
              help="A design to ablate (repeatable) or 'all' [default: all].")
@click.option("--backing", multiple=True, type=click.Choice(BACKINGS),
              help="Only these backings (repeatable) [default: buddy, then hugetlb].")
@click.option("--check", "checks", multiple=True, metavar="CHECK",
              help="Only these checks (repeatable) [default: every check of spec/Poison.tla].")
@click.option("--full", is_flag=True,
              help="No shortcuts: every check on every setting, proposed checks in every "
                   "design, liveness in every run, every pair of redundant checks (slower).")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None,
              help="TLC processes in parallel [default: the number of cores].")
@click.option("--timeout", type=click.FloatRange(min=1), default=600, show_default=True,
              help="Seconds one TLC process may take before the ablation fails.")
@click.option("--spec-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory with Poison.tla and MCPoison.tla [default: the spec/ shipped "
                   "with poisoncheck].")
@click.option("--matrix", "matrix_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Matrix whose default constants are used "
                                 "[default: matrix.toml of the spec directory].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where configs, TLC output and counterexamples go [default: ./build/ablate].")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")
def ablate(design, backing, checks, full, jobs, timeout, spec_dir, matrix_path, out_dir,
           as_json, quiet):
    """Disable each named check of spec/Poison.tla in turn and see what breaks.

    For each design: a baseline TLC run, one run per check the design performs
    with that check disabled, one per proposed check with it added, with one
    removal failure and one memory error on buddy and HugeTLB folios.  Checks
    that break nothing alone are then disabled in pairs (same action or same
    condition) to name what masks them.  Cells: `load-bearing: P1 (6 steps)`,
    `shortens`, `redundant (masked by X)`, `not present`; proposed checks:
    `adds nothing`, `closes: P1`, `breaks: P7 (3 steps)`.

    \b
    Examples:
      poisoncheck ablate
      poisoncheck ablate --design HWPoison --design BuggyCleanup
      poisoncheck ablate --design NoHold --backing buddy --check gmem_fault.shared
      poisoncheck ablate --json > ablation.json     # also build/ablate/ablation.json

    \b
    Exit codes: 0 the ablation ran, 2 bad option, missing Java or jar, a TLA+
    error, or a TLC run over --timeout.
    """
    spec_dir = spec_dir or packaged_spec_dir()
    matrix_path = matrix_path or spec_dir / "matrix.toml"
    out_dir = out_dir or build_dir() / "ablate"
    designs = _designs(design)
    settings = tuple(s for s in DEFAULT_SETTINGS if not backing or s.backing in backing)
    try:
        sets = read_check_sets(spec_dir)
        unknown = sorted(set(checks) - set(sets.rows()))
        if unknown:
            raise InputError(f"--check {unknown[0]} is not a check of {spec_dir / 'Poison.tla'}")
        shapes = matrix_shapes(matrix_path)
        setup = TlcSetup(java=find_java(), jar=verify_jar(default_jar()), spec_dir=spec_dir,
                         out_dir=out_dir, timeout=timeout)
        progress = (lambda _: None) if quiet else (lambda line: click.echo(line, err=True))
        with writing_to(out_dir):
            result = run_ablation(setup, sets, shapes, designs=designs, settings=settings,
                                  checks=tuple(checks) or None,
                                  jobs=jobs or default_tlc_jobs(), full=full, progress=progress)
    except (AblationError, MatrixError, SetupError) as err:
        raise InputError(str(err)) from None

    data = to_json(result)
    with writing_to(out_dir):
        (out_dir / "ablation.json").write_text(json.dumps(data, indent=1, ensure_ascii=False)
                                               + "\n")
    if as_json:
        json.dump(data, sys.stdout, indent=1, ensure_ascii=False)
        click.echo()
        return
    click.echo(render_table(result))
    click.echo("\nP" + ", P".join(f"{p.number} {p.key}" for p in PROPERTIES if p.kind != "derived")
               + f"; settings: {', '.join(s.name for s in settings)} (backing, removal "
               "failures, memory errors); n steps = transitions in TLC's counterexample "
               "(the shortest for P1-P4; for P7 the lasso TLC found).")
    click.echo("\nBaselines (every check on):")
    for d in result.designs:
        click.echo(f"  {baseline_line(result, d)}")
    click.echo("\nThe thread's claims:")
    for claim in CLAIMS:
        click.echo(f"- \"{claim.quote}\": {answer(result, claim)}")
    click.echo(f"\n{len(result.results)} TLC runs, {result.tlc_processes} TLC processes, "
               f"{result.seconds:.0f} s wall with {result.jobs} in parallel "
               f"({result.cpu_seconds:.0f} s CPU); JSON and counterexamples in {out_dir}")
