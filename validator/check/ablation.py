"""Guard ablation: which named checks of spec/Poison.tla carry the load, per design.

For every design TLC checks a baseline (nothing disabled), one run per check
the design performs with that check disabled, and one run per proposed check
with it added.  Compared with the baseline, a present check is

  load-bearing  a property that holds in the baseline breaks without it;
  shortens      nothing new breaks, but a property the design already violates
                is violated in fewer steps (the check only delays it);
  redundant     nothing changes; "masked by X" when disabling it together with
                X (a check on the same path) breaks what neither breaks alone.

A proposed check closes a violation, delays or hastens it, breaks a property
that held (e.g. liveness), or adds nothing.

Settings (backing + fault budgets) run in order, cheapest first.  To keep
the default within budget (all off with `full`): a check already load-bearing
is not run again on later settings (one counterexample is the proof); a
proposed check is tried only in designs that test its condition elsewhere
(or check at its site: `tdx_buggy_shutdown.flag_first` where `.wbinvd` is),
and not rerun where it already broke something and the baseline has nothing
to close; ConversionCompletes is checked only for checks its fair actions
use; pairs are tried only on one path.  All TLC work goes through
check.runner.check_runs, as for `poisoncheck check`.  The checks, where each
is used and which ones the conversion's fair actions use come from
validator.model (CHECKS), as the spec writes them.

This module plans and runs; ablation_outcomes compares and classifies,
ablation_render, claims and ablation_output turn the result into text and JSON.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from validator.check.ablation_outcomes import (LIVENESS_KEYS, LOAD_BEARING, Outcome, classify,
                                               compare, masking, pair_candidates, role_of)
from validator.check.matrix import Run, load_matrix
from validator.model import CHECKS, DESIGNS, CheckSets
from validator.model.properties import VIOLATED
from validator.check.results import RunResult
from validator.check.runner import check_runs
from validator.tlc.setup import TlcSetup


class AblationError(Exception):
    """The ablation cannot go on; one line for the user."""


def select_designs(values: tuple[str, ...]) -> tuple[str, ...]:
    """The designs --design names, any case, in the spec's order ('all' or none: every one)."""
    if not values or "all" in values:
        return DESIGNS
    by_lower = {d.lower(): d for d in DESIGNS}
    unknown = [v for v in values if v.lower() not in by_lower]
    if unknown:
        raise AblationError(f"--design {unknown[0]} is not one of {', '.join(DESIGNS)} or all")
    return tuple(d for d in DESIGNS if d.lower() in {v.lower() for v in values})


def select_checks(values: tuple[str, ...], spec_dir: Path,
                  sets: CheckSets = CHECKS) -> tuple[str, ...] | None:
    """The checks --check names (None: every one); spec_dir only names the spec in the error."""
    unknown = sorted(set(values) - set(sets.rows()))
    if unknown:
        raise AblationError(f"--check {unknown[0]} is not a check of {spec_dir / 'Poison.tla'}")
    return tuple(values) or None


# ---------------------------------------------------------------------------
# The plan: settings x variants, each one Run for check_runs.

@dataclass(frozen=True)
class Setting:
    backing: str
    remove_failures: int
    mem_errors: int

    @property
    def name(self) -> str:
        return f"{self.backing}-f{self.remove_failures}m{self.mem_errors}"


# One removal failure and one memory error, so every check has something to
# stop: the failure makes the design react, the memory error poisons a page in
# every design (the budgets are maxima, so fewer faults are covered too).
# Buddy first: it is about ten times cheaper than HugeTLB.
DEFAULT_SETTINGS = (Setting("buddy", 1, 1), Setting("hugetlb", 1, 1))


def settings_for(backings: tuple[str, ...]) -> tuple[Setting, ...]:
    """The settings of the named backings (all defaults without any): a backing without a
    default setting (thp) gets the same fault budgets."""
    if not backings:
        return DEFAULT_SETTINGS
    defaults = {s.backing: s for s in DEFAULT_SETTINGS}
    return tuple(defaults.get(b, Setting(b, 1, 1)) for b in dict.fromkeys(backings))


