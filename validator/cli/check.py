"""`poisoncheck check`: TLC over the configuration matrix, as a table."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import click
from tabulate import tabulate

from validator.cli.errors import InputError, writing_to
from validator.cli.options import FiniteRange, heap_size, run_patterns
from validator.check.matrix import MatrixError, check_names_known, load_matrix, select_runs
from validator.model.properties import PROPERTIES
from validator.check.results import RunResult
from validator.check.runner import check_runs, default_tlc_jobs
from validator.check.shards import merge_results, parse_shard, shard
from validator.check.simulation import simulate_runs
from validator.cli.simulation_output import finish_simulation
from validator.tlc.process import RunnerError
from validator.paths import build_dir, spec_dir as packaged_spec_dir
from validator.tlc.distributed import LOOPBACK, Distribution
from validator.tlc.setup import SetupError, tlc_setup


def _table(results: list[RunResult]) -> str:
    headers = (["run"] + [p.short for p in PROPERTIES]
               + ["states", "states/s", "seconds", "peak MiB", "fp collision"])
    rows = []
    for r in results:
        rate = r.generated / r.seconds if r.seconds else 0
        collision = "-" if r.collision is None else f"{r.collision:.1e}"
        peak = "-" if r.peak_mib is None else f"{r.peak_mib:,.0f}"
        # A run stopped at --budget: the states found so far, and that there are more.
        states = f"{r.distinct}+" if r.queue is not None else str(r.distinct)
        rows.append([r.run.name] + [r.cell(p.key) for p in PROPERTIES]
                    + [states, f"{rate:,.0f}", f"{r.seconds:.1f}", peak, collision])
    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)


@contextmanager
def _exclusive(out_dir: Path):
    """Hold out_dir for this check: a second check on the same folder is refused."""
    with writing_to(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        lock = open(out_dir / ".lock", "w")
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"{out_dir} is in use by another poisoncheck check; wait for it "
                             f"or give this one another --out") from None
        yield


@click.command()
@click.option("--spec-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory with Poison.tla and MCPoison.tla [default: the spec/ shipped "
                   "with poisoncheck].")
@click.option("--matrix", "matrix_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Matrix file [default: matrix.toml of the spec directory].")
@click.option("--only", "only", multiple=True, metavar="PATTERN", callback=run_patterns,
              help="Run only the runs whose name matches (a run's exact name, else a glob or "
                   "a substring), deep ones included; repeatable.")
@click.option("--deep", is_flag=True,
              help="Also the runs marked deep in the matrix (make check-deep).")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None,
              help="TLC processes in parallel [default: the number of cores].")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Threads of each TLC process (TLC's -workers), for one big run on a big "
                   "host; --jobs stays the number of TLC processes in parallel.")
@click.option("--heap", default="2g", show_default=True, callback=heap_size,
              help="Java heap of each TLC process (-Xmx), e.g. 512m, 8g.")
@click.option("--fpmem", type=FiniteRange(0, 1, min_open=True), default=None,
              help="Share of the heap for TLC's fingerprint set (TLC's -fpmem) [default: "
                   "TLC's].")
@click.option("--distributed", type=click.IntRange(0, 256), default=None, metavar="N",
              help="Each run's safety properties on TLC's distributed mode: a server and N "
                   "local workers (0: only workers that join with `poisoncheck tlc-worker`); "
                   "liveness properties are reported as not checked.")
@click.option("--server-host", default=LOOPBACK, show_default=True,
              help="With --distributed: the name other machines reach this one by.")
@click.option("--server-port", type=click.IntRange(1, 65535), default=None,
              help="With --distributed: the RMI registry's port [default: a free one; give "
                   "one when workers join from elsewhere].")
@click.option("--list", "list_runs", is_flag=True,
              help="Print the names of the runs this check would run, one per line, and "
                   "stop (with --only, --deep, --shard).")
@click.option("--shard", "shard_text", metavar="K/N", default=None,
              help="Run only the K-th of N disjoint shares of the selected runs, the same "
                   "on every machine; all N together are the selection (merge with --merge).")
@click.option("--merge", is_flag=True,
              help="Run nothing: combine the RESULTS files (results.json of shards) into the "
                   "table, results.json and exit code of one check over the selected runs.")
@click.argument("results_files", metavar="[RESULTS]...", nargs=-1,
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--timeout", type=FiniteRange(min=1), default=600, show_default=True,
              help="Seconds one TLC process may take before the check fails.")
@click.option("--budget", type=FiniteRange(min=1), default=None, metavar="SECONDS",
              help="Stop a TLC process after SECONDS and report its properties `unfinished`, "
                   "with the states found so far (no verdict, not a failure): for state "
                   "spaces this host cannot finish (make check-deep).  Overrides --timeout.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where configs, TLC output and counterexamples go [default: ./build/check].")
@click.option("--simulate", type=FiniteRange(min=1), default=None, metavar="SECONDS",
              help="Instead of breadth-first search: TLC's random simulation of each run's "
                   "safety properties for SECONDS (the runs marked `simulation` and the deep "
                   "runs not established, or --only's); a violation found is then searched "
                   "breadth-first for its shortest form within --budget.  Never a holds.")
@click.option("--depth", type=click.IntRange(1, 10_000), default=100, show_default=True,
              help="With --simulate: the longest behaviour, in states.")
@click.option("--seed", type=click.IntRange(0, 2**62), default=1, show_default=True,
              help="With --simulate: the first batch's seed (batch k uses seed + k - 1).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")
def check(spec_dir, matrix_path, only, deep, jobs, workers, heap, fpmem, distributed,
          server_host, server_port, list_runs, shard_text, merge, results_files, timeout,
          budget, out_dir, simulate, depth, seed, as_json, quiet):
    """Model-check every run of the configuration matrix with TLC.

    Each run fixes a design, a backing, fault budgets and (for mutants) the
    checks it disables.  Runs marked `deep` (the largest state spaces) run
    only with --deep, or when --only names them.  The table has one column per property of
    docs/protocol.md: `holds`, `VIOLATED (n steps)` or `-` (not applicable); `unfinished` (a
    TLC process stopped at --budget) and `not checked` (liveness under --distributed) are
    no verdict.
    Counterexamples are kept under build/check/RUN/PROPERTY.json (of the
    current folder; --out names another).  Needs Java and the TLC jar
    (`poisoncheck setup`).

    \b
    Examples:
      poisoncheck check
      poisoncheck check --deep --budget 900
      poisoncheck check --only 'NoHold-*' --only mutant-folioref-drop
      poisoncheck check --json > results.json
      poisoncheck check --only HWPoison-thp-fail1 --workers 8 --heap 16g
      poisoncheck check --shard 2/4 --out shard2      (one of 4 CI machines)
      poisoncheck check --merge shard*/results.json
      poisoncheck check --only NoHold-thp-nofault --distributed 2
      poisoncheck check --simulate 120 --budget 300   (the runs BFS cannot finish)

    \b
    Exit codes: 0 every verdict matches the matrix, 1 some verdict differs
    (each difference is named), 2 bad matrix, missing Java or jar, a TLA+
    error, or a TLC run over --timeout.
    """
    spec_dir = spec_dir or packaged_spec_dir()
    matrix_path = matrix_path or spec_dir / "matrix.toml"
    out_dir = out_dir or build_dir() / ("check" if simulate is None else "simulate")
    try:
        if simulate is not None and (merge or shard_text or distributed is not None):
            raise MatrixError("--simulate runs plain TLC on this host: no --merge, --shard "
                              "or --distributed")
        runs = select_runs(load_matrix(matrix_path), only, deep or bool(only),
                           simulate=simulate is not None)
        check_names_known(runs, matrix_path)
        if shard_text is not None:
            if merge:
                raise MatrixError("--shard and --merge: merge the shards' results without --shard")
            runs = shard(runs, *parse_shard(shard_text))
        if bool(results_files) != merge:
            raise MatrixError("--merge needs the shards' results.json files" if merge else
                              f"{results_files[0]}: result files are read only with --merge")
        if distributed == 0 and server_port is None:
            raise MatrixError("--distributed 0 waits for workers from other machines: give "
                              "them a --server-port to join")
        if list_runs:
            for run in runs:
                click.echo(run.name)
            return
        if merge:
            merged = merge_results(list(results_files), runs)
        else:
            if budget is not None and distributed is not None:
                raise MatrixError("--budget stops plain TLC processes; the distributed mode "
                                  "runs to its end (use --timeout)")
            if simulate is not None:       # the shortest-form search must stop, not fail
                budget = budget or simulate
            if budget is not None:
                timeout = max(timeout, budget, (simulate or 0) + 60)
            setup = dataclasses.replace(tlc_setup(out_dir, timeout, spec_dir), workers=workers,
                                        heap=heap, fpmem=fpmem, budget=budget)
    except (MatrixError, SetupError) as err:
        raise InputError(str(err)) from None
    progress = (lambda _: None) if quiet else (lambda line: click.echo(line, err=True))
    with _exclusive(out_dir):
        try:
            if merge:
                _finish(out_dir, merged, [], as_json,
                        "counterexamples where each shard's check wrote them")
                return
            if simulate is not None:
                progress(f"simulating {len(runs)} runs for {simulate:g} s each, "
                         f"{jobs or default_tlc_jobs()} in parallel")
                try:
                    sims = simulate_runs(runs, setup, simulate, depth, seed,
                                         jobs or default_tlc_jobs(), progress)
                except RunnerError as err:
                    raise InputError(str(err)) from None
                finish_simulation(out_dir, sims, as_json)
                return
            progress(f"checking {len(runs)} runs with TLC, " + (
                "one at a time on TLC's distributed mode" if distributed is not None else
                f"{jobs or default_tlc_jobs()} in parallel"))
            # The old results describe folders this run replaces: they go first, so that
            # an interrupted check leaves no results.json pointing at missing files.
            (out_dir / "results.json").unlink(missing_ok=True)
            distribution = (None if distributed is None else
                            Distribution(distributed, server_host, server_port))
            if distribution is not None and distributed == 0:
                progress(f"waiting for workers: poisoncheck tlc-worker {server_host} "
                         f"--port {server_port}")
            results, errors = check_runs(runs, setup, jobs or default_tlc_jobs(), progress,
                                         distribution)
            _finish(out_dir, results, errors, as_json)
        except OSError as err:      # a read-only or full build folder
            where = err.filename or out_dir
            raise InputError(f"{where}: {err.strerror or err}") from None


def _finish(out_dir: Path, results, errors, as_json: bool, where: str | None = None) -> None:
    if errors:
        more = f" ({len(errors) - 1} more TLC jobs failed; see {out_dir})" if len(errors) > 1 else ""
        raise InputError(errors[0] + more)
    mismatches = [m for r in results for m in r.mismatches()]
    # Kept for `poisoncheck report` (the last check's results, whatever it printed),
    # written whole or not at all.
    partial = out_dir / f"results.json.{os.getpid()}"
    try:
        partial.write_text(json.dumps(
            {"runs": [r.to_json() for r in results], "mismatches": mismatches}, indent=1) + "\n")
        partial.replace(out_dir / "results.json")
    finally:
        partial.unlink(missing_ok=True)     # a full disk leaves no half-written file

    if as_json:
        json.dump({"runs": [r.to_json() for r in results], "mismatches": mismatches},
                  sys.stdout, indent=1)
        click.echo()
    else:
        click.echo(_table(results))
        total = sum(r.seconds for r in results)
        click.echo(f"\n{len(results)} runs, {sum(r.tlc_runs for r in results)} TLC processes, "
                   f"{total:.0f} s of TLC time; {where or f'counterexamples in {out_dir}'}")
        unfinished = [r.run.name for r in results if r.queue is not None]
        if unfinished:
            click.echo(f"{len(unfinished)} run(s) stopped at --budget, no verdict on their "
                       f"unfinished properties: {', '.join(unfinished)}")
    for r in results:
        for note in r.notes:
            click.echo(f"note: {r.run.name}: {note}", err=True)
    if mismatches:
        for line in mismatches:
            click.echo(f"differs: {line}", err=True)
        sys.exit(1)
