"""One TLC process: the command line, the work folders, the raw output parsed.

Nothing here knows the matrix; check/runner.py runs the matrix's jobs through run_tlc().
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from validator import children
from validator.tlc.output import TlcResult, parse_tlc_output
from validator.tlc.setup import TlcSetup

SPEC_MODULE = "MCPoison"


class RunnerError(Exception):
    """A TLC job could not give a verdict (timeout, TLA+ error, crash)."""


def run_tlc(setup: TlcSetup, cfg: Path, workdir: Path, module: Path | None = None,
            extra: tuple[str, ...] = ()) -> tuple[TlcResult, float, str]:
    """One TLC process; returns the parsed result, wall seconds and raw output."""
    metadir = workdir / f"states-{cfg.stem}"
    # TLC 2.15 finds the config only by a path relative to the working
    # directory, and only when the spec is named by a relative path too.
    spec = os.path.relpath(module or setup.spec_dir / f"{SPEC_MODULE}.tla", workdir)
    # TLC 2.15 unpacks its standard modules into java.io.tmpdir; parallel runs
    # sharing /tmp read each other's half-written files.
    tmpdir = workdir / f"tmp-{cfg.stem}"
    tmpdir.mkdir(exist_ok=True)
    cmd = [setup.java, "-XX:+UseParallelGC", f"-Xmx{setup.heap}", f"-Djava.io.tmpdir={tmpdir.resolve()}",
           "-cp", str(setup.jar.resolve()),
           "tlc2.TLC", "-tool", "-deadlock", "-workers", str(setup.workers),
           *(("-fpmem", f"{setup.fpmem:g}") if setup.fpmem is not None else ()),
           "-metadir", metadir.name,
           *extra, "-config", os.path.relpath(cfg, workdir), spec]
    start = time.monotonic()
    try:
        returncode, stdout, stderr = children.run(cmd, workdir, setup.timeout)
    except subprocess.TimeoutExpired:
        raise RunnerError(f"TLC exceeded --timeout {setup.timeout:g}s on {cfg}") from None
    except OSError as err:
        raise RunnerError(f"cannot start Java ({setup.java}): {err}") from None
    finally:
        shutil.rmtree(metadir, ignore_errors=True)
        shutil.rmtree(tmpdir, ignore_errors=True)
    seconds = time.monotonic() - start
    output = stdout + stderr
    (workdir / f"{cfg.stem}.out").write_text(output)
    return parse_tlc_output(output, returncode), seconds, output
