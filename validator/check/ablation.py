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
tlc_runner.check_runs, as for `poisoncheck check`.
"""

from __future__ import annotations

import itertools
import re
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from validator.check.matrix import DESIGNS, Run, load_matrix
from validator.model.properties import HOLDS, PROPERTIES, VIOLATED
from validator.tlc.runner import RunResult, TlcSetup, check_runs

# Property 5 only restates 1-4 for HWPoison; comparing it would repeat them.
COMPARED = tuple(p.key for p in PROPERTIES if p.kind != "derived")
SAFETY_KEYS = tuple(p.key for p in PROPERTIES if p.kind in ("invariant", "action"))
LIVENESS_KEYS = tuple(p.key for p in PROPERTIES if p.kind == "liveness")
# ConversionCompletes rests on these fairness conditions of Poison.tla.  A cost
# rule, not a proof: runs of checks their actions do not use skip liveness
# (such a check can still matter indirectly; docs/ablation.md names a case).
CONVERSION_FAIRNESS = ("ConversionZap", "ConversionDone")


class AblationError(Exception):
    """The ablation cannot go on; one line for the user."""


# ---------------------------------------------------------------------------
# What the spec says: the check sets and where each check is used.

@dataclass(frozen=True)
class CheckSets:
    upstream: tuple[str, ...]
    by_design: dict[str, tuple[str, ...]]   # the design's own checks, beyond upstream
    proposed: tuple[str, ...]
    sites: dict[str, frozenset[str]]         # check -> the Next actions that use it
    conversion: frozenset[str]               # checks the conversion's fair actions use

    def present(self, design: str) -> tuple[str, ...]:
        return self.upstream + self.by_design[design]

    def role(self, design: str, check: str) -> str:
        """present | proposed (added, since the design tests its condition elsewhere or
        checks at the same site) | untried (neither) | absent."""
        if check in self.present(design):
            return "present"
        if check not in self.proposed:
            return "absent"
        tested = {c.split(".")[1] for c in self.present(design)}
        sites = {c.split(".")[0] for c in self.present(design)}
        near = condition(check) in tested or check.split(".")[0] in sites
        return "proposed" if near else "untried"

    def rows(self) -> tuple[str, ...]:
        """Every check once, in the spec's order: upstream, per design, proposed."""
        seen = dict.fromkeys(self.upstream)
        for design in DESIGNS:
            seen.update(dict.fromkeys(self.by_design[design]))
        seen.update(dict.fromkeys(self.proposed))
        return tuple(seen)


_NAME = re.compile(r'"([a-z_]+\.[a-z_]+)"')
_CALL_WITH_CHECK = re.compile(r'\w+\(\s*"([a-z_]+\.[a-z_]+)"\s*\)')   # On("x"), FdRefuses("x")
_DEF = re.compile(r"^(\w+)\s*(?:\([^)]*\))?\s*==", re.M)
_WORD = re.compile(r"[A-Za-z_]\w*")
_CALL = r"\w+(?:\([^()]*\))?"
_DISJUNCTION = re.compile(rf"^(?:\\/\s*)?{_CALL}(?:\s*\\/\s*{_CALL})*$")


