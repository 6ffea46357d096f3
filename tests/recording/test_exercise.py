"""exercise/: the real-kernel programs where the machine lacks what they need (the real runs
are `make real-trace`; their captures are tested in test_corpus.py, never /dev/kvm here)."""

import os
import subprocess
import sys

import pytest

from validator.recording.gmem_device import GmemUnavailable, gmem_device

from conftest import ROOT


def run(script, env, *args):
    return subprocess.run([sys.executable, str(ROOT / "exercise" / script), *args],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


def test_gmem_device_without_kvm(monkeypatch):
    monkeypatch.setenv("POISONCHECK_KVM_DEV", "/nonexistent/kvm")
    with pytest.raises(GmemUnavailable, match="/nonexistent/kvm: No such file"):
        gmem_device()


def test_lifecycle_without_kvm_is_one_line_and_exit_2():
    done = run("gmem_lifecycle.py", {"POISONCHECK_KVM_DEV": "/nonexistent/kvm"})
    assert done.returncode == 2
    assert done.stderr == "gmem_lifecycle: /nonexistent/kvm: No such file or directory\n"
    assert done.stdout == ""


def test_real_trace_says_what_is_missing(tmp_path):
    done = run("real_trace.py", {"POISONCHECK_KVM_DEV": "/nonexistent/kvm"}, "--out",
               str(tmp_path))
    assert done.returncode == 2
    assert done.stderr == ("real-trace: /nonexistent/kvm is missing: a real capture needs a "
                           "machine with KVM; `make lab-trace` captures in a VM with a kernel "
                           "that has what is needed\n")
    done = run("real_trace.py", {"POISONCHECK_KVM_DEV": os.devnull,
                                 "POISONCHECK_TRACEFS": str(tmp_path / "no-tracefs")},
               "--out", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.startswith(f"real-trace: no tracefs at {tmp_path / 'no-tracefs'}")
    assert list(tmp_path.iterdir()) == []       # nothing written


def test_real_trace_on_a_kernel_without_guest_memfd_points_to_the_lab(tmp_path):
    """The 6.18 machines: /dev/kvm and tracefs, but KVM_CREATE_GUEST_MEMFD fails (ENOTTY).
    /dev/null stands for a /dev/kvm whose ioctls fail."""
    tracefs = tmp_path / "tracing"
    tracefs.mkdir()
    (tracefs / "tracing_on").write_text("1\n")
    out = tmp_path / "out"
    done = run("real_trace.py", {"POISONCHECK_KVM_DEV": os.devnull,
                                 "POISONCHECK_TRACEFS": str(tracefs)}, "--out", str(out))
    assert done.returncode == 2
    if os.geteuid() != 0:
        assert done.stderr == "real-trace: tracefs set-up and /proc/self/pagemap need root\n"
        return
    line, = done.stderr.splitlines()
    assert line.startswith(f"real-trace: this kernel ({os.uname().release}) cannot make a "
                           f"guest_memfd ({os.devnull}: ")
    assert line.endswith("`make lab-trace` captures in a VM with a kernel that has what is "
                         "needed")
    assert not out.exists()


def test_record_without_kvm_notes_the_missing_device(tmp_path, monkeypatch):
    from validator.recording.session import discover_gmem_dev
    monkeypatch.setenv("POISONCHECK_KVM_DEV", "/nonexistent/kvm")
    notes = []
    assert discover_gmem_dev(notes.append) is None
    assert "guest_memfd's device not found (/nonexistent/kvm" in notes[0]
