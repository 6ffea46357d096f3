"""`python bench/tlc_speed.py` (make bench-tlc): how far spec/Poison.tla's evaluation is
from TLC's own speed.

Runs TLC (one worker, no symmetry reduction change) on bench/tlc/Commit.tla, a cheap spec
written as a yardstick, and on a run of the matrix whose safety properties hold (the whole
state space is explored), alternating, --rounds times.  For each process it reports the
states generated per CPU second of the JVM (user + system, from the kernel's accounting of
that child: the machine is shared, so wall time says little) and the JVM's start-up cost
(a run of 1 state), then the ratio of the two specs' rates, measured in the same run.

    python bench/tlc_speed.py                       # FolioRef-hugetlb-fail1, 2 rounds
    python bench/tlc_speed.py --run NoHold-buddy-nofault --rounds 3
"""

import argparse
import re
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from validator.check.matrix import load_matrix
from validator.check.runner import write_cfg
from validator.model.properties import SAFETY
from validator.paths import spec_dir
from validator.tlc.setup import tlc_setup

YARDSTICK = Path(__file__).resolve().parent / "tlc"
_GENERATED = re.compile(r"([\d,]+) states generated, ([\d,]+) distinct states found, 0 states")


def run_tlc(jar: Path, java: str, folder: Path, module: str, cfg: str) -> tuple[int, int, float]:
    """One TLC process: (states generated, distinct states, CPU seconds of the JVM)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([java, "-XX:+UseParallelGC", "-Xmx2g", "-cp", str(jar), "tlc2.TLC",
                          "-deadlock", "-workers", "1", "-metadir", str(folder / "states"),
                          "-config", cfg, module], cwd=folder, capture_output=True, text=True,
                         check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    found = _GENERATED.findall(out.stdout)
    if not found:
        sys.exit(f"TLC did not finish {module} with {cfg}:\n{out.stdout[-2000:]}")
    generated, distinct = (int(n.replace(",", "")) for n in found[-1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return generated, distinct, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="FolioRef-hugetlb-fail1",
                        help="a matrix run whose safety properties hold")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    setup = tlc_setup(Path("build/bench"), 3600, spec_dir())
    (run,) = [r for r in load_matrix(spec_dir() / "matrix.toml") if r.name == args.run]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for tla in list(spec_dir().glob("*.tla")) + list(YARDSTICK.glob("*.tla")):
            (work / tla.name).write_text(tla.read_text())
        (work / "Commit.cfg").write_text((YARDSTICK / "Commit.cfg").read_text())
        write_cfg(run, work / "poison.cfg", [p.key for p in SAFETY], liveness=False)
        tiny = [r for r in load_matrix(spec_dir() / "matrix.toml")
                if r.name == "NoHold-buddy-nofault"][0]
        write_cfg(tiny, work / "tiny.cfg", [p.key for p in SAFETY], liveness=False)
        rows = []
        for _ in range(args.rounds):
            for label, module, cfg in (("yardstick (bench/tlc/Commit.tla)", "Commit.tla",
                                        "Commit.cfg"),
                                       (f"Poison.tla, {run.name}", "MCPoison.tla", "poison.cfg"),
                                       ("Poison.tla, JVM start-up (NoHold-buddy-nofault)",
                                        "MCPoison.tla", "tiny.cfg")):
                generated, distinct, cpu = run_tlc(setup.jar.resolve(), setup.java, work,
                                                   module, cfg)
                rows.append((label, generated, distinct, cpu))
                print(f"{label:52} {generated:>10,} generated {distinct:>9,} distinct "
                      f"{cpu:7.1f} CPU s {generated / cpu:>10,.0f} generated/CPU s",
                      flush=True)
    start = min(cpu for label, *_, cpu in rows if "start-up" in label)
    rate = {}
    for label, generated, _, cpu in rows:
        if "start-up" not in label:
            rate.setdefault(label, []).append(generated / max(cpu - start, 0.1))
    (yard, poison) = (max(v) for v in rate.values())
    print(f"\nwithout the start-up ({start:.1f} CPU s a process): yardstick {yard:,.0f}, "
          f"Poison.tla {poison:,.0f} states generated per CPU second (best of {args.rounds}); "
          f"Poison.tla is {yard / poison:.1f} times slower per state")
    return 0


if __name__ == "__main__":
    sys.exit(main())
