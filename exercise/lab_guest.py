"""Inside the lab's VM (exercise/lab.py boots it): load KVM, then for each exercise set up
tracefs with `poisoncheck record --apply --instance poisoncheck-lab` (kprobes and
tracepoints), run the exercise with its steps on the instance's trace_marker, copy the trace
and the exercise's JSON summary into OUT, and undo the set-up (also when a step fails).

Everything this script and its children print goes to OUT/guest.log, and OUT/guest.json
says what each exercise did: the host reads both from the shared folder (virtme-ng's own
output channel needs udev in the guest, which the host root may lack).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRACEFS = Path("/sys/kernel/tracing")
INSTANCE = "poisoncheck-lab"
POISONCHECK = [sys.executable, "-m", "validator"]
# name -> the exercise's command line (the marker path is appended)
EXERCISES = {
    "lifecycle": [str(HERE / "gmem_lifecycle.py"), "--pages", "8"],
    "memory-errors": [str(HERE / "gmem_lab.py"), "memory-errors"],
    "several-vms": [str(HERE / "gmem_lab.py"), "several-vms"],
    "no-mmap": [str(HERE / "gmem_lab.py"), "no-mmap"],
}
MODULES = ("kvm_amd", "hwpoison_inject")


class Log:
    def __init__(self, path: Path):
        self.fh = open(path, "w")

    def __call__(self, text: str) -> None:
        self.fh.write(text.rstrip("\n") + "\n")
        self.fh.flush()
        os.fsync(self.fh.fileno())      # the VM powers off right after the script


def run(log: Log, args: list[str], **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=HERE.parent, text=True, capture_output=True, **kw)
    log(f"$ {' '.join(args)}  -> exit {done.returncode}")
    for stream in (done.stdout, done.stderr):
        if stream.strip():
            log(stream)
    return done


def exercise(log: Log, out: Path, name: str) -> dict:
    record = POISONCHECK + ["record", "--apply", "--instance", INSTANCE]
    instance = TRACEFS / "instances" / INSTANCE
    setup = run(log, record)
    result = {"record_exit": setup.returncode,
              "record_notes": [line for line in setup.stderr.splitlines() if line]}
    if setup.returncode != 0:
        return result
    try:
        started = time.monotonic()
        done = run(log, [sys.executable, *EXERCISES[name],
                         "--marker", str(instance / "trace_marker")])
        result.update(exit=done.returncode, seconds=round(time.monotonic() - started, 1))
        (out / f"{name}.json").write_text(done.stdout)
        (instance / "tracing_on").write_text("0\n")
        trace = (instance / "trace").read_text()
        (out / f"{name}.trace").write_text(trace)
        result["trace_lines"] = trace.count("\n")
    finally:
        undo = run(log, POISONCHECK + ["record", "--remove", "--apply", "--instance", INSTANCE])
        result["undo_exit"] = undo.returncode
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", action="append", choices=sorted(EXERCISES))
    args = parser.parse_args()
    log = Log(args.out / "guest.log")
    report: dict = {"kernel": os.uname().release, "exercises": {}}
    for module in MODULES:
        report.setdefault("modprobe", {})[module] = run(log, ["modprobe", module]).returncode
    for name in args.only or EXERCISES:
        try:
            report["exercises"][name] = exercise(log, args.out, name)
        except OSError as err:
            log(f"{name}: {err}")
            report["exercises"][name] = {"error": str(err)}
    report["tracefs_instances_left"] = sorted(p.name for p in (TRACEFS / "instances").iterdir())
    report["kprobe_events_left"] = (TRACEFS / "kprobe_events").read_text().splitlines()
    (args.out / "guest.json").write_text(json.dumps(report, indent=2) + "\n")
    log("guest done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
