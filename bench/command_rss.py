"""Run a command for the bench: its wall time, and the peak RSS of its largest process and
of its whole process tree (see _HELPER for why a helper process measures them)."""

import subprocess
import sys
import tempfile
from pathlib import Path


# Runs the command and reports its time and peak RSS.  The RSS must come from a small
# process: a child forked from a big one (this bench, pytest) starts with the parent's RSS
# as its own maximum (Linux carries it over at exec), so os.wait4 here would report at
# least this process's size; RUSAGE_CHILDREN in a fresh interpreter is the command's own
# (the largest of its processes).  With reader processes (validate --jobs) the sum over
# the process tree matters too: the helper samples it from /proc every 50 ms, as PSS
# (pages the forked workers share with their parent count once), at least the largest
# process's peak.
_HELPER = """\
import os, resource, subprocess, sys, time
def tree_rss_kb(pid):
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                total += next((int(l.split()[1]) for l in f if l.startswith("Pss:")), 0)
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            pass
    return total
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[2:])
peak = 0
while proc.poll() is None:
    peak = max(peak, tree_rss_kb(proc.pid))
    time.sleep(0.05)
seconds = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
open(sys.argv[1], "w").write(f"{seconds} {rss} {max(peak, rss)}")
sys.exit(proc.returncode)
"""


def run_command(args: list[str], stdin: Path | None = None) -> dict:
    """Run a command (its stdin piped from `cat stdin` when given): seconds, peak RSS in
    MB of its largest process and of its process tree, exit code, stdout and stderr."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as report:
        cat = subprocess.Popen(["cat", str(stdin)], stdout=subprocess.PIPE) if stdin else None
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _HELPER, report.name, *args],
                                stdin=cat.stdout if cat else subprocess.DEVNULL,
                                stdout=out, stderr=err)
        if cat:
            cat.stdout.close()          # the command holds the pipe now
        code = proc.wait()
        if cat:
            cat.wait()
        seconds, rss, tree = report.read().split()
        out.seek(0)
        err.seek(0)
        return {"seconds": float(seconds), "rss_mb": int(rss) / 1024,
                "tree_rss_mb": int(tree) / 1024, "code": code,
                "stdout": out.read().decode(errors="replace"),
                "stderr": err.read().decode(errors="replace")}
