"""Child processes die with poisoncheck: TLC's JVMs and the reader's workers.

A child asks the kernel for SIGKILL when its parent goes (PR_SET_PDEATHSIG), which covers
SIGKILL of poisoncheck itself; live TLC processes are also killed at once when a run is
interrupted (kill_children), so nothing waits for a JVM to finish."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

_PR_SET_PDEATHSIG = 1
try:
    _prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
except (OSError, AttributeError):    # not Linux: children outlive a SIGKILL'd parent
    _prctl = None

_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()
STOPPING = threading.Event()     # set by kill_children(): run() starts nothing new


class Stopped(RuntimeError):
    """run() was asked for a child after kill_children()."""


def die_with_parent() -> None:
    """In a child: be killed when the parent dies (also as a Popen preexec_fn)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Finished(NamedTuple):
    """A child that ended: what run() gives back."""
    returncode: int
    stdout: str
    stderr: str
    peak_kib: int | None        # its peak resident memory (ru_maxrss), None where unknown


def run(cmd: list[str], cwd, timeout: float | None,
        on_line: Callable[[str], None] | None = None) -> Finished:
    """subprocess.run(capture_output=True, text=True) for a child that dies with us and
    that kill_children() can stop, with its peak memory.  Raises subprocess.TimeoutExpired
    after killing it, with what it wrote until then (`output`, `stderr`) and its peak
    memory (`peak_kib`).  `on_line` sees each line of the child's stdout as it comes (e.g.
    TLC's progress)."""
    with _LIVE_LOCK:
        if STOPPING.is_set():
            raise Stopped("poisoncheck is stopping")
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, errors="replace", preexec_fn=die_with_parent)
        _LIVE.add(proc)
    peak: list[int] = []
    try:
        out, err = _communicate(proc, timeout, on_line or (lambda _: None), peak)
    except BaseException as stop:
        proc.kill()
        proc.communicate()
        if isinstance(stop, subprocess.TimeoutExpired):    # killed and reaped by _wait
            stop.peak_kib = peak[0] if peak else None
        raise
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(proc)
    return Finished(proc.returncode, out, err, peak[0] if peak else None)


def _communicate(proc: subprocess.Popen, timeout: float | None,
                 on_line: Callable[[str], None], peak: list[int]) -> tuple[str, str]:
    """proc.communicate(), but stdout is read line by line (a thread per pipe, so that
    neither pipe fills up while the other is read), and the child is reaped by wait4 for
    its peak memory (appended to `peak`)."""
    lines: list[str] = []
    errors: list[str] = []

    def read_stdout():
        try:
            for line in proc.stdout:
                lines.append(line)
                on_line(line)
        except (OSError, ValueError):   # the pipe closed under us: the child was killed
            pass

    readers = [threading.Thread(target=read_stdout, daemon=True),
               threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        _wait(proc, timeout, peak)
    except subprocess.TimeoutExpired as stop:
        for reader in readers:          # the child is dead: its pipes end
            reader.join()
        stop.output, stop.stderr = "".join(lines), "".join(errors)
        raise
    for reader in readers:
        reader.join()
    return "".join(lines), "".join(errors)


def _wait(proc: subprocess.Popen, timeout: float | None, peak: list[int]) -> None:
    """proc.wait(timeout), reaping the child with os.wait4: only that call gives one child's
    own peak memory (RUSAGE_CHILDREN mixes every child that ended)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.001
    while True:
        try:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        except ChildProcessError:       # reaped elsewhere: no usage to read
            proc.wait()
            return
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            peak.append(usage.ru_maxrss)        # KiB on Linux
            return
        if deadline is not None and time.monotonic() >= deadline:
            proc.kill()                 # reaped here too, for its peak memory until now
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            peak.append(usage.ru_maxrss)
            raise subprocess.TimeoutExpired(proc.args, timeout)
        time.sleep(pause)
        pause = min(pause * 2, 0.05)       # quick for short children, cheap for long ones


@contextmanager
def spawned(cmd: list[str], cwd, stdout) -> Iterator[subprocess.Popen]:
    """A child writing to `stdout` (stderr too) for the block's length: it dies with us
    and with kill_children(), and is killed when the block ends, if it still runs."""
    with _LIVE_LOCK:
        if STOPPING.is_set():
            raise Stopped("poisoncheck is stopping")
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=stdout, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        _LIVE.add(proc)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        with _LIVE_LOCK:
            _LIVE.discard(proc)


def kill_children() -> None:
    """Kill every child run() started that is still running, and start no new one until
    STOPPING is cleared."""
    with _LIVE_LOCK:
        STOPPING.set()
        procs = list(_LIVE)
    for proc in procs:
        proc.kill()
