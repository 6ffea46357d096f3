"""A signal leaves no child process behind, and exits with its own code (issue 13, item 10)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from validator.synth import benchgen

from conftest import ROOT

POISONCHECK = [sys.executable, "-m", "validator"]


def processes_with(text: str) -> list[int]:
    """Pids whose command line holds `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(int(entry.name))
    return found


def wait_for(predicate, seconds: float = 60) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _as_from_a_terminal() -> None:
    # A child inherits an ignored SIGINT, and Python then keeps ignoring it (as a background
    # job of a shell does); the suite's own process can have it ignored by the time this runs.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(args, tmp_path):
    return subprocess.Popen(POISONCHECK + args, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_as_from_a_terminal)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_check_stops_its_jvms(tlc_ready, tmp_path, sig, code):
    out = tmp_path / "check"
    proc = start(["check", "--only", "NoHold-hugetlb-fail1-memerr1", "--jobs", "1", "-q",
                  "--out", str(out)], tmp_path)
    assert wait_for(lambda: processes_with(f"tmpdir={out}")), "no JVM started"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert wait_for(lambda: not processes_with(f"tmpdir={out}"), 10), "a JVM outlived check"


def test_a_killed_check_takes_its_jvm_along(tlc_ready, tmp_path):
    out = tmp_path / "check"
    proc = start(["check", "--only", "NoHold-hugetlb-fail1-memerr1", "--jobs", "1", "-q",
                  "--out", str(out)], tmp_path)
    assert wait_for(lambda: processes_with(f"tmpdir={out}")), "no JVM started"
    proc.kill()
    proc.wait(timeout=30)
    assert wait_for(lambda: not processes_with(f"tmpdir={out}"), 10), "a JVM outlived check"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_validate_takes_its_reader_processes_along(tmp_path, sig):
    trace = tmp_path / "long-trace-for-signals.trace"
    benchgen.generate(trace, 400_000, seed=2)
    proc = start(["validate", "--jobs", "2", "-d", "HWPoison", str(trace)], tmp_path)
    mine = lambda: [p for p in processes_with(str(trace)) if p != proc.pid]  # noqa: E731
    assert wait_for(lambda: len(mine()) >= 2, 30), "no reader processes"
    os.kill(proc.pid, sig)
    proc.communicate(timeout=30)
    assert proc.returncode == (143 if sig == signal.SIGTERM else -signal.SIGKILL)
    assert wait_for(lambda: not mine(), 10), "a reader process outlived validate"


@pytest.fixture(scope="module")
def long_trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("signals") / "long-trace-for-json.trace"
    benchgen.generate(path, 2_000_000, seed=3)
    return path


@pytest.mark.parametrize("sig, code, name", [(signal.SIGINT, 130, "SIGINT"),
                                             (signal.SIGTERM, 143, "SIGTERM")])
def test_interrupted_validate_json_says_what_was_decided(long_trace, sig, code, name):
    """validate --json wrote nothing when interrupted; now the verdicts decided so far and
    a last object naming the interruption."""
    long = long_trace
    short = ROOT / "traces" / "lifecycle-buddy.trace"
    proc = subprocess.Popen(POISONCHECK + ["validate", "--json", "--jobs", "1", "-d", "NoHold",
                                           str(short), str(long)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(5)       # the short trace takes well under a second; the long one ~20 s
    assert proc.poll() is None, "validate ended before the signal"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    got = json.loads(out)
    assert [g.get("trace") for g in got[:-1]] == [str(short)]
    assert got[0]["verdict"] == "accepted"
    assert got[-1] == {"interrupted": name, "decided": 1}