@dataclass(frozen=True)
class Variant:
    design: str
    disabled: tuple[str, ...] = ()
    added: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        if self.added:
            return "add." + "+".join(self.added)
        return "off." + "+".join(self.disabled) if self.disabled else "base"


@dataclass(frozen=True)
class AblationRun(Run):
    """A Run whose liveness properties can be left out (check_runs asks `applies`)."""

    liveness: bool = True

    def applies(self, key: str) -> bool:
        return (self.liveness or key not in LIVENESS_KEYS) and super().applies(key)


@dataclass(frozen=True)
class Shape:
    """The matrix's default constants for one backing."""

    folios: int
    pages_per_folio: int
    liveness_folios: int


def matrix_shapes(matrix_path: Path) -> dict[str, Shape]:
    """Folios and folio size per backing, as the matrix's design runs use them."""
    shapes: dict[str, Shape] = {}
    for run in load_matrix(matrix_path):
        if run.kind == "design" and not run.deep:     # the deep profile's are larger
            shapes.setdefault(run.backing, Shape(run.folios, run.pages_per_folio,
                                                 run.liveness_folios))
    return shapes


def make_run(variant: Variant, setting: Setting, shape: Shape, liveness: bool) -> AblationRun:
    return AblationRun(
        name=f"{variant.design}.{setting.name}.{variant.label}", design=variant.design,
        backing=setting.backing, folios=shape.folios, pages_per_folio=shape.pages_per_folio,
        liveness_folios=shape.liveness_folios, remove_failures=setting.remove_failures,
        mem_errors=setting.mem_errors, disabled=variant.disabled, added=variant.added,
        kind="design" if variant.label == "base" else "variant", liveness=liveness)




# ---------------------------------------------------------------------------
# Running it.

@dataclass
class Ablation:
    designs: tuple[str, ...]
    settings: tuple[Setting, ...]
    sets: CheckSets
    outcomes: dict[tuple[str, str], Outcome]
    baselines: dict[str, dict[str, RunResult]]          # design -> setting name -> result
    results: list[RunResult]
    seconds: float                                      # wall clock
    cpu_seconds: float                                  # of the TLC processes
    jobs: int
    checks: tuple[str, ...]                             # the rows

    @property
    def tlc_processes(self) -> int:
        return sum(r.tlc_runs for r in self.results)

    def outcome(self, design: str, check: str) -> Outcome | None:
        return self.outcomes.get((design, check))


Progress = Callable[[str], None]


