"""`python bench/bench.py` (make bench): throughput on a large generated trace.

    python bench/bench.py                      # 1M lines: every measurement, one table
    python bench/bench.py --lines 200000       # smaller
    python bench/bench.py --memory-run         # + validate on 10M lines: peak RSS
    python bench/bench.py --only validate      # measurements whose name has "validate"
    python bench/bench.py --styles kprobe      # the kprobe-format trace only

Generates build/bench/trace-<lines>-<seed>.txt once: a valid trace of a TD on 4K pages
written by validator/synth/benchgen.py (a random walk over the mirror, accepted by HWPoison with
three removal failures; kernel `trace` format, interleaved vCPUs, about 30% unrelated
sched/irq/softirq/timer lines).  Then runs the registered measurements in order, in this
process or (the commands) each in a subprocess whose peak RSS is reported (its largest
process, and its whole process tree: see run_command), and prints lines/s, protocol
events/s and the ratio to the first measurement, a bare regex scan of the same file (the
baseline).  `poisoncheck validate` runs with its default (two reader processes on two
cores) and with --jobs 1.  The TLC engine runs on the first 10k lines only, against the
Python engine on the same prefix.  `--mix reader` uses the reader's stress mix instead
(bench/reader_mix.py: random events of every format the reader knows, not a valid trace);
bench/command_rss.py runs each command and measures it.

Then the same walk in the kprobe format (build/bench/kprobe-<lines>-<seed>.txt, benchgen
--style kprobe): its probe lines are the kprobe events `poisoncheck record` sets up, as the
lab's captures show them (a struct page pointer and no pfn where the catalogue fetches
none); the same lines otherwise, the same verdict.  On it run the baseline and `validate`
(both --jobs), and the bench reports validate's ratio to the baseline for both traces.
A `validate` of a whole generated trace must give its design's verdict, accepted (exit 2
otherwise).

Other work adds a measurement with the decorator:

    @measurement("validate (python)")
    def _validate(path: Path) -> int:   # the number of lines processed (or a dict, see Result)
        ...
"""

import argparse
import json
import os
import re
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from validator.ftrace import iter_events
from validator.replay.input import read_file, read_lines
from validator.synth import benchgen

# bench/'s own modules: the script's folder is on sys.path (the tests put it there too)
from command_rss import run_command
from reader_mix import generate         # the reader's stress mix (--mix reader)

BENCH_DIR = Path("build/bench")
DEFAULT_LINES = 1_000_000
MEMORY_LINES = 10_000_000
LARK_SAMPLE = 20_000  # lines for the (slow) lark engine; its rate is per line anyway
TLC_LINES = 10_000    # the prefix both engines judge
TLC_SMALL = 2_000     # a prefix TLC finishes on (its state space grows exponentially)
TLC_TIMEOUT = 120     # seconds; a slower TLC run is reported as "> timeout"
DESIGN, FAILURES = "HWPoison", 3      # the generated trace is accepted by this design
GENERATOR = "benchgen-2"             # bump when the generated trace changes
STYLES = {"tracepoint": "trace", "kprobe": "kprobe"}   # benchgen's styles -> file name prefix
VALIDATE = "poisoncheck validate -d"   # a whole trace: the verdict must be accepted
# What runs on the kprobe-format trace (every measurement runs on the first style's)
SECOND_TRACE = ("baseline", f"{VALIDATE} {DESIGN} (default", f"{VALIDATE} {DESIGN} --jobs 1")

# The baseline: one regex over the kernel record columns, as a minimal parser would use.
BASELINE_RE = re.compile(
    r"\s*(.+?)-(\d+)\s+(?:\(\s*(?:\d+|-+)\)\s+)?\[(\d+)\]\s+(?:(\S+)\s+)?(\d+(?:\.\d+)?): (\w+): (.*)"
)


