"""The trace corpus: traces/ with its manifest, and the check matrix's counterexamples.

Every trace in traces/ has an expected verdict per design (traces/manifest.toml).
Every safety counterexample `poisoncheck check` found is rendered as an ftrace
log and must be rejected by the run's own configuration (a finite trace cannot
show a liveness counterexample, so those are listed as skipped).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from validator import model
from validator.check import readback
from validator.synth import ftrace_text as render
from validator.ftrace import iter_events
from validator.replay.input import read_file
from validator.replay.engine import replay
from validator.replay.verdict import Verdict


class CorpusError(Exception):
    """The manifest or a counterexample file is wrong (file named)."""


@dataclass
class Outcome:
    trace: str
    design: str
    expected: str
    got: str
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.expected == self.got or (self.expected == "rejected"
                                              and self.got.startswith("violation"))


def verdict_text(v: Verdict) -> str:
    if v.verdict != "violation":
        return v.verdict
    return f"violation:{v.property if v.kind == 'property' else 'step'}@{v.line}"


def load_manifest(path: Path) -> list[dict]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise CorpusError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as err:
        raise CorpusError(f"{path}: not valid TOML: {err}") from None
    entries = data.get("trace", [])
    for i, entry in enumerate(entries, 1):
        if not isinstance(entry.get("file"), str) or not isinstance(entry.get("expect"), dict):
            raise CorpusError(f"{path}: trace #{i} needs file and expect")
        unknown = set(entry["expect"]) - set(model.DESIGNS)
        if unknown:
            raise CorpusError(f"{path}: {entry['file']}: unknown design(s) {sorted(unknown)}")
    return entries


def check_traces(traces_dir: Path) -> list[Outcome]:
    outcomes = []
    for entry in load_manifest(traces_dir / "manifest.toml"):
        path = traces_dir / entry["file"]
        if not path.is_file():
            raise CorpusError(f"{traces_dir / 'manifest.toml'}: {entry['file']}: no such trace")
        for design, expected in entry["expect"].items():
            got = verdict_text(replay(list(iter_events(read_file(path))), design))
            outcomes.append(Outcome(entry["file"], design, expected, got))
    return outcomes


def _config(constants: dict) -> model.Config:
    return model.Config(constants["Design"], constants["Backing"], folios=constants["Folios"],
                        pages_per_folio=constants["PagesPerFolio"],
                        max_remove_failures=constants["MaxRemoveFailures"],
                        max_mem_errors=constants["MaxMemErrors"],
                        disabled=frozenset(constants["Disabled"]),
                        added=frozenset(constants["Added"]),
                        features=frozenset(constants.get("Features", model.DEFAULT_FEATURES)))


HIDDEN_HOST_STEPS = frozenset({"HostGup", "HostUnpin", "HostUnmap"})


def counterexample_files(check_dir: Path) -> list[Path]:
    """The counterexamples the check's results.json lists (every one must be there), or
    without one (an older check folder) the RUN/PROPERTY.json files of the folder."""
    results = check_dir / "results.json"
    if not results.exists():
        return sorted(check_dir.glob("*/*.json"))
    paths = []
    for run in readback.results(results, complete=False)["runs"]:
        for key, verdict in run["verdicts"].items():
            if verdict.get("counterexample"):
                path = Path(verdict["counterexample"])
                if not path.is_file():
                    raise CorpusError(f"{results}: {run['name']}: {key}: counterexample "
                                      f"{path} is missing; run the check again")
                paths.append(path)
    return paths


def render_counterexamples(check_dir: Path, out_dir: Path) -> list[Outcome]:
    """Render every safety counterexample under check_dir and replay it."""
    outcomes = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in counterexample_files(check_dir):
        data = readback.counterexample(path)
        name = f"{data['run']}--{data['property']}"
        if data["violation"] == "temporal":
            outcomes.append(Outcome(name, data["constants"]["Design"], "rejected", "skipped",
                                    "a liveness counterexample (a lasso) has no finite trace"))
            continue
        cfg = _config(data["constants"])
        states = [(s["action"], s["state"]) for s in data["trace"]]
        try:
            text = render.render(cfg, render.steps_from_states(cfg, states))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
            # The schema holds, but the states are not the run's (edited by hand?)
            raise CorpusError(f"{path}: trace: not states of the run's constants "
                              f"({type(err).__name__}: {err})") from None
        trace = readback.inside(out_dir, f"{name}.trace")
        trace.write_text(text)
        v = replay(list(iter_events(read_file(trace))), cfg.design, cfg.added, cfg.disabled,
                   features=cfg.features)
        expected, note = "rejected", ""
        # A violating host step no event shows (a GUP pin) cannot be judged from a capture:
        # the replay composes such steps only before an observed event, so the trace must
        # be accepted, and the table says why.
        if states[-1][0] in HIDDEN_HOST_STEPS and text == render.render(
                cfg, render.steps_from_states(cfg, states[:-1])):
            expected = "accepted"
            note = f"the violating step ({states[-1][0]}) leaves no event a capture shows"
        if v.verdict == "violation" and v.kind == "property" and v.property != data["property"]:
            note = f"TLC's property was {data['property']}"
        outcomes.append(Outcome(name, cfg.design, expected, verdict_text(v), note))
    return outcomes
