"""A matrix split over several machines: shards to run, results to merge.

A shard K/N is every N-th run of the selection in matrix order, starting at the K-th: the
same on every machine (it depends only on the matrix and the options), disjoint, and all N
together are the selection.  Merging reads the shards' results.json files back into
RunResults, judged against the matrix as it is now.
"""

from __future__ import annotations

import re
from pathlib import Path

from validator.check import readback
from validator.check.matrix import MatrixError, Run
from validator.check.results import PropertyVerdict, RunResult

# at most a million shards: a longer number is no shard count (and int() refuses 4300 digits)
_SHARD = re.compile(r"([1-9][0-9]{0,5})/([1-9][0-9]{0,5})")


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' with 1 <= K <= N."""
    match = _SHARD.fullmatch(text.strip())
    if not match or not int(match.group(1)) <= int(match.group(2)):
        raise MatrixError(f"--shard {text!r}: expected K/N with 1 <= K <= N, e.g. 2/4")
    return int(match.group(1)), int(match.group(2))


def shard(runs: list[Run], k: int, n: int) -> list[Run]:
    """The K-th of N disjoint shares of `runs` (round robin keeps each share a mix of
    small and large runs, as the matrix lists them by design)."""
    return runs[k - 1::n]


def merge_results(paths: list[Path], runs: list[Run]) -> list[RunResult]:
    """The results of every run of `runs`, read from the shards' results.json files (in
    matrix order).  A run found twice, a run the selection does not hold, a run missing
    from every file, or a run whose constants differ from the matrix's is an error: the
    merged table must be the matrix's, whole."""
    by_name = {run.name: run for run in runs}
    merged: dict[str, RunResult] = {}
    for path in paths:
        for entry in _runs_of(path):
            name = entry.get("name")
            run = by_name.get(name) if isinstance(name, str) else None
            if run is None:
                shown = readback.text(repr(name)[:80], path, "name")
                raise MatrixError(f"{path}: run {shown} is not in the selected matrix runs")
            if name in merged:
                raise MatrixError(f"{path}: run {name} is in another results file too")
            if entry.get("constants") != run.constants():
                raise MatrixError(f"{path}: run {name} was checked with other constants "
                                  f"than the matrix's now")
            merged[name] = _result(run, entry, path)
    missing = [run.name for run in runs if run.name not in merged]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise MatrixError(f"no results for {len(missing)} run(s): {shown}")
    return [merged[run.name] for run in runs]


def _runs_of(path: Path) -> list[dict]:
    try:
        data = readback.load_json(path, "results.json of poisoncheck check")
    except readback.ReadBackError as err:
        raise MatrixError(str(err)) from None
    runs = data.get("runs") if isinstance(data, dict) else None
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise MatrixError(f"{path}: not a results.json of poisoncheck check (no list of runs)")
    return runs


def _result(run: Run, entry: dict, path: Path) -> RunResult:
    """The run's results as the file has them, every value checked: counts are integers,
    times finite and non-negative, texts made safe to print."""
    where = f"run {run.name}"
    result = RunResult(run)
    verdicts = entry.get("verdicts")
    if not isinstance(verdicts, dict):
        raise MatrixError(f"{path}: {where} has no verdicts")
    try:
        for key, v in verdicts.items():
            readback.property_key(key, path, f"{where}: verdicts")
            v = readback.verdict(v, path, f"{where}: {key}")
            result.verdicts[key] = PropertyVerdict(v["verdict"], v.get("steps"),
                                                   v.get("counterexample"), v.get("error"))
        result.distinct = _count(entry, "distinct_states", path, where)
        result.generated = _count(entry, "states_generated", path, where)
        result.tlc_runs = _count(entry, "tlc_runs", path, where)
        result.seconds = _number(entry, "seconds", path, where)
        result.collision = _number(entry, "collision_probability", path, where, optional=True)
        result.peak_mib = _number(entry, "peak_mib", path, where, optional=True)
        result.queue = _count(entry, "queue_left", path, where, optional=True)
        notes = entry.get("notes", [])
        if not isinstance(notes, list):
            raise readback.bad(path, f"{where}: notes", "not a list of strings")
        result.notes = [readback.text(note, path, f"{where}: notes") for note in notes]
    except readback.ReadBackError as err:
        raise MatrixError(str(err)) from None
    return result


def _count(entry: dict, key: str, path: Path, where: str, optional: bool = False):
    value = entry.get(key)
    if value is None and optional:
        return None
    if not readback.is_int(value):
        raise readback.bad(path, f"{where}: {key}", "not an integer >= 0")
    return value


def _number(entry: dict, key: str, path: Path, where: str, optional: bool = False):
    value = entry.get(key)
    if value is None and optional:
        return None
    if not readback.is_number(value):
        raise readback.bad(path, f"{where}: {key}", "not a finite number >= 0")
    return float(value)
