"""A matrix split over several machines: shards to run, results to merge.

A shard K/N is every N-th run of the selection in matrix order, starting at the K-th: the
same on every machine (it depends only on the matrix and the options), disjoint, and all N
together are the selection.  Merging reads the shards' results.json files back into
RunResults, judged against the matrix as it is now.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from validator.check.matrix import MatrixError, Run
from validator.check.results import NO_VERDICT, PropertyVerdict, RunResult
from validator.model.properties import VERDICTS

_SHARD = re.compile(r"([1-9][0-9]*)/([1-9][0-9]*)")


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
            run = by_name.get(name)
            if run is None:
                raise MatrixError(f"{path}: run {name!r} is not in the selected matrix runs")
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
        data = json.loads(path.read_text())
    except OSError as err:
        raise MatrixError(f"{path}: {err.strerror or err}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MatrixError(f"{path}: not a results.json of poisoncheck check ({err})") from None
    runs = data.get("runs") if isinstance(data, dict) else None
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise MatrixError(f"{path}: not a results.json of poisoncheck check (no list of runs)")
    return runs


def _result(run: Run, entry: dict, path: Path) -> RunResult:
    result = RunResult(run)
    verdicts = entry.get("verdicts")
    if not isinstance(verdicts, dict):
        raise MatrixError(f"{path}: run {run.name} has no verdicts")
    for key, v in verdicts.items():
        if not isinstance(v, dict) or v.get("verdict") not in (*VERDICTS, *NO_VERDICT, "error"):
            raise MatrixError(f"{path}: run {run.name}: {key} has no verdict poisoncheck knows")
        result.verdicts[key] = PropertyVerdict(v["verdict"], v.get("steps"),
                                               v.get("counterexample"), v.get("error"))
    try:
        result.distinct = int(entry["distinct_states"])
        result.generated = int(entry["states_generated"])
        result.seconds = float(entry["seconds"])
        result.tlc_runs = int(entry["tlc_runs"])
        collision = entry.get("collision_probability")
        result.collision = None if collision is None else float(collision)
        peak, queue = entry.get("peak_mib"), entry.get("queue_left")
        result.peak_mib = None if peak is None else float(peak)
        result.queue = None if queue is None else int(queue)
        result.notes = [str(note) for note in entry.get("notes", [])]
    except (KeyError, TypeError, ValueError):
        raise MatrixError(f"{path}: run {run.name} lacks its state counts or times") from None
    return result
