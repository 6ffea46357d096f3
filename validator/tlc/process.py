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

from validator import children
from validator.tlc.output import TlcResult, parse_tlc_output
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


def progress_line(line: str, seconds: float) -> str | None:
    """TLC's progress report as one line for the user, or None when `line` is none."""
    match = _PROGRESS.match(line)
    if match is None:
        return None
    depth, generated, per_min, distinct, queue = (int(g.replace(",", "")) for g in match.groups())
    return (f"{distinct:,} distinct states, {per_min / 60:,.0f} states/s, queue {queue:,}, "
            f"depth {depth} ({seconds / 60:.0f} min)")


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


def run_tlc(setup: TlcSetup, cfg: Path, workdir: Path, module: Path | None = None,
            extra: tuple[str, ...] = (),
            progress: Callable[[str], None] | None = None) -> tuple[TlcResult, float, str]:
    """One TLC process; returns the parsed result, wall seconds and raw output.
    `progress` gets TLC's progress reports as one line each, from the first minute on."""
    # TLC 2.15 finds the config only by a path relative to the working
    # directory, and only when the spec is named by a relative path too.
    spec = os.path.relpath(module or setup.spec_dir / f"{SPEC_MODULE}.tla", workdir)
    with work_folders(workdir, cfg) as (metadir, tmpdir):
        return _run(setup, cfg, workdir, spec, metadir, tmpdir, extra, progress)


def _run(setup, cfg, workdir, spec, metadir, tmpdir, extra, progress):
    """run_tlc() inside its work folders."""
    cmd = [setup.java, "-XX:+UseParallelGC", f"-Xmx{setup.heap}", f"-Djava.io.tmpdir={tmpdir.resolve()}",
           "-cp", str(setup.jar.resolve()),
           "tlc2.TLC", "-tool", "-deadlock", "-workers", str(setup.workers),
           "-fp", str(FINGERPRINT_POLYNOMIAL),
           *(("-fpmem", f"{setup.fpmem:g}") if setup.fpmem is not None else ()),
           "-metadir", metadir.name,
           *extra, "-config", os.path.relpath(cfg, workdir), spec]
    start = time.monotonic()

    def on_line(line: str) -> None:
        seconds = time.monotonic() - start
        if seconds >= PROGRESS_AFTER and (text := progress_line(line, seconds)) is not None:
            progress(text)

    try:
        returncode, stdout, stderr = children.run(cmd, workdir, setup.timeout,
                                                  on_line if progress is not None else None)
    except subprocess.TimeoutExpired:
        raise RunnerError(f"TLC exceeded --timeout {setup.timeout:g}s on {cfg}") from None
    except OSError as err:
        raise RunnerError(f"cannot start Java ({setup.java}): {err}") from None
    seconds = time.monotonic() - start
    output = stdout + stderr
    (workdir / f"{cfg.stem}.out").write_text(output)
    return parse_tlc_output(output, returncode), seconds, output