def _run_all(runs: list[AblationRun], setup: TlcSetup, jobs: int, progress: Progress,
             stage: str) -> list[RunResult]:
    if not runs:
        return []
    progress(f"{stage}: {len(runs)} TLC runs, {jobs} in parallel")
    results, errors = check_runs(runs, setup, jobs, lambda line: progress(f"{stage} {line}"))
    if errors:
        more = f" ({len(errors) - 1} more failed)" if len(errors) > 1 else ""
        raise AblationError(errors[0] + more)
    return results


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_ablation(setup: TlcSetup, shapes: dict[str, Shape], designs: tuple[str, ...] = DESIGNS,
                 settings: tuple[Setting, ...] = DEFAULT_SETTINGS,
                 checks: tuple[str, ...] | None = None, jobs: int = 2, liveness: bool = True,
                 pairs: bool = True, full: bool = False,
                 progress: Progress = lambda _: None, sets: CheckSets = CHECKS) -> Ablation:
    """Every baseline and the first setting's variants; then each later setting
    with only the variants it can still tell something about; then pairs.
    `full` drops every shortcut: all variants everywhere, proposed checks in
    every design, liveness in every run, all pairs of redundant checks."""
    if not settings:
        raise AblationError("no setting to run (name a backing)")
    for s in settings:
        if s.backing not in shapes:
            raise AblationError(f"the matrix has no design run with backing {s.backing}")
    rows = tuple(c for c in sets.rows() if checks is None or c in checks)
    start, cpu = time.monotonic(), _children_cpu()
    got: dict[tuple[Variant, str], RunResult] = {}
    every: list[RunResult] = []

    def run(batch: list[tuple[Variant, Setting]], stage: str) -> None:
        planned = {}
        for v, s in batch:
            touched = set(v.disabled) | set(v.added)
            live = liveness and (full or not touched or bool(touched & sets.conversion))
            planned[make_run(v, s, shapes[s.backing], live)] = (v, s.name)
        results = _run_all(list(planned), setup, jobs, progress, stage)
        every.extend(results)
        for r in results:
            got[planned[r.run]] = r

    def results_of(v: Variant) -> dict[str, RunResult]:
        return {s.name: got[(v, s.name)] for s in settings if (v, s.name) in got}

    def role(design: str, check: str) -> str:
        found = role_of(sets, design, check)
        return "proposed" if full and found == "untried" else found

    def variant(design: str, check: str) -> Variant:
        if role(design, check) == "present":
            return Variant(design, disabled=(check,))
        return Variant(design, added=(check,))

    def outcome(design: str, check: str) -> Outcome:
        found = role(design, check)
        if found in ("absent", "untried"):
            return classify(design, check, found, None)
        diff = compare(results_of(Variant(design)), results_of(variant(design, check)))
        return classify(design, check, found, diff)

    def worth(design: str, check: str, s: Setting) -> bool:
        """Can this setting still change the check's verdict?"""
        if full:
            return True
        so_far = outcome(design, check)
        if so_far.role == "present":   # one counterexample proves load-bearing
            return so_far.status != LOAD_BEARING
        # A proposed check that already broke something can only add more
        # breaks where the baseline has nothing to close, delay or hasten.
        base = got[(Variant(design), s.name)]
        has_violation = any(v.verdict == VIOLATED for v in base.verdicts.values())
        return not so_far.diff.broken or has_violation

    tried = {d: [c for c in rows if role(d, c) in ("present", "proposed")] for d in designs}
    first = [(Variant(d), s) for d in designs for s in settings]
    first += [(variant(d, c), settings[0]) for d in designs for c in tried[d]]
    run(first, f"baselines + {settings[0].name}")
    for s in settings[1:]:
        run([(variant(d, c), s) for d in designs for c in tried[d] if worth(d, c, s)], s.name)

    outcomes = {(d, c): outcome(d, c) for d in designs for c in rows}
    if pairs:
        wanted = {d: pair_candidates(sets, [outcomes[(d, c)] for c in rows], full)
                  for d in designs}
        singles = {d: {c: outcomes[(d, c)].diff for c in rows if outcomes[(d, c)].role == "present"}
                   for d in designs}

        def masked(d: str, pair: tuple[str, str]) -> bool:
            diff = compare(results_of(Variant(d)), results_of(Variant(d, disabled=pair)))
            return bool(masking(singles[d], {pair: diff}))

        for s in settings:   # a pair that broke something needs no further setting
            run([(Variant(d, disabled=p), s) for d in designs for p in wanted[d]
                 if full or not masked(d, p)], f"pairs {s.name}")
        for d in designs:
            for a, b in wanted[d]:
                outcomes[(d, a)].pairs_tried.append(b)
                outcomes[(d, b)].pairs_tried.append(a)
            diffs = {p: compare(results_of(Variant(d)), results_of(Variant(d, disabled=p)))
                     for p in wanted[d]}
            for check, partners in masking(singles[d], diffs).items():
                outcomes[(d, check)].masked_by = partners

    baselines = {d: results_of(Variant(d)) for d in designs}
    return Ablation(tuple(designs), tuple(settings), sets, outcomes, baselines, every,
                    time.monotonic() - start, _children_cpu() - cpu, jobs, rows)