@dataclass
class Result:
    name: str
    lines: int
    seconds: float
    events: int | None = None       # protocol events the replay judged
    rss_mb: float | None = None     # peak RSS of the command's process
    note: str = ""

    @property
    def rate(self) -> float:
        return self.lines / self.seconds if self.seconds > 0 else float("inf")

    @property
    def event_rate(self) -> float | None:
        if self.events is None:
            return None
        return self.events / self.seconds if self.seconds > 0 else float("inf")


MEASUREMENTS: list[tuple[str, Callable[[Path], "int | dict"]]] = []


def measurement(name: str):
    """Register `fn(path) -> lines processed` as a named measurement.  It may return a
    dict instead: lines, and optionally seconds (when it timed itself), events, rss_mb,
    note."""

    def register(fn):
        MEASUREMENTS.append((name, fn))
        return fn

    return register


@measurement("baseline: bare regex scan")
def _baseline(path: Path) -> int:
    n = 0
    match = BASELINE_RE.match
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            match(line)
            n += 1
    return n


@measurement("reader (fast path)")
def _reader_fast(path: Path) -> int:
    n = 0
    for _ in read_file(path):
        n += 1
    return n


@measurement("reader + protocol fields")
def _reader_protocol(path: Path) -> int:
    """What the replay does: look into the fields of the protocol's events only."""
    n = 0
    for line in read_file(path):
        n += 1
        for event in line.events:
            if event.system is not None:
                dict(event.fields)
    return n


@measurement("reader + every field decoded")
def _reader_all_fields(path: Path) -> int:
    n = 0
    for line in read_file(path):
        n += 1
        for event in line.events:
            dict(event.fields)  # forces the lazy key=value decoding of every event
    return n


@measurement(f"reader (lark engine, first {LARK_SAMPLE} lines)")
def _reader_lark(path: Path) -> int:
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        lines = [line.rstrip("\n") for line in islice(f, LARK_SAMPLE)]
    n = 0
    for _ in read_lines(lines, engine="lark"):
        n += 1
    return n


# ---------------------------------------------------------------------------- commands
def _poisoncheck() -> list[str]:
    script = Path(sys.executable).with_name("poisoncheck")
    return [str(script)] if script.exists() else [sys.executable, "-m", "validator"]


def _count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            n += block.count(b"\n")
    return n


def _validate(path: Path, stdin: bool = False, engine: str = "python",
              jobs: int | None = None) -> dict:
    args = _poisoncheck() + ["validate", "-" if stdin else str(path), "-d", DESIGN, "--json"]
    if jobs is not None:
        args += ["--jobs", str(jobs)]
    if engine != "python":
        args += ["--engine", engine, "--timeout", str(TLC_TIMEOUT)]
    done = run_command(args, stdin=path if stdin else None)
    if engine == "tlc" and done["code"] == 2 and "exceeded --timeout" in done["stderr"]:
        return {"lines": _count_lines(path), "seconds": float(TLC_TIMEOUT),
                "rss_mb": done["rss_mb"], "note": f"timeout: more than {TLC_TIMEOUT} s"}
    try:
        verdict = json.loads(done["stdout"])[0]
    except (ValueError, IndexError):
        raise BenchError(f"{' '.join(args)}: exit {done['code']}: {done['stderr'].strip()[-400:]}")
    note = verdict["verdict"] if verdict["verdict"] == "accepted" else (
        f"{verdict['verdict']} at line {verdict['line']}: {verdict['reason']}")
    if done["tree_rss_mb"] > done["rss_mb"] * 1.05:
        note += f"; all processes {done['tree_rss_mb']:.0f} MB"
    return {"lines": _count_lines(path), "seconds": done["seconds"], "rss_mb": done["rss_mb"],
            "events": verdict["events"], "note": note}


class BenchError(Exception):
    """A command of the bench failed (message says which)."""


