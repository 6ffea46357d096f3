"""`make fuzz`: a bounded bad-input campaign against the installed `poisoncheck`.

Mutated copies of real and generated traces go through `poisoncheck parse` and
`poisoncheck validate` (two designs, --jobs 1 and 2) as the user runs them: a
separate process per run, with a timeout.  The campaign counts, and fails on:

* tracebacks or internal errors (exit 70, "Traceback" on stderr);
* hangs (a run over its timeout);
* exit codes outside the documented ones (0 1 2 3);
* lines not accounted for: parse must give every line of the file (by the one
  line rule, lines end at "\\n") a kind, and validate must give the same JSON for
  --jobs 1 and --jobs 2 (the verdict may not depend on how the input is cut).

It prints the counts and the peak memory of any child, and exits 1 on a failure.
    python fuzz/campaign.py [--mutated 100000] [--seconds 540] [--seed 1]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POISONCHECK = [sys.executable, "-m", "validator"]
CORPUS = ROOT.parent / "shared" / "corpus" / "ftrace"
DESIGNS = ("NoHold", "HWPoison")
EXIT_CODES = {0, 1, 2, 3}
RUN_TIMEOUT = 120
RATES = (1.0, 0.3, 0.03)     # shares of a file's lines mutated, file after file

# Text that broke earlier versions, or that a torn, hostile or foreign capture holds.
HOSTILE = [
    "\x00", "\x00" * 64, "\x1b]0;pwned\x07", "\x1b[2J", "\r", "\x0b", "\x85", "\udcff",
    " " * 5000, "\t" * 300, "9" * 5000, "0x" + "f" * 40, "-1", "x", "=", "==>", "(", ")",
    "[", "]", ":", "<stack trace>", " => ", "CPU:0 [LOST 99999999999999999999 EVENTS]",
    "#P:" + "9" * 4400, "\u202e", "é",
]
FIELD_VALUES = ["x", "-1", "0x40", "20", "99", "1" * 4400, "0xffffffffffffffff",
                "0x10000000000000000", "", "0x", "private", "shared", "\"sha red\""]
FIELDS = ["order", "pfn", "index", "start", "end", "ret", "gfn", "level", "ofs", "dev",
          "to", "cpus", "page"]


def source_lines(work: Path) -> list[list[str]]:
    """Whole traces to mutate: traces/, the real captures, a generated one, the corpus."""
    texts = []
    for path in sorted((ROOT / "traces").rglob("*.trace")):
        texts.append(path.read_text("utf-8", "surrogateescape"))
    for path in sorted((ROOT / "traces").rglob("*.trace.gz")):
        texts.append(gzip.decompress(path.read_bytes()).decode("utf-8", "surrogateescape"))
    generated = work / "generated.trace"
    subprocess.run([sys.executable, "-c",
                    "import sys; from pathlib import Path; from validator.synth import benchgen; "
                    "benchgen.generate(Path(sys.argv[1]), 20000, seed=5)", str(generated)],
                   cwd=ROOT, check=True)
    texts.append(generated.read_text())
    if CORPUS.is_dir():
        for path in sorted(CORPUS.rglob("*")):
            if path.is_file() and path.suffix not in (".md", ".html", ".gz", ".xz", ".dat"):
                data = path.read_bytes()
                if b"\x00" not in data[:4096]:
                    texts.append(data.decode("utf-8", "surrogateescape"))
    return [t.split("\n") for t in texts if t.strip()]


def mutate_line(line: str, rnd: random.Random) -> str:
    op = rnd.randrange(7)
    at = rnd.randrange(len(line) + 1)
    if op == 0:                                         # a hostile token anywhere
        return line[:at] + rnd.choice(HOSTILE) + line[at:]
    if op == 1 and line:                                # a byte changed
        return line[:at] + chr(rnd.randrange(256)) + line[at + 1:]
    if op == 2:                                         # a field's value replaced
        key = rnd.choice(FIELDS) + "="
        pos = line.find(key)
        if pos >= 0:
            end = line.find(" ", pos)
            end = len(line) if end < 0 else end
            return line[:pos + len(key)] + rnd.choice(FIELD_VALUES) + line[end:]
        return line + f" {key}{rnd.choice(FIELD_VALUES)}"
    if op == 3:                                         # cut short (a torn or head -c file)
        return line[:at]
    if op == 4:                                         # a span deleted
        return line[:at] + line[at + rnd.randrange(1, 40):]
    if op == 5:                                         # leading blanks (quadratic once)
        return " " * rnd.choice((10, 1000, 20000)) + line
    return line + "\n" + line                           # the line twice


def make_file(sources: list[list[str]], rnd: random.Random, lines: int,
              rate: float) -> tuple[str, int]:
    """About `lines` lines: whole traces one after another, a share `rate` of their lines
    mutated (a low share lets the replay go deep).  Returns the text and the lines mutated."""
    out: list[str] = []
    mutated = 0
    while len(out) < lines:
        source = rnd.choice(sources)
        start = rnd.randrange(max(1, len(source) - 50)) if rnd.random() < 0.5 else 0
        for line in source[start:start + lines - len(out)]:
            if rnd.random() < rate:
                line = mutate_line(line, rnd)
                mutated += 1
            out.append(line)
    return "\n".join(out) + "\n", mutated


class Tally:
    def __init__(self):
        self.files = self.lines = self.mutated = self.runs = 0
        self.tracebacks = self.hangs = self.bad_exits = self.unaccounted = 0
        self.by_exit: dict[str, int] = {}
        self.failures: list[str] = []

    def fail(self, what: str) -> None:
        if len(self.failures) < 20:
            self.failures.append(what)


def run(args: list[str], tally: Tally, name: str) -> subprocess.CompletedProcess | None:
    tally.runs += 1
    try:
        done = subprocess.run(POISONCHECK + args, cwd=ROOT, capture_output=True,
                              timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        tally.hangs += 1
        tally.fail(f"{name}: hang ({' '.join(args[:2])})")
        return None
    key = f"{args[0]}:{done.returncode}"
    tally.by_exit[key] = tally.by_exit.get(key, 0) + 1
    err = done.stderr.decode("utf-8", "replace")
    if "Traceback" in err or done.returncode == 70:
        tally.tracebacks += 1
        tally.fail(f"{name}: {args[0]}: {err.strip().splitlines()[-1][:200]}")
    elif done.returncode not in EXIT_CODES:
        tally.bad_exits += 1
        tally.fail(f"{name}: {args[0]} exit {done.returncode}")
    return done


def check_file(path: Path, text: str, tally: Tally) -> None:
    expected_lines = text.count("\n")
    done = run(["parse", "--json", str(path)], tally, path.name)
    if done is not None and done.returncode == 0:
        summary = json.loads(done.stdout)
        if summary["lines"] != expected_lines or sum(summary["by_kind"].values()) != expected_lines:
            tally.unaccounted += abs(expected_lines - sum(summary["by_kind"].values())) or 1
            tally.fail(f"{path.name}: parse gave {summary['lines']} lines, "
                       f"{sum(summary['by_kind'].values())} classified, of {expected_lines}")
    for design in DESIGNS:
        outputs = []
        for jobs in ("1", "2"):
            done = run(["validate", "--json", "--jobs", jobs, "-d", design, str(path)], tally,
                       path.name)
            outputs.append(done.stdout if done is not None else None)
        if None not in outputs and outputs[0] != outputs[1]:
            tally.unaccounted += 1
            tally.fail(f"{path.name}: validate -d {design} differs between --jobs 1 and 2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mutated", type=int, default=100_000, help="mutated lines in all")
    parser.add_argument("--per-file", type=int, default=6_000, help="lines per file")
    parser.add_argument("--seconds", type=float, default=540, help="stop starting files after")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rnd = random.Random(args.seed)
    tally = Tally()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="poisoncheck-fuzz-") as tmp:
        work = Path(tmp)
        sources = source_lines(work)
        while tally.mutated < args.mutated and time.monotonic() - start < args.seconds:
            rate = RATES[tally.files % len(RATES)]
            text, mutated = make_file(sources, rnd, args.per_file, rate)
            path = work / f"fuzz-{tally.files:03d}.trace"
            path.write_text(text, "utf-8", "surrogateescape")
            check_file(path, text, tally)
            tally.files += 1
            tally.lines += text.count("\n")
            tally.mutated += mutated
            path.unlink()
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"fuzz: {tally.mutated} mutated lines among {tally.lines} in {tally.files} files, "
          f"{tally.runs} runs "
          f"(parse; validate {'/'.join(DESIGNS)} x --jobs 1,2), "
          f"{time.monotonic() - start:.0f} s, seed {args.seed}")
    print(f"  tracebacks {tally.tracebacks}, hangs {tally.hangs}, other exit codes "
          f"{tally.bad_exits}, lines not accounted for {tally.unaccounted}")
    print(f"  peak memory of one run: {peak_mib:.0f} MiB")
    print("  exits: " + ", ".join(f"{k} x{v}" for k, v in sorted(tally.by_exit.items())))
    for failure in tally.failures:
        print(f"  FAIL {failure}")
    short = tally.mutated < args.mutated
    if short:
        print(f"  only {tally.mutated} of {args.mutated} mutated lines within "
              f"{args.seconds:.0f} s")
    bad = tally.tracebacks + tally.hangs + tally.bad_exits + tally.unaccounted
    return 1 if bad or short else 0


if __name__ == "__main__":
    sys.exit(main())
