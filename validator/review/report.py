"""The design-review report: what `poisoncheck report` gathers, in one structure.

Everything is computed from the last `poisoncheck check` (build/check), the
trace corpus (traces/) and the mirror of the spec; nothing is written by hand.
Rendering (text, Markdown, HTML) lives in report_render.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from validator.check import readback
from validator.review import costs
from validator.review import diagram
from validator import model
from validator.synth import ftrace_text as render
from validator.review.corpus import load_manifest, verdict_text
from validator.ftrace import iter_events
from validator.replay.input import read_file
from validator.model.properties import PROPERTIES
from validator.replay.engine import replay


class ReportError(Exception):
    """A missing or unreadable input (file named)."""


@dataclass
class CexStep:
    number: int
    action: str
    kernel: str
    changes: list[str]


@dataclass
class Counterexample:
    run: str
    design: str
    kind: str                 # design | mutant | variant
    property: str
    liveness: bool
    steps: list[CexStep]
    loop_to: int | None
    ftrace: str | None        # the behaviour as a kernel trace (safety only)


@dataclass
class DesignRow:
    design: str
    cells: dict[str, str]     # property key -> holds | VIOLATED (n steps) | -
    runs: int
    states: int
    seconds: float


@dataclass
class TraceCoverage:
    trace: str
    design: str
    verdict: str
    actions: list[str]
    refused: list[str]


@dataclass
class Report:
    designs: list[DesignRow]
    runs: list[dict]
    costs: list[costs.Cost]
    counterexamples: list[Counterexample]
    diagrams: dict[str, str]                  # design -> DOT
    diagram_edges: dict[str, list]            # design -> [(from, to, [actions])]
    coverage: list[TraceCoverage]
    never_taken: dict[str, list[str]]         # design -> actions no accepted trace took
    never_refused: dict[str, list[str]]       # design -> checks no trace saw refuse
    ablation: dict | None = None
    notes: list[str] = field(default_factory=list)


def _load_results(check_dir: Path) -> dict:
    path = check_dir / "results.json"
    if not path.exists():
        raise ReportError(f"{path}: no check results; run `make check` (or poisoncheck check) "
                          f"first")
    return readback.results(path)


UPSTREAM = "Upstream"     # runs named Upstream-*: the kernel as merged (NoHold, no conversion)


def _row_of(run: dict) -> str:
    return UPSTREAM if run["name"].startswith(UPSTREAM) else run["constants"]["Design"]


def _design_rows(runs: list[dict]) -> list[DesignRow]:
    rows = []
    for design in (UPSTREAM,) + model.DESIGNS:
        mine = [r for r in runs if _row_of(r) == design and r["kind"] == "design"]
        if not mine:
            continue
        cells = {}
        for prop in PROPERTIES:
            verdicts = [r["verdicts"][prop.key] for r in mine]
            violated = [v["steps"] for v in verdicts if v["verdict"] == "violated"]
            if violated:
                cells[prop.key] = f"VIOLATED ({min(violated)} steps)"
            elif all(v["verdict"] == "-" for v in verdicts):
                cells[prop.key] = "-"
            else:
                cells[prop.key] = "holds"
        rows.append(DesignRow(design, cells, len(mine), sum(r["distinct_states"] for r in mine),
                              sum(r["seconds"] for r in mine)))
    return rows


def _changes(before: dict, after: dict) -> list[str]:
    out = []
    for var, value in after.items():
        old = before.get(var)
        if old == value:
            continue
        if isinstance(value, dict) and isinstance(old, dict):
            for key, v in value.items():
                if old.get(key) != v:
                    out.append(f"{var}[{key}]: {_short(old.get(key))} -> {_short(v)}")
        else:
            out.append(f"{var}: {_short(old)} -> {_short(value)}")
    return out


def _short(value) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, dict):
        return "[" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "]"
    if isinstance(value, list):
        return "<<" + ", ".join(_short(v) for v in value) + ">>"
    return str(value)


def _counterexample(path: Path, kind: str) -> Counterexample:
    data = readback.counterexample(path)
    try:
        return _steps(data, kind)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        # The schema holds, but the states are not the run's (edited by hand?)
        raise ReportError(f"{path}: trace: not states of the run's constants "
                          f"({type(err).__name__}: {err})") from None


def _steps(data: dict, kind: str) -> Counterexample:
    trace = data["trace"]
    steps = [CexStep(1, "Init", "-", [])]
    for before, after in zip(trace, trace[1:]):
        steps.append(CexStep(after["n"], after["action"],
                          model.KERNEL_FUNCTION.get(after["action"], "?"),
                          _changes(before["state"], after["state"])))
    c = data["constants"]
    ftrace = None
    if data["violation"] != "temporal":
        cfg = model.Config(c["Design"], c["Backing"], folios=c["Folios"],
                           pages_per_folio=c["PagesPerFolio"],
                           max_remove_failures=c["MaxRemoveFailures"],
                           max_mem_errors=c["MaxMemErrors"], disabled=frozenset(c["Disabled"]),
                           added=frozenset(c["Added"]),
                           features=frozenset(c.get("Features", model.DEFAULT_FEATURES)))
        ftrace = render.render(cfg, render.steps_from_states(
            cfg, [(s["action"], s["state"]) for s in trace]))
    return Counterexample(data["run"], c["Design"], kind, data["property"],
                          data["violation"] == "temporal", steps, data.get("loop_to"), ftrace)


def _coverage(traces_dir: Path) -> tuple[list[TraceCoverage], dict, dict]:
    rows: list[TraceCoverage] = []
    taken = {d: set() for d in model.DESIGNS}
    refused = {d: set() for d in model.DESIGNS}
    for entry in load_manifest(traces_dir / "manifest.toml"):
        for design in entry["expect"]:
            events = list(iter_events(read_file(traces_dir / entry["file"])))
            v = replay(events, design, coverage=True)
            cov = v.coverage
            rows.append(TraceCoverage(entry["file"], design, verdict_text(v), cov["actions"],
                                      cov["checks_refused"]))
            if v.verdict == "accepted":
                taken[design].update(cov["actions"])
                refused[design].update(cov["checks_refused"])
    never_taken = {d: sorted(set(model.ACTION_NAMES) - taken[d]) for d in model.DESIGNS}
    present = lambda d: sorted(  # noqa: E731
        (model.UPSTREAM_CHECKS | model.DESIGN_CHECKS[d]) - refused[d])
    return rows, never_taken, {d: present(d) for d in model.DESIGNS}


def collect(check_dir: Path, traces_dir: Path, ablation_path: Path | None = None) -> Report:
    results = _load_results(check_dir)
    runs = results["runs"]
    cexes = []
    for run in runs:
        for key, verdict in run["verdicts"].items():
            if verdict.get("counterexample"):
                path = Path(verdict["counterexample"])
                if not path.is_file():
                    raise ReportError(f"{path}: counterexample missing; run `make check` again")
                cexes.append(_counterexample(path, run["kind"]))
    coverage, never_taken, never_refused = _coverage(traces_dir)
    ablation = None
    if ablation_path is not None and ablation_path.is_file():
        ablation = readback.load_json(ablation_path, "ablation.json of poisoncheck ablate")
        if not isinstance(ablation, dict):
            raise ReportError(f"{ablation_path}: not an ablation.json of poisoncheck ablate")
    edges = {d: diagram.folio_edges(d) for d in model.DESIGNS}
    grouped = {}
    for d, es in edges.items():
        by_pair: dict = {}
        for a, name, b in sorted(es):
            by_pair.setdefault((a, b), []).append(name)
        grouped[d] = [(a, b, names) for (a, b), names in sorted(by_pair.items())]
    report = Report(_design_rows(runs), runs, costs.design_costs(), cexes,
                    {d: diagram.to_dot(d, es) for d, es in edges.items()}, grouped,
                    coverage, never_taken, never_refused, ablation)
    if results.get("mismatches"):
        report.notes.append(f"{len(results['mismatches'])} verdict(s) of the last check differ "
                            f"from the matrix: {'; '.join(results['mismatches'][:3])}")
    return report
