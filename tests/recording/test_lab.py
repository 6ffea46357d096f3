"""The kernel lab's host side (exercise/lab.py, lab_check.py) without QEMU: the mirror read
from apt's sources, missing tools, the VM stopped with its whole process group, the guest's
report checked, and lab-check's comparison."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "exercise"))
import lab  # noqa: E402
import lab_check  # noqa: E402


def test_the_mirror_comes_from_the_machines_apt_sources(tmp_path):
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    (parts / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: x-security\n\n"
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n")
    assert lab.debian_mirror((tmp_path / "sources.list", parts)) == "http://mirror.example/debian"
    one_line = tmp_path / "sources.list"
    one_line.write_text("deb [arch=amd64] http://other.example/debian/ bookworm main\n")
    assert lab.debian_mirror((one_line,)) == "http://other.example/debian"
    with pytest.raises(lab.LabError, match="no Debian archive"):
        lab.debian_mirror((tmp_path / "none",))


def test_a_missing_tool_is_one_line_with_its_package(monkeypatch, tmp_path):
    monkeypatch.setattr(lab.shutil, "which",
                        lambda tool: None if tool == lab.QEMU else f"/usr/bin/{tool}")
    with pytest.raises(lab.LabError) as err:
        lab.require_tools(tmp_path)
    assert str(err.value) == ("qemu-system-x86_64 is missing: sudo apt-get install "
                              "qemu-system-x86")
    monkeypatch.setattr(lab.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    with pytest.raises(lab.LabError, match=r"vng is missing: .*install -e '\.\[lab\]'"):
        lab.require_tools(tmp_path)


def fake_vng(tmp_path: Path) -> Path:
    """A `vng` that starts a child (as vng starts QEMU) and waits forever."""
    vng = tmp_path / "vng"
    vng.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {tmp_path}/child.pid\nwait\n")
    vng.chmod(0o755)
    return vng


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}").exists() \
        else "X"
    return state != "Z"


def test_the_vm_is_stopped_with_its_process_group_past_the_limit(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    started = time.monotonic()
    with pytest.raises(lab.LabError, match="ran past 2 s and was stopped"):
        lab.boot(fake_vng(tmp_path), tmp_path / "vmlinuz", out, [], limit=2)
    assert time.monotonic() - started < 30
    child = int((tmp_path / "child.pid").read_text())
    for _ in range(50):
        if not alive(child):
            break
        time.sleep(0.1)
    assert not alive(child), "the VM's child process was left running"


def test_an_interrupt_stops_the_vm_too(tmp_path):
    """Ctrl-C reaches lab.py, which stops the VM's group (its own session, so the terminal's
    SIGINT does not) and exits 130."""
    script = (f"import sys; sys.path.insert(0, {str(ROOT / 'exercise')!r}); import lab, signal\n"
              f"signal.signal(signal.SIGINT, lambda s, f: (_ for _ in ()).throw(KeyboardInterrupt))\n"
              f"from pathlib import Path\n"
              f"try:\n"
              f"    lab.boot(Path({str(fake_vng(tmp_path))!r}), Path('x'), Path({str(tmp_path)!r}),"
              f" [], 60)\n"
              f"except KeyboardInterrupt:\n"
              f"    sys.exit(130)\n")
    proc = subprocess.Popen([sys.executable, "-c", script])
    pid_file = tmp_path / "child.pid"
    for _ in range(100):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    child = int(pid_file.read_text())
    for _ in range(50):
        if not alive(child):
            break
        time.sleep(0.1)
    assert not alive(child)


def report(tmp_path: Path, **exercise) -> Path:
    base = {"record_exit": 0, "exit": 0, "undo_exit": 0}
    (tmp_path / "guest.json").write_text(json.dumps({
        "exercises": {"lifecycle": {**base, **exercise}},
        "tracefs_instances_left": [], "kprobe_events_left": []}))
    return tmp_path


def test_the_guests_report_is_checked(tmp_path):
    with pytest.raises(lab.LabError, match="left no .*guest.json"):
        lab.collect(tmp_path)
    assert list(lab.collect(report(tmp_path))["exercises"]) == ["lifecycle"]
    with pytest.raises(lab.LabError, match="exercise lifecycle failed"):
        lab.collect(report(tmp_path, exit=2))
    with pytest.raises(lab.LabError, match="undoing record's set-up after lifecycle failed"):
        lab.collect(report(tmp_path, undo_exit=2))


def test_your_own_kernel_is_laid_out_as_virtme_ng_finds_its_modules(tmp_path, monkeypatch):
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(b"kernel")
    modules = tmp_path / "mods" / "7.3.0-rc1"
    modules.mkdir(parents=True)
    image, record = lab.own_kernel(tmp_path / "lab", kernel, modules)
    assert image == tmp_path / "lab" / "own" / "7.3.0-rc1" / "boot" / "vmlinuz-7.3.0-rc1"
    assert image.resolve() == kernel
    assert (image.parent.parent / "lib" / "modules" / "7.3.0-rc1").resolve() == modules
    with pytest.raises(lab.LabError, match="KERNEL=.*: no such file"):
        lab.own_kernel(tmp_path / "lab", tmp_path / "nope", None)


def test_lab_check_compares_each_designs_verdict():
    expected = lab_check.committed(ROOT / "traces" / "real" / "manifest.toml")
    assert set(expected) >= {"lifecycle", "memory-errors", "several-vms", "no-mmap"}
    same = [{"trace": "x/lifecycle.trace", "design": d, "verdict": v, "line": None}
            for d, v in expected["lifecycle"].items()]
    assert not any(line.endswith("DIFFERS") for line in lab_check.compare(same, expected))
    other = [dict(same[0], verdict="violation", line=12)]
    assert lab_check.compare(other, expected)[0].split()[-3:] == ["accepted", "violation@12", "DIFFERS"]
