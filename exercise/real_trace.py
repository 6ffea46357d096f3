"""`make real-trace`: capture a real guest_memfd life cycle and validate it.

1. `poisoncheck record --apply --instance poisoncheck-real`: the tracefs set-up in a private
   instance (upstream tracepoints alone where the kernel has no kprobe events), with the
   marker line naming guest_memfd's device;
2. exercise/gmem_lifecycle.py drives KVM and guest_memfd, announcing its steps in the
   instance's trace_marker;
3. the instance's trace is copied to OUT/NAME.trace, the program's summary to OUT/NAME.json;
4. `poisoncheck record --remove --apply --instance poisoncheck-real` undoes the set-up,
   also when a step failed or on Ctrl-C / SIGTERM;
5. `poisoncheck validate OUT/NAME.trace --design all`.

Needs root, /dev/kvm with guest_memfd, and tracefs; without them it says which is missing,
points to `make lab-trace` (which boots a kernel that has them under QEMU), and exits 2.
Exit code: validate's (0: every design accepts), 2 for a set-up failure, 130/143 when
interrupted.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Overridable so that tests can show the machine-less paths (they never use the real ones).
KVM = os.environ.get("POISONCHECK_KVM_DEV", "/dev/kvm")
TRACEFS = Path(os.environ.get("POISONCHECK_TRACEFS", "/sys/kernel/tracing"))
INSTANCE = "poisoncheck-real"
POISONCHECK = [sys.executable, "-m", "validator"]


class Interrupted(Exception):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.code = 128 + signum


LAB_HINT = "; `make lab-trace` captures in a VM with a kernel that has what is needed"


def fail(message: str) -> None:
    print(f"real-trace: {message}", file=sys.stderr)
    sys.exit(2)


def check_machine() -> None:
    if not os.path.exists(KVM):
        fail(f"{KVM} is missing: a real capture needs a machine with KVM{LAB_HINT}")
    if not (TRACEFS / "tracing_on").is_file():
        fail(f"no tracefs at {TRACEFS} (mount -t tracefs nodev {TRACEFS}){LAB_HINT}")
    if os.geteuid() != 0:
        fail("tracefs set-up and /proc/self/pagemap need root")
    sys.path.insert(0, str(HERE.parent))
    from validator.recording.gmem_device import GmemUnavailable, gmem_device
    try:
        gmem_device()
    except GmemUnavailable as err:      # e.g. 6.18 with CONFIG_KVM_PVM: ENOTTY
        fail(f"this kernel ({os.uname().release}) cannot make a guest_memfd ({err})"
             f"{LAB_HINT}")


def run(args: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=HERE.parent, text=True, capture_output=True, **kw)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["?"]
        fail(f"{what} failed (exit {done.returncode}): {last[0]}")
    return done


def capture(out: Path, name: str, pages: int) -> Path:
    """Steps 1-4: the capture under the set-up, which is undone whatever happens."""
    instance = TRACEFS / "instances" / INSTANCE
    if instance.exists():       # left by a run that was killed: start clean
        run(POISONCHECK + ["record", "--remove", "--apply", "--instance", INSTANCE], "undo")
    run(POISONCHECK + ["record", "--apply", "--instance", INSTANCE], "poisoncheck record")
    try:
        done = run([sys.executable, str(HERE / "gmem_lifecycle.py"), "--pages", str(pages),
                    "--marker", str(instance / "trace_marker")], "gmem_lifecycle")
        (out / f"{name}.json").write_text(done.stdout)
        trace = out / f"{name}.trace"
        trace.write_text((instance / "trace").read_text())
        return trace
    finally:
        previous = [signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)]
        done = subprocess.run(POISONCHECK + ["record", "--remove", "--apply", "--instance",
                                             INSTANCE], cwd=HERE.parent, text=True,
                              capture_output=True)
        for sig, handler in zip((signal.SIGINT, signal.SIGTERM), previous):
            signal.signal(sig, handler)
        if done.returncode != 0:
            print(f"real-trace: undoing the set-up: {done.stderr.strip()}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE.parent / "build" / "real")
    parser.add_argument("--name", default="gmem-lifecycle")
    parser.add_argument("--pages", type=int, default=8)
    args = parser.parse_args()
    check_machine()

    def interrupted(signum, frame):
        raise Interrupted(signum)

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        trace = capture(args.out, args.name, args.pages)
        print(f"capture: {trace} ({sum(1 for _ in trace.open())} lines), "
              f"summary: {trace.with_suffix('.json')}")
        return subprocess.run(POISONCHECK + ["validate", str(trace), "--design", "all"],
                              cwd=HERE.parent).returncode
    except Interrupted as stop:
        print(f"real-trace: interrupted ({stop}); the tracefs set-up is undone", file=sys.stderr)
        return stop.code


if __name__ == "__main__":
    sys.exit(main())