def _strip_comments(text: str) -> str:
    # Keep the line structure so that definitions still start a line.
    text = re.sub(r"\(\*.*?\*\)", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return re.sub(r"\\\*[^\n]*", "", text)


def _definitions(text: str) -> dict[str, str]:
    """Top-level operator definitions: name -> body (up to the next one)."""
    starts = list(_DEF.finditer(text))
    out = {}
    for here, after in zip(starts, starts[1:] + [None]):
        body = text[here.end():after.start() if after else len(text)]
        out[here.group(1)] = re.split(r"^-{4,}|^={4,}", body, flags=re.M)[0]
    return out


def _set_body(defs: dict[str, str], name: str, opening: str, closing: str) -> str:
    body = defs.get(name, "").strip()
    if not body.startswith(opening) or closing not in body:
        raise AblationError(f"Poison.tla: no definition `{name} == {opening}...{closing}`")
    return body[1:body.index(closing)]


class _Uses:
    """Which checks a definition uses, directly or through the helpers it calls."""

    def __init__(self, defs: dict[str, str]):
        self.defs, self.memo = defs, {}

    def refs(self, name: str) -> set[str]:
        return {w for w in _WORD.findall(self.defs[name]) if w in self.defs and w != name}

    def checks(self, name: str, seen: frozenset = frozenset()) -> set[str]:
        if name in self.memo:
            return self.memo[name]
        found = set(_CALL_WITH_CHECK.findall(self.defs[name]))
        for ref in self.refs(name) - seen:
            found |= self.checks(ref, seen | {name})
        self.memo[name] = found
        return found

    def primed(self, name: str) -> bool:
        return "'" in self.defs[name] or any(self.primed(r) for r in self.refs(name))

    def actions(self, name: str, top: bool = True) -> set[str]:
        """The actions `name` is made of: Next's disjuncts, with a definition that
        is only a disjunction of others (TdxSeptRemove) split into them."""
        if top or _DISJUNCTION.match(self.defs[name].strip()):
            return set().union(set(), *(self.actions(r, False) for r in self.refs(name)))
        return {name} if self.primed(name) else set()


def read_check_sets(spec_dir: Path) -> CheckSets:
    """Parse the check sets out of Poison.tla, and where each check is used."""
    path = spec_dir / "Poison.tla"
    try:
        defs = _definitions(_strip_comments(path.read_text()))
    except OSError as err:
        raise AblationError(f"{path}: cannot read: {err.strerror}") from None
    upstream = tuple(_NAME.findall(_set_body(defs, "UpstreamChecks", "{", "}")))
    proposed = tuple(_NAME.findall(_set_body(defs, "ProposedChecks", "{", "}")))
    # A record of sets: the record closes with "]", each set with "}".
    records = re.findall(r"(\w+)\s*\|->\s*\{([^}]*)\}", _set_body(defs, "DesignChecks", "[", "]"))
    by_design = {d: tuple(_NAME.findall(s)) for d, s in records}
    if set(by_design) != set(DESIGNS):
        raise AblationError(f"{path}: DesignChecks has designs {sorted(by_design)}, "
                            f"expected {sorted(DESIGNS)}")
    if not upstream or not proposed:
        raise AblationError(f"{path}: UpstreamChecks or ProposedChecks is empty")
    for name in ("Next",) + CONVERSION_FAIRNESS:
        if name not in defs:
            raise AblationError(f"{path}: no definition of {name}")
    uses = _Uses(defs)
    actions = uses.actions("Next")
    every = upstream + sum((by_design[d] for d in DESIGNS), ()) + proposed
    sites = {c: frozenset(a for a in actions if c in uses.checks(a)) for c in every}
    conversion = frozenset().union(*(uses.checks(n) for n in CONVERSION_FAIRNESS))
    return CheckSets(upstream, {d: by_design[d] for d in DESIGNS}, proposed, sites, conversion)


def condition(check: str) -> str:
    """What a check tests: `hwpoison` in `do_fault.hwpoison`."""
    return check.split(".")[1]


def same_path(sets: CheckSets, a: str, b: str) -> bool:
    """Two checks on one path: used by the same action, or testing the same condition."""
    return bool(sets.sites[a] & sets.sites[b]) or condition(a) == condition(b)


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
        if run.kind == "design":
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
# Comparing a variant with its baseline.

@dataclass
class Violation:
    key: str
    steps: int
    setting: str
    counterexample: str | None = None


@dataclass
class Diff:
    """What changed from the baseline, over the settings both were run on."""

    broken: dict[str, Violation] = field(default_factory=dict)   # holds -> violated (shortest)
    closed: dict[str, list[str]] = field(default_factory=dict)   # violated -> holds: settings
    still: dict[str, list[str]] = field(default_factory=dict)    # violated in both: settings
    shorter: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # (base, variant, setting)
    longer: dict[str, tuple[int, int, str]] = field(default_factory=dict)
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
                    if old is None or abs(v.steps - b.steps) > abs(old[1] - old[0]):
                        into[key] = (b.steps, v.steps, setting)
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


def run_ablation(setup: TlcSetup, sets: CheckSets, shapes: dict[str, Shape],
                 designs: tuple[str, ...] = DESIGNS,
                 settings: tuple[Setting, ...] = DEFAULT_SETTINGS,
                 checks: tuple[str, ...] | None = None, jobs: int = 2, liveness: bool = True,
                 pairs: bool = True, full: bool = False,
                 progress: Progress = lambda _: None) -> Ablation:
    """Every baseline and the first setting's variants; then each later setting
    with only the variants it can still tell something about; then pairs.
    `full` drops every shortcut: all variants everywhere, proposed checks in
    every design, liveness in every run, all pairs of redundant checks."""
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
        found = sets.role(design, check)
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