@measurement("poisoncheck parse")
def _parse_command(path: Path) -> dict:
    args = _poisoncheck() + ["parse", str(path), "--json"]
    done = run_command(args)
    if done["code"] != 0:
        raise BenchError(f"{' '.join(args)}: exit {done['code']}: {done['stderr'].strip()[-400:]}")
    summary = json.loads(done["stdout"])
    return {"lines": summary["lines"], "seconds": done["seconds"], "rss_mb": done["rss_mb"],
            "note": f"{summary['unparsed']} unparsed"}


@measurement(f"poisoncheck validate -d {DESIGN} (default: --jobs 2 on 2 cores)")
def _validate_file(path: Path) -> dict:
    return _validate(path)


@measurement(f"poisoncheck validate -d {DESIGN} --jobs 1")
def _validate_one_job(path: Path) -> dict:
    return _validate(path, jobs=1)


@measurement(f"poisoncheck validate -d {DESIGN} - (stdin)")
def _validate_stdin(path: Path) -> dict:
    return _validate(path, stdin=True)


def prefix_of(path: Path, lines: int) -> Path:
    """The first `lines` lines of the trace (both engines judge the same prefix)."""
    target = path.with_name(f"{path.stem}.first{lines}{path.suffix}")
    if not target.exists() or target.stat().st_mtime < path.stat().st_mtime:
        with open(path, "rb") as src, open(target, "wb") as dst:
            dst.writelines(islice(src, lines))
    return target


def _python_prefix(path: Path, lines: int) -> dict:
    from validator.replay.engine import replay
    prefix = prefix_of(path, lines)
    start = time.perf_counter()
    verdict = replay(iter_events(read_file(prefix)), DESIGN)
    return {"lines": _count_lines(prefix), "seconds": time.perf_counter() - start,
            "events": verdict.events, "note": verdict.verdict}


for _n in (TLC_LINES, TLC_SMALL):
    measurement(f"python engine, first {_n} lines (in process)")(
        lambda path, n=_n: _python_prefix(path, n))
    measurement(f"poisoncheck validate, first {_n} lines")(
        lambda path, n=_n: _validate(prefix_of(path, n)))
    measurement(f"poisoncheck validate --engine tlc, first {_n} lines")(
        lambda path, n=_n: _validate(prefix_of(path, n), engine="tlc"))


def trace_path(lines: int, seed: int, style: str = "tracepoint") -> Path:
    return BENCH_DIR / f"{STYLES[style]}-{lines}-{seed}.txt"


def ensure_trace(path: Path, lines: int, seed: int, mix: str = "valid",
                 style: str = "tracepoint") -> dict:
    """Generate the trace once; a sidecar JSON file says what it holds."""
    sidecar = path.with_name(path.name + ".json")
    wanted = {"generator": GENERATOR if mix == "valid" else "reader-mix", "lines": lines,
              "seed": seed}
    if mix == "valid":
        wanted |= {"design": DESIGN, "failures": FAILURES, "style": style}
    if path.exists() and sidecar.exists():
        info = json.loads(sidecar.read_text())
        if {k: info.get(k) for k in wanted} == wanted:
            return info
    print(f"generating {path} ({lines} lines) ...", file=sys.stderr)
    if mix == "valid":
        info = wanted | benchgen.generate(path, lines, seed, DESIGN, FAILURES, style=style)
    else:
        generate(path, lines, seed)
        info = dict(wanted)
    sidecar.write_text(json.dumps(info, indent=1) + "\n")
    return info


def run(path: Path, names: list[str] | None = None,
        among: tuple[str, ...] | None = None) -> list[Result]:
    """The measurements whose name contains one of `names` (None: all) and starts with
    one of `among` (None: all)."""
    results = []
    for name, fn in MEASUREMENTS:
        if names and not any(n in name for n in names):
            continue
        if among is not None and not name.startswith(among):
            continue
        start = time.perf_counter()
        got = fn(path)
        seconds = time.perf_counter() - start
        if isinstance(got, dict):
            results.append(Result(name, got["lines"], got.get("seconds", seconds),
                                  got.get("events"), got.get("rss_mb"), got.get("note", "")))
        else:
            results.append(Result(name, got, seconds))
    return results


