"""TLC's own distributed mode: a TLCServer holds the state queue and the fingerprints, TLCWorkers
(here or on other machines) compute successors, over Java RMI.

What TLC 2.15's distributed mode does and does not do (measured on this machine, see the
README): it checks invariants and action properties and finds the same distinct states as
one TLC process; it ignores liveness properties without a word; on a violation it exits 0,
does not name the property, and prints only the last step, with its first state labelled
initial.  So a caller may trust its "no error" and its state count, and must get a named
property and a counterexample from a plain TLC run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from validator import children
from validator.tlc.output import TRACE_STATE, TlcResult, parse_tlc_output, split_messages
from validator.tlc.process import FINGERPRINT_POLYNOMIAL, SPEC_MODULE, RunnerError, work_folders
from validator.tlc.setup import TlcSetup

SERVER = "tlc2.tool.distributed.TLCServer"
WORKER = "tlc2.tool.distributed.TLCWorker"
PORT_PROPERTY = "tlc2.tool.distributed.TLCServer.port"     # the RMI registry's (default 10997)
THREADS_PROPERTY = "tlc2.tool.distributed.TLCWorker.threadCount"  # default: every core
READY = "@!@!@STARTMSG 7000:"       # the server's "ready for workers" message
BEHAVIOUR = 2121                    # "The behavior up to this point is:" (a violation)
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Distribution:
    """How a run goes distributed: local workers, and where workers find the server."""
    workers: int                # TLCWorkers started here (0: only remote ones)
    host: str = LOOPBACK        # the name workers reach this machine by
    port: int | None = None     # the RMI registry's port (None: a free one)


def free_port() -> int:
    """A TCP port free on this machine now (the server binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def rmi_properties(host: str, port: int) -> list[str]:
    """What server and workers must agree on: the registry's port, and the name RMI hands
    out for this machine's objects (the one the other side can reach)."""
    return [f"-D{PORT_PROPERTY}={port}", f"-Djava.rmi.server.hostname={host}"]


def worker_command(java: str, jar: Path, server: str, port: int, threads: int,
                   own_host: str = LOOPBACK, heap: str = "1g") -> list[str]:
    """A TLCWorker joining the server at server:port with `threads` threads."""
    return [java, "-XX:+UseParallelGC", f"-Xmx{heap}", *rmi_properties(own_host, port),
            f"-D{THREADS_PROPERTY}={threads}", "-cp", str(jar.resolve()), WORKER, server]


def run_distributed(setup: TlcSetup, cfg: Path, workdir: Path, workers: int,
                    host: str = LOOPBACK, port: int | None = None,
                    ) -> tuple[TlcResult, float, str, bool]:
    """One TLCServer on `cfg` and `workers` local TLCWorkers of one thread each (more may
    join from other machines when `host` is a name they reach).  Returns TLC's parsed
    result, wall seconds, the server's output, and whether the server reported a
    violation (whose property and counterexample it cannot give: see the module)."""
    port = port or free_port()
    # The server looks for the spec by its base name in its working folder (a relative
    # path as plain TLC takes is cut to the name), so the modules go there.
    for module in setup.spec_dir.glob("*.tla"):
        shutil.copyfile(module, workdir / module.name)
    with work_folders(workdir, cfg) as (metadir, tmpdir):
        return _serve(setup, cfg, workdir, workers, host, port, metadir, tmpdir)


def _serve(setup, cfg, workdir, workers, host, port, metadir, tmpdir):
    """run_distributed() inside the server's work folders."""
    server_cmd = [setup.java, "-XX:+UseParallelGC", f"-Xmx{setup.heap}",
                  f"-Djava.io.tmpdir={tmpdir.resolve()}", *rmi_properties(host, port),
                  "-cp", str(setup.jar.resolve()), SERVER, "-tool", "-deadlock",
                  "-fp", str(FINGERPRINT_POLYNOMIAL), "-metadir", metadir.name,
                  "-config", os.path.relpath(cfg, workdir), f"{SPEC_MODULE}.tla"]
    out_path = workdir / f"{cfg.stem}.out"
    start = time.monotonic()
    deadline = start + setup.timeout
    try:
        with ExitStack() as stack:
            out = stack.enter_context(open(out_path, "w"))
            server = stack.enter_context(children.spawned(server_cmd, workdir, out))
            _wait_ready(out_path, server, deadline)
            for n in range(workers):
                log = stack.enter_context(open(workdir / f"{cfg.stem}.worker{n + 1}.out", "w"))
                stack.enter_context(children.spawned(
                    worker_command(setup.java, setup.jar, host, port, 1, host), workdir, log))
            try:
                server.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                raise RunnerError(f"distributed TLC exceeded --timeout {setup.timeout:g}s on "
                                  f"{cfg}") from None
    except OSError as err:
        raise RunnerError(f"cannot start Java ({setup.java}): {err}") from None
    seconds = time.monotonic() - start
    output = out_path.read_text(errors="replace")
    codes = {m.code for m in split_messages(output)}
    # The server exits 0 whatever it found: a violation shows only as its (broken) trace.
    violation = bool(codes & {BEHAVIOUR, TRACE_STATE})
    return parse_tlc_output(output, server.returncode), seconds, output, violation


def _wait_ready(out_path: Path, server: subprocess.Popen, deadline: float) -> None:
    """Until the server says it is ready for workers (a worker started before would
    retry with growing pauses)."""
    while READY not in out_path.read_text(errors="replace"):
        if server.poll() is not None:
            tail = out_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise RunnerError(f"TLC's server stopped before it was ready: {' / '.join(tail)}")
        if time.monotonic() > deadline:
            raise RunnerError("TLC's server was not ready before --timeout")
        time.sleep(0.2)
