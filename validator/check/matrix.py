"""Load spec/matrix.toml: every TLC run with its constants and expected verdicts."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from validator.model import ALL_CHECKS, ALL_FEATURES, BACKINGS, DEFAULT_FEATURES, DESIGNS
from validator.model.properties import (BY_KEY, HOLDS, NOT_APPLICABLE, NOT_ESTABLISHED, PROPERTIES,
                                        VERDICTS)

KINDS = ("design", "mutant", "variant")
_CHECK_NAME = re.compile(r"^[a-z_]+\.[a-z_]+$")
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


class MatrixError(Exception):
    """The matrix file is wrong; the message names the file and the run."""


@dataclass(frozen=True)
class Run:
    name: str
    design: str
    backing: str
    folios: int
    pages_per_folio: int
    liveness_folios: int
    remove_failures: int
    mem_errors: int
    disabled: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    features: tuple[str, ...] = tuple(sorted(DEFAULT_FEATURES))
    kind: str = "design"
    note: str = ""
    deep: bool = False          # left to `make check-deep` (too slow for `make check`)
    simulation: bool = False    # only simulated (check --simulate): BFS cannot finish it
    expect: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    # property -> why the expected verdict (the matrix's [why] table or the run's own)
    why: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def bounds(self) -> str:
        """The constants a verdict of this run was checked at, in words."""
        pages = "" if self.pages_per_folio == 1 else f" of {self.pages_per_folio} pages"
        extra = sorted(set(self.features) - {"in_place_conversion"})
        conversion = "" if "in_place_conversion" in self.features else ", no in-place conversion"
        return (f"{self.folios} {self.backing} folio(s){pages} ({self.liveness_folios} for "
                f"liveness), {self.remove_failures} removal failure(s), {self.mem_errors} memory "
                f"error(s){conversion}" + (f", {', '.join(extra)}" if extra else ""))

    @property
    def faults(self) -> bool:
        return self.remove_failures > 0 or self.mem_errors > 0

    def applies(self, key: str) -> bool:
        """Is property `key` meaningful for this run?"""
        if key == "ConversionNeedsNoPoisonCheck":
            return self.design == "HWPoison"
        if key == "NoLeakWithoutFaults":
            return not self.faults
        return True

    def constants(self) -> dict:
        return {"Design": self.design, "Backing": self.backing, "Folios": self.folios,
                "FoliosForLiveness": self.liveness_folios,
                "PagesPerFolio": self.pages_per_folio,
                "MaxRemoveFailures": self.remove_failures, "MaxMemErrors": self.mem_errors,
                "Disabled": list(self.disabled), "Added": list(self.added),
                "Features": list(self.features)}


def _int(raw: dict, key: str, where: str, low: int, high: int) -> int:
    value = raw[key]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise MatrixError(f"{where}: {key} must be an integer in {low}..{high}, not {value!r}")
    return value


def _names(raw: dict, key: str, where: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and _CHECK_NAME.fullmatch(v)
                                              for v in value):
        raise MatrixError(f"{where}: {key} must be a list of check names like "
                          f"\"gmem_get_pfn.hwpoison\", not {value!r}")
    return tuple(value)


def _features(raw: dict, where: str) -> tuple[str, ...]:
    value = raw.get("features", sorted(DEFAULT_FEATURES))
    if not isinstance(value, list) or not set(value) <= ALL_FEATURES:
        raise MatrixError(f"{where}: features must be a list of {', '.join(sorted(ALL_FEATURES))}")
    return tuple(sorted(value))


def _run(raw: dict, defaults: dict, shared: dict, where: str) -> Run:
    merged = {**defaults, **raw}
    known = {"name", "design", "backing", "folios", "liveness_folios", "pages_per_folio",
             "remove_failures",
             "mem_errors", "disabled", "added", "features", "kind", "note", "deep", "expect",
             "why", "simulation"}
    unknown = set(merged) - known
    if unknown:
        raise MatrixError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    for key in ("name", "design", "backing", "expect"):
        if key not in merged:
            raise MatrixError(f"{where}: missing {key}")
    name = merged["name"]
    if not isinstance(name, str) or not _RUN_NAME.fullmatch(name):
        raise MatrixError(f"{where}: name {name!r} must be letters, digits, '-', '_', '.', '+'")
    where = f"{where} ({name})"
    if merged["design"] not in DESIGNS:
        raise MatrixError(f"{where}: design {merged['design']!r} is not one of {', '.join(DESIGNS)}")
    if merged["backing"] not in BACKINGS:
        raise MatrixError(f"{where}: backing {merged['backing']!r} is not buddy, hugetlb or thp")
    kind = merged.get("kind", "design")
    if kind not in KINDS:
        raise MatrixError(f"{where}: kind {kind!r} is not design, mutant or variant")
    pages = merged.get("pages_per_folio", {"buddy": 1, "hugetlb": 2, "thp": 2})
    if isinstance(pages, dict):
        pages = pages.get(merged["backing"], 1)
    merged["pages_per_folio"] = pages
    # Liveness runs without symmetry: two folios cost HugeTLB and THP runs ten times more.
    live = merged.get("liveness_folios", {"buddy": 2, "hugetlb": 1, "thp": 1})
    if isinstance(live, dict):
        live = live.get(merged["backing"], 1)
    merged["liveness_folios"] = live
    for flag in ("deep", "simulation"):
        if not isinstance(merged.get(flag, False), bool):
            raise MatrixError(f"{where}: {flag} must be true or false")
    for key, default in (("folios", 2), ("remove_failures", 0),
                         ("mem_errors", 0)):
        merged.setdefault(key, default)
    run = Run(
        name=name, design=merged["design"], backing=merged["backing"],
        folios=_int(merged, "folios", where, 1, 4),
        liveness_folios=_int(merged, "liveness_folios", where, 1, 4),
        pages_per_folio=_int(merged, "pages_per_folio", where, 1, 8),
        remove_failures=_int(merged, "remove_failures", where, 0, 3),
        mem_errors=_int(merged, "mem_errors", where, 0, 3),
        disabled=_names(merged, "disabled", where), added=_names(merged, "added", where),
        features=_features(merged, where), kind=kind, note=str(merged.get("note", "")),
        deep=merged.get("deep", False), simulation=merged.get("simulation", False),
        expect=_expect(merged["expect"], where))
    own = merged.get("why", {})
    if not isinstance(own, dict) or not all(isinstance(v, str) for v in own.values()) \
            or not set(own) <= set(BY_KEY):
        raise MatrixError(f"{where}: why must be a table of property = \"reason\"")
    run = replace(run, why={p.key: _reason(run, p.key, own, shared) for p in PROPERTIES})
    if run.backing == "buddy" and run.pages_per_folio != 1:
        raise MatrixError(f"{where}: buddy folios have one page (upstream guest_memfd is order-0)")
    if kind == "mutant" and not run.disabled:
        raise MatrixError(f"{where}: a mutant must disable at least one check")
    if kind == "variant" and not (run.disabled or run.added):
        raise MatrixError(f"{where}: a variant must disable or add at least one check")
    for prop in PROPERTIES:
        wanted = run.expect[prop.key]
        if not run.applies(prop.key) and wanted != NOT_APPLICABLE:
            raise MatrixError(f"{where}: {prop.key} does not apply to this run; expect \"-\"")
        if run.applies(prop.key) and wanted == NOT_APPLICABLE:
            raise MatrixError(f"{where}: {prop.key} applies to this run; expect holds or violated")
        if wanted == NOT_ESTABLISHED and not (run.deep or run.simulation):
            raise MatrixError(f"{where}: {prop.key}: only a deep or simulated run may be "
                              f"\"not established\"")
        if wanted == HOLDS and run.simulation:
            raise MatrixError(f"{where}: {prop.key}: a simulated run never establishes holds")
    return run


def _reason(run: Run, key: str, own: dict, shared: dict) -> str:
    """The reason for run's expected verdict of `key`: the run's own, else the most
    specific key of the [why] table: "nofault." (a run without faults), "nofail." (no
    removal failure), then "Design.backing.", "Design.", "backing.", none ("" when there
    is none; a test requires one)."""
    verdict = run.expect[key]
    if verdict == NOT_APPLICABLE:
        return ""
    if key in own:
        return own[key]
    quiet = ("nofault.",) if not run.faults else ()
    quiet += ("nofail.",) if run.remove_failures == 0 else ()
    for prefix in (*quiet, f"{run.design}.{run.backing}.", f"{run.design}.", f"{run.backing}.",
                   ""):
        reason = shared.get(f"{prefix}{key}.{verdict}")
        if reason is not None:
            return reason
    return ""


def _expect(raw, where: str) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise MatrixError(f"{where}: expect must be a table of property = verdict")
    unknown = set(raw) - set(BY_KEY)
    if unknown:
        raise MatrixError(f"{where}: unknown propert(ies) in expect: {', '.join(sorted(unknown))}")
    missing = [p.key for p in PROPERTIES if p.key not in raw]
    if missing:
        raise MatrixError(f"{where}: expect has no verdict for {', '.join(missing)}")
    for key, verdict in raw.items():
        if verdict not in VERDICTS:
            raise MatrixError(f"{where}: expect.{key} = {verdict!r}; use holds, violated, "
                              f"\"not established\" or \"-\"")
    return dict(raw)


def load_matrix(path: Path) -> list[Run]:
    """Read and validate the matrix; raise MatrixError with file and run on any fault."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise MatrixError(f"{path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise MatrixError(f"{path}: not valid TOML: {err}") from None
    defaults = data.get("defaults", {})
    shared = data.get("why", {})
    if not isinstance(shared, dict) or not all(isinstance(v, str) for v in shared.values()):
        raise MatrixError(f"{path}: [why] must map \"[Design.][backing.]Property.verdict\" "
                          f"to a reason")
    for key in shared:
        parts = key.split(".")
        if len(parts) < 2 or parts[-2] not in BY_KEY or parts[-1] not in VERDICTS:
            raise MatrixError(f"{path}: [why] key {key!r} does not end in a property and a "
                              f"verdict (\"RefcountSound.holds\")")
    runs_raw = data.get("run")
    if not isinstance(runs_raw, list) or not runs_raw:
        raise MatrixError(f"{path}: no [[run]] entries")
    runs, seen = [], set()
    for index, raw in enumerate(runs_raw, 1):
        run = _run(raw, defaults, shared, f"{path}: run #{index}")
        if run.name in seen:
            raise MatrixError(f"{path}: run name {run.name!r} appears twice")
        seen.add(run.name)
        runs.append(run)
    return runs


def select_runs(runs: list[Run], patterns: tuple[str, ...], deep: bool = True,
                simulate: bool = False) -> list[Run]:
    """The runs --only names (all without it); without `deep`, not the deep ones.  A
    pattern that is a run's name selects that run alone.  Runs marked `simulation` are
    for `simulate` only; without patterns, `simulate` picks them and the deep runs whose
    verdicts are not established."""
    if not simulate:
        runs = [r for r in runs if not r.simulation]
    elif not patterns:
        chosen = [r for r in runs if r.simulation or NOT_ESTABLISHED in r.expect.values()]
        if not chosen:
            raise MatrixError("no run is marked `simulation` or has a verdict not established: "
                              "name the runs to simulate with --only")
        return chosen
    if not deep:
        runs = [r for r in runs if not r.deep]
    if not patterns:
        return runs
    names = {r.name for r in runs}

    def picks(name: str, pattern: str) -> bool:
        # A run's exact name selects that run only; else a glob, else a substring.
        if pattern in names:
            return name == pattern
        return fnmatch.fnmatchcase(name, pattern) or pattern in name

    chosen = [r for r in runs if any(picks(r.name, p) for p in patterns)]
    if not chosen:
        raise MatrixError(f"--only {' '.join(patterns)} matches no run of the matrix")
    return chosen


def check_names_known(runs: list[Run], matrix_path: Path) -> None:
    """Every check a run disables or adds is one of the spec's (validator.model's)."""
    for run in runs:
        unknown = set(run.disabled + run.added) - ALL_CHECKS
        if unknown:
            raise MatrixError(f"{matrix_path}: run {run.name}: unknown check(s) "
                              f"{', '.join(sorted(unknown))} (see spec/Poison.tla)")


__all__ = ["Run", "MatrixError", "load_matrix", "select_runs", "check_names_known"]