def check_verdicts(results: list[Result], path: Path) -> None:
    """A generated trace is valid: a validate of all of it must accept it."""
    for r in results:
        if r.name.startswith(VALIDATE) and r.note.split(";")[0] != "accepted":
            raise BenchError(f"{path}: {r.name}: {r.note} (the generated trace is valid)")


def ratios(results: list[Result]) -> str:
    """validate's lines/s as a share of the baseline's, per validate measurement."""
    base = results[0].rate if results and results[0].name.startswith("baseline") else None
    if base is None:
        return ""
    prefix = f"{VALIDATE} {DESIGN}"
    return ", ".join(f"{r.name[len(prefix):].strip() or 'validate'} {r.rate / base:.2f}"
                     for r in results if r.name.startswith(VALIDATE))


def memory_run(sizes: list[int], seed: int) -> list[Result]:
    """`poisoncheck validate` (file and stdin) on traces of each size: peak RSS."""
    results = []
    for lines in sizes:
        path = BENCH_DIR / f"trace-{lines}-{seed}.txt"
        ensure_trace(path, lines, seed)
        for stdin in (False, True):
            got = _validate(path, stdin=stdin)
            name = f"validate {lines / 1e6:g}M lines" + (" (stdin)" if stdin else "")
            results.append(Result(name, got["lines"], got["seconds"], got["events"],
                                  got["rss_mb"], got["note"]))
    return results


def _table(results: list[Result], base: float) -> str:
    width = max(len(r.name) for r in results)
    rows = [f"{'measurement':<{width}}  {'lines':>9}  {'seconds':>8}  {'lines/s':>10}  "
            f"{'ratio':>5}  {'events/s':>9}  {'RSS MB':>6}  note"]
    for r in results:
        events = f"{r.event_rate:9,.0f}" if r.event_rate is not None else f"{'':9}"
        rss = f"{r.rss_mb:6.0f}" if r.rss_mb is not None else f"{'':6}"
        rows.append(f"{r.name:<{width}}  {r.lines:>9}  {r.seconds:>8.2f}  {r.rate:>10,.0f}  "
                    f"{r.rate / base:5.2f}  {events}  {rss}  {r.note}")
    return "\n".join(rows)


def _engines(results: list[Result]) -> list[str]:
    """How much faster the Python engine is than TLC on each prefix."""
    by, out = {r.name: r for r in results}, []
    for n in (TLC_LINES, TLC_SMALL):
        tlc = by.get(f"poisoncheck validate --engine tlc, first {n} lines")
        cmd = by.get(f"poisoncheck validate, first {n} lines")
        inproc = by.get(f"python engine, first {n} lines (in process)")
        if tlc is None or (cmd is None and inproc is None):
            continue
        at_least = "at least " if tlc.note.startswith("timeout") else ""
        parts = [f"TLC vs Python on the first {tlc.lines} lines: {at_least}"]
        if cmd is not None:
            parts.append(f"{tlc.seconds / cmd.seconds:,.0f}x as commands (with start-up)")
        if inproc is not None:
            parts.append(f"{at_least if cmd else ''}{tlc.seconds / inproc.seconds:,.0f}x "
                         f"against the Python engine in process (no start-up)")
        out.append(parts[0] + ", ".join(parts[1:]))
    return out


def _base(results: list[Result]) -> float:
    return results[0].rate if results else 1.0


def to_json(r: Result, base: float) -> dict:
    return {"name": r.name, "lines": r.lines, "seconds": round(r.seconds, 3),
            "lines_per_s": round(r.rate), "ratio": round(r.rate / base, 3),
            "events": r.events,
            "events_per_s": round(r.event_rate) if r.event_rate is not None else None,
            "rss_mb": round(r.rss_mb, 1) if r.rss_mb is not None else None, "note": r.note}


