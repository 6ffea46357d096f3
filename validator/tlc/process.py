"""One TLC process: the command line, the work folders, the raw output parsed.

Nothing here knows the matrix; check/runner.py runs the matrix's jobs through run_tlc().
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from validator import children
from validator.tlc.output import UNFINISHED, TlcResult, parse_tlc_output
from validator.tlc.setup import TlcSetup

SPEC_MODULE = "MCPoison"
# TLC picks one of its 131 fingerprint polynomials at random unless told; a fixed one makes
# runs repeatable (the same states hashed alike, so the same counterexamples).
FINGERPRINT_POLYNOMIAL = 0


class RunnerError(Exception):
    """A TLC job could not give a verdict (timeout, TLA+ error, crash)."""


# TLC's progress report (message 2200, once a minute): depth, states, distinct, queue.
_PROGRESS = re.compile(r"Progress\((\d+)\) at [^:]+:\d\d:\d\d: ([\d,]+) states generated "
                       r"\(([\d,]+) s/min\), ([\d,]+) distinct states found .*?([\d,]+) states "
                       r"left on queue")
PROGRESS_AFTER = 60     # seconds: shorter TLC runs print no progress line


class Progress(NamedTuple):
    """TLC's progress report, numbers only."""
    depth: int
    generated: int
    per_minute: int
    distinct: int
    queue: int


def parse_progress(line: str) -> Progress | None:
    """TLC's progress report in `line`, or None when it is none."""
    match = _PROGRESS.match(line)
    if match is None:
        return None
    return Progress(*(int(g.replace(",", "")) for g in match.groups()))


def progress_line(line: str, seconds: float) -> str | None:
    """TLC's progress report as one line for the user, or None when `line` is none."""
    report = parse_progress(line)
    if report is None:
        return None
    return (f"{report.distinct:,} distinct states, {report.per_minute / 60:,.0f} states/s, "
            f"queue {report.queue:,}, depth {report.depth} ({seconds / 60:.0f} min)")


@contextmanager
def work_folders(workdir: Path, cfg: Path) -> Iterator[tuple[Path, Path]]:
    """The folders one TLC process of `cfg` writes into, removed when it ends: its
    -metadir (states, fingerprints), and its own java.io.tmpdir (TLC 2.15 unpacks its
    standard modules there; parallel runs sharing /tmp read each other's half-written
    files)."""
    metadir = workdir / f"states-{cfg.stem}"
    tmpdir = workdir / f"tmp-{cfg.stem}"
    tmpdir.mkdir(exist_ok=True)
    try:
        yield metadir, tmpdir
    finally:
        shutil.rmtree(metadir, ignore_errors=True)
        shutil.rmtree(tmpdir, ignore_errors=True)


# A JVM for a small state space: the C1 compiler only.  C2's compile threads cost about
# 1.2 CPU seconds a process, more than a search of a few thousand states; on a search of
# a minute C1's code is about 40% slower (README, performance).
QUICK_JVM = ("-XX:TieredStopAtLevel=1",)


def run_tlc(setup: TlcSetup, cfg: Path, workdir: Path, module: Path | None = None,
            extra: tuple[str, ...] = (), jvm: tuple[str, ...] = (),
            progress: Callable[[str], None] | None = None) -> tuple[TlcResult, float, str]:
    """One TLC process; returns the parsed result, wall seconds and raw output.
    `progress` gets TLC's progress reports as one line each, from the first minute on."""
    # TLC 2.15 finds the config only by a path relative to the working
    # directory, and only when the spec is named by a relative path too.
    spec = os.path.relpath(module or setup.spec_dir / f"{SPEC_MODULE}.tla", workdir)
    with work_folders(workdir, cfg) as (metadir, tmpdir):
        return _run(setup, cfg, workdir, spec, metadir, tmpdir, extra, jvm, progress)


def _run(setup, cfg, workdir, spec, metadir, tmpdir, extra, jvm, progress):
    """run_tlc() inside its work folders."""
    cmd = [setup.java, *jvm, "-XX:+UseParallelGC", f"-Xmx{setup.heap}", f"-Djava.io.tmpdir={tmpdir.resolve()}",
           "-cp", str(setup.jar.resolve()),
           "tlc2.TLC", "-tool", "-deadlock", "-workers", str(setup.workers),
           "-fp", str(FINGERPRINT_POLYNOMIAL),
           *(("-fpmem", f"{setup.fpmem:g}") if setup.fpmem is not None else ()),
           "-metadir", metadir.name,
           *extra, "-config", os.path.relpath(cfg, workdir), spec]
    start = time.monotonic()
    last: list[Progress] = []           # TLC's latest progress report

    def on_line(line: str) -> None:
        report = parse_progress(line)
        if report is None:
            return
        last[:] = [report]
        seconds = time.monotonic() - start
        if progress is not None and seconds >= PROGRESS_AFTER:
            progress(progress_line(line, seconds))

    stop_at = setup.timeout if setup.budget is None else min(setup.timeout, setup.budget)
    try:
        done = children.run(cmd, workdir, stop_at, on_line)
    except subprocess.TimeoutExpired as stopped:
        if setup.budget is None or stop_at < setup.budget:
            raise RunnerError(f"TLC exceeded --timeout {setup.timeout:g}s on {cfg}") from None
        seconds = time.monotonic() - start
        (workdir / f"{cfg.stem}.out").write_text(
            (stopped.output or "") + (stopped.stderr or "")
            + f"\nstopped by poisoncheck at --budget {setup.budget:g}s\n")
        return _unfinished(last[0] if last else None, stopped.peak_kib), seconds, ""
    except OSError as err:
        raise RunnerError(f"cannot start Java ({setup.java}): {err}") from None
    seconds = time.monotonic() - start
    output = done.stdout + done.stderr
    (workdir / f"{cfg.stem}.out").write_text(output)
    result = parse_tlc_output(output, done.returncode)
    result.peak_kib = done.peak_kib
    return result, seconds, output


def _unfinished(report: Progress | None, peak_kib: int | None) -> TlcResult:
    """A TLC process stopped at the budget: what its last progress report said."""
    result = TlcResult(status=UNFINISHED, peak_kib=peak_kib)
    if report is not None:
        result.distinct, result.generated = report.distinct, report.generated
        result.depth, result.queue = report.depth, report.queue
    return result