def main(argv: list[str] | None = None) -> int:
    global TLC_TIMEOUT
    parser = argparse.ArgumentParser(prog="python bench/bench.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=DEFAULT_LINES, help="size of the generated trace")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", action="append", help="run measurements whose name contains this")
    parser.add_argument("--mix", choices=["valid", "reader"], default="valid",
                        help="valid: a trace the replay accepts (default); reader: the reader's "
                             "stress mix")
    parser.add_argument("--memory-run", action="store_true",
                        help=f"also validate {MEMORY_LINES:,} lines (file and stdin): peak RSS")
    parser.add_argument("--memory-lines", type=int, default=MEMORY_LINES)
    parser.add_argument("--tlc-timeout", type=int, default=120,
                        help="seconds for each TLC run (slower: reported as a lower bound)")
    parser.add_argument("--styles", default="tracepoint,kprobe",
                        help="the generated traces, comma-separated (the first gets every "
                             "measurement, the others the baseline and validate): "
                             + ", ".join(STYLES))
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args(argv)
    TLC_TIMEOUT = args.tlc_timeout
    if args.lines < 100:
        parser.error("--lines must be at least 100")
    styles = args.styles.split(",")
    if not styles or any(s not in STYLES for s in styles) or len(set(styles)) < len(styles):
        parser.error(f"--styles: some of {', '.join(STYLES)}, comma-separated")
    if args.mix == "reader":
        styles = styles[:1]
    path = trace_path(args.lines, args.seed, styles[0])
    info = ensure_trace(path, args.lines, args.seed, args.mix, styles[0])
    others = {}
    try:
        results = run(path, args.only)
        if args.mix == "valid":
            check_verdicts(results, path)
        for style in styles[1:]:
            other = trace_path(args.lines, args.seed, style)
            got = ensure_trace(other, args.lines, args.seed, args.mix, style)
            others[style] = (other, got, run(other, args.only, SECOND_TRACE))
            check_verdicts(others[style][2], other)
        memory = memory_run(sorted({args.lines, args.memory_lines}), args.seed) \
            if args.memory_run else []
    except BenchError as err:
        print(f"bench: {err}", file=sys.stderr)
        return 2
    base = results[0].rate if results else 1.0
    max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.json:
        print(json.dumps({"trace": str(path), "size_bytes": path.stat().st_size, "info": info,
                          "cpus": os.cpu_count(), "load": os.getloadavg(),
                          "max_rss_mb": round(max_rss_mb, 1),
                          "style": styles[0],
                          "results": [to_json(r, base) for r in results],
                          "memory": [to_json(r, base) for r in memory],
                          "other_styles": {style: {
                              "trace": str(p), "size_bytes": p.stat().st_size, "info": i,
                              "results": [to_json(r, _base(rs)) for r in rs]}
                              for style, (p, i, rs) in others.items()}}, indent=2))
        return 0
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB, {info.get('protocol_lines', '?')} protocol "
          f"lines, {info.get('distinct_folios', '?')} folios; {os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.1f}")
    if results:
        print(_table(results, base))
        for line in _engines(results):
            print(line)
    if memory:
        print(_table(memory, base))
    for style, (other, got, rs) in others.items():
        print(f"\n{other} ({style} format): {other.stat().st_size / 1e6:.1f} MB, "
              f"{got.get('protocol_lines', '?')} protocol lines")
        if rs:
            print(_table(rs, _base(rs)))
    for style, rs in [(styles[0], results)] + [(s, o[2]) for s, o in others.items()]:
        if ratios(rs):
            print(f"validate / baseline, {style} trace: {ratios(rs)}")
    print(f"max RSS of this process {max_rss_mb:.0f} MB (the in-process measurements; "
          f"RSS MB: the command's largest process; the note gives all its processes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
