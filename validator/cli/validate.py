"""`poisoncheck validate`: replay captured traces against a design of the spec."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import click

from validator.cli.errors import (InputError, Terminated, device_option, inode_option,
                                  terminal_safe)
from validator.ftrace import LineKind, TraceInputError, iter_events
from validator.cli.options import FiniteRange
from validator.ftrace.opener import sniff
from validator.ftrace.parallel import WorkerError
from validator.ftrace.reader import UnparsedCount
from validator.model import ALL_CHECKS, ALL_FEATURES, DEFAULT_FEATURES, DESIGNS
from validator.replay.evidence import summary_lines
from validator.replay.input import Observations, default_reader_jobs, read_file, scan_gmem_dev
from validator.replay.big_folios import SlotPlan
from validator.replay.engine import judged_with_survey, replay
from validator.replay.verdict import ReplayInputError, Verdict
from validator.tlc.process import RunnerError

EXIT = {"accepted": 0, "violation": 1, "inconclusive": 3}
# A pipe or device is copied to a file before it is read; its first bytes are judged first
# and the copy has a bound (a capture too large for it can be saved to a file first).
SNIFF_BYTES = 64 << 10
SPOOL_LIMIT = 2 << 30


def gmem_device(path: str, given: tuple[int, int] | None) -> tuple[tuple[int, int] | None, str]:
    """guest_memfd's device for a trace: --gmem-dev, else read off the file (a marker
    line, or inferred; see observations.scan_gmem_dev).  stdin is not read twice: there
    only a marker line seen before the page-cache events names it."""
    if given is not None:
        return given, "--gmem-dev"
    if path == "-":
        return None, ""
    return scan_gmem_dev(path)


def validate_one(path: str, design: str, added=(), disabled=(),
                 tlc=None, coverage: bool = False, jobs: int = 1,
                 gmem_dev: tuple[tuple[int, int] | None, str] | None = None,
                 features: frozenset = DEFAULT_FEATURES, gmem_ino: int | None = None) -> Verdict:
    """Judge one trace file against one design, with Python or (given `tlc`) with TLC.
    jobs > 1: the Python engine's input is read by that many processes (same verdict).
    gmem_dev: (device, how it was found) as gmem_device() gives it (None: find it here)."""
    dev, how = gmem_dev if gmem_dev is not None else gmem_device(path, None)
    unparsed = UnparsedCount()

    def judge(plan: SlotPlan | None) -> Verdict:
        nonlocal unparsed
        if tlc is None:
            items = Observations(path, jobs)
            verdict = replay(items, design, added, disabled, coverage, raw_of=items.raw_of,
                             gmem_dev=dev, gmem_dev_from=how, features=features,
                             slot_plan=plan, gmem_ino=gmem_ino)
            # the replay reads to the end (its evidence counts the whole capture)
            unparsed = items.unparsed_before(None)
            return verdict
        from validator.replay.tlc_engine import validate_tlc
        read = UnparsedCount(keep_lines=True)
        verdict = validate_tlc(iter_events(_counting(read_file(path), read)), design,
                               tlc, tlc.out_dir / _work_name(path) / design, added,
                               disabled, dev, how, features, plan, gmem_ino)
        unparsed.merge(read)        # the whole capture, as the Python engine reads it
        return verdict

    def read_again() -> Observations:       # a trace of big folios: its pages first
        if path == "-":
            raise InputError("<stdin>: folios of more than 512 pages are read twice (their "
                             "pages first); save stdin to a file")
        return Observations(path, jobs)

    verdict = judged_with_survey(judge, read_again, design, dev, how)
    if dev is None and how and path != "-":
        verdict.notes.append(f"guest_memfd's device: {how}")
    verdict.unparsed = unparsed.count
    if unparsed.count:
        line, reason = unparsed.first[0]
        verdict.notes.append(f"{unparsed.count} line(s) did not parse and were skipped, the "
                             f"first at line {line} ({reason}); `poisoncheck parse` lists them")
    return verdict


def _work_name(path: str) -> str:
    """A folder name for the TLC engine's files: the trace's name, cut, with a hash of the
    whole path so that long or similar names stay apart."""
    if path == "-":
        return "stdin"
    digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:12]
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in Path(path).name[:60])
    return f"{stem}-{digest}"


def _input_file(path: str, stack: ExitStack) -> str:
    """The file to read for `path`: itself when it is a regular file; a pipe or a
    character device (process substitution, /dev/stdin) is first copied to a temporary
    file, since a trace is read more than once (its device, then each design)."""
    if path == "-":
        return path
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        why = "no such file" if isinstance(err, FileNotFoundError) else err.strerror or str(err)
        raise InputError(f"{path}: {why}") from None
    if stat.S_ISREG(mode):
        return path
    if stat.S_ISDIR(mode):
        raise InputError(f"{path}: is a directory, not a trace")
    suffix = next((s for s in (".gz", ".xz") if path.endswith(s)), "")
    # Deleted on any exit Python sees (an error, SIGINT, SIGTERM); only SIGKILL leaves it,
    # and then no larger than SPOOL_LIMIT.
    spool = stack.enter_context(tempfile.NamedTemporaryFile(prefix="poisoncheck-", suffix=suffix))
    try:
        with open(path, "rb") as source:
            head = _head(source)
            # What is not text is refused before any of it is spooled (/dev/zero, /dev/urandom).
            why = None if suffix else sniff(head)
            if why is not None:
                raise InputError(f"{path}: {why}")
            spool.write(head)
            copied = len(head)
            while chunk := source.read(1 << 20):
                copied += len(chunk)
                if copied > SPOOL_LIMIT:
                    raise InputError(f"{path}: more than {SPOOL_LIMIT >> 20} MiB from a pipe or "
                                     f"device; save it to a file and validate that")
                spool.write(chunk)
        spool.flush()
    except OSError as err:
        raise InputError(f"{path}: {err.strerror or err}") from None
    return spool.name


def _head(source) -> bytes:
    """The first SNIFF_BYTES of a pipe or device (a read of a pipe may return less)."""
    head = b""
    while len(head) < SNIFF_BYTES and (more := source.read(SNIFF_BYTES - len(head))):
        head += more
    return head


def _counting(lines, unparsed: UnparsedCount):
    for line in lines:
        if line.kind is LineKind.UNPARSED:
            unparsed.add(line.line_no, line.reason)
        yield line


def tlc_setup(timeout: float):
    from validator.paths import build_dir
    from validator.tlc import setup
    try:
        return setup.tlc_setup(build_dir() / "validate", timeout)
    except setup.SetupError as err:
        raise InputError(str(err)) from None


def _describe(path: str, v: Verdict, verbose: bool) -> list[str]:
    head = f"{path}: {v.design}: {v.verdict}"
    if v.verdict == "violation":
        what = f"property {v.property}" if v.kind == "property" else "a step the design forbids"
        head += f" ({what}) at line {v.line}"
    out = [head]
    if v.verdict == "violation":
        out.append(f"  event:    {v.event.strip() if v.event else ''}")
        out.append(f"  protocol: {v.protocol_event}")
        if v.file:
            out.append(f"  file:     guest_memfd {v.file}")
        out.append(f"  reason:   {v.reason}")
        for guard in v.guards:
            out.append(f"  guard:    {guard}")
        out.append(f"  accepted prefix: lines 1-{v.accepted_prefix}")
        shown = v.candidates if verbose else v.candidates[:1]
        for i, state in enumerate(shown, 1):
            out.append(f"  candidate state {i} of {len(v.candidates)} before the event:")
            out.extend(f"    {k} = {json.dumps(val)}" for k, val in state.items())
    elif v.reason:
        out.append(f"  {v.reason}")
    out.append(f"  evidence: {v.events} protocol event(s) replayed, {v.folio_events} about "
               f"{v.folios} guest_memfd folio(s); what the capture could observe:")
    out.extend(summary_lines(v.observability))
    out.extend(f"  note: {n}" for n in v.notes)
    if v.coverage is not None:
        c = v.coverage
        out.append(f"  coverage: {len(c['actions'])} of "
                   f"{len(c['actions']) + len(c['actions_never'])} spec actions taken")
        out.append(f"    taken:   {', '.join(c['actions']) or '-'}")
        out.append(f"    never:   {', '.join(c['actions_never']) or '-'}")
        out.append(f"    checks that refused a step: {', '.join(c['checks_refused']) or '-'}")
        out.append(f"    checks never exercised: {', '.join(c['checks_never']) or '-'}")
    return out


def _check_names(ctx, param, values):
    unknown = set(values) - ALL_CHECKS
    if unknown:
        raise click.BadParameter(f"unknown check(s) {', '.join(sorted(unknown))}")
    return tuple(values)


class TraceNotJudged(InputError):
    """A trace that could not be judged (bad input, TLC failed): exit 2, and with --json
    the verdicts decided before it are still written, then this error."""

    def __init__(self, message: str, trace: str):
        super().__init__(message)
        self.trace = trace


def _judge_all(traces, designs, results, gmem_dev, added, disabled, tlc, coverage, jobs,
               features, gmem_ino=None) -> None:
    """Judge every trace with every design, appending (path, verdict) to results.
    Raises TraceNotJudged for the first trace that cannot be judged."""
    for path in traces:
        try:
            _judge_trace(path, designs, results, gmem_dev, added, disabled, tlc, coverage,
                         jobs, features, gmem_ino)
        except InputError as err:
            raise TraceNotJudged(err.message, path) from None


def _judge_trace(path, designs, results, gmem_dev, added, disabled, tlc, coverage, jobs,
                 features, gmem_ino=None) -> None:
    with ExitStack() as stack:
        source = _input_file(path, stack)
        for d in designs:
            try:
                if d == designs[0]:              # read the file once for its device
                    device = gmem_device(source, gmem_dev)
                verdict = validate_one(source, d, added, disabled, tlc, coverage, jobs,
                                       device, DEFAULT_FEATURES | set(features), gmem_ino)
            except TraceInputError as err:          # names the file itself
                raise InputError(str(err).replace(source, path)) from None
            except (ReplayInputError, RunnerError, WorkerError) as err:
                raise InputError(f"{path}: {err}") from None
            except OSError as err:      # the TLC engine's folder: read-only, full
                raise InputError(f"{err.filename or path}: {err.strerror or err}") from None
            results.append((path, verdict))


def _print_json(results, last: dict | None = None) -> None:
    """The verdicts as one JSON list; `last` says why judging stopped early."""
    done = [{"trace": p, **v.to_json()} for p, v in results]
    json.dump(done + ([last] if last else []), sys.stdout, indent=1)
    click.echo()


@click.command()
@click.argument("traces", nargs=-1, required=True)
@click.option("--design", "-d", default="NoHold", show_default=True,
              type=click.Choice(DESIGNS + ("all",)),
              help="The design to judge against; `all` tries every design.")
@click.option("--disable", "disabled", multiple=True, callback=_check_names, metavar="CHECK",
              help="Switch a check off (a mutant), as in spec/matrix.toml; repeatable.")
@click.option("--add", "added", multiple=True, callback=_check_names, metavar="CHECK",
              help="Switch a proposed check on; repeatable.")
@click.option("--feature", "features", multiple=True, metavar="NAME",
              type=click.Choice(sorted(ALL_FEATURES - DEFAULT_FEATURES)),
              help="A kernel path or platform trait the spec's Features adds (pw_erratum: "
                   "the partial-write erratum; cross_td; dissolve); repeatable.")
@click.option("--engine", type=click.Choice(["python", "tlc"]), default="python",
              show_default=True, help="python: the fast replay; tlc: the spec judged by TLC.")
@click.option("--timeout", type=FiniteRange(min=1), default=600, show_default=True,
              help="Seconds one TLC run may take (--engine tlc).")
@click.option("--coverage", is_flag=True,
              help="Also say which spec actions the trace took and which named checks "
                   "refused a step (Python engine).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Processes that read the trace for the Python engine (default: 2 where "
                   "this process may use 2 or more cores, else 1). The verdict is the same "
                   "for any number.")
@click.option("--gmem-dev", callback=device_option, metavar="MAJ:MIN",
              help="guest_memfd's device (st_dev of a guest_memfd, e.g. 0:16): which "
                   "page-cache events are guest_memfd's. Default: the marker line "
                   "`poisoncheck record` writes, else inferred from the capture (a note says).")
@click.option("--gmem-ino", callback=inode_option, metavar="INO",
              help="Judge one guest_memfd file only, by its inode (as the page-cache events "
                   "print it, hex, e.g. 0x242): a host runs many VMs, each with its own files. "
                   "Default: every file, kept apart by inode.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per trace and design.")
@click.option("--verbose", "-v", is_flag=True, help="Show every candidate state, not just one.")
def validate(traces, design, disabled, added, features, engine, timeout, coverage, jobs,
             gmem_dev, gmem_ino, as_json, verbose):
    """Replay ftrace logs against a design's transition relation.

    Each trace is judged on conformance (every event is a step the design
    allows) and safety (no state the trace may have reached breaks a safety
    property).  A lost-events marker makes the verdict inconclusive from
    there on.  Lines that do not parse are skipped, counted and named in a
    note.  `-` reads stdin; .gz and .xz are read by extension.  With
    --engine tlc the same trace is written into a generated TLA+ module
    under build/validate/ and TLC judges it (slow; same verdicts).

    \b
    Examples:
      poisoncheck validate run.trace --design HWPoison
      poisoncheck validate traces/*.trace --design all
      cat /sys/kernel/tracing/trace_pipe | poisoncheck validate - -d NoHold

    \b
    Exit codes: 0 accepted, 1 violation, 3 inconclusive, 2 input error;
    with several traces the worst wins (2 > 1 > 3 > 0).  With --design all:
    0 when some design accepts every trace, 3 when none does but no trace
    violates any, 1 otherwise.  A trace with no event about a guest_memfd
    folio is inconclusive: every verdict says what it rests on.
    """
    designs = DESIGNS if design == "all" else (design,)
    if "-" in traces and len(designs) > 1:
        raise InputError("--design all reads each trace once per design; save stdin to a file")
    if coverage and engine == "tlc":
        raise click.UsageError("--coverage works with the Python engine only")
    tlc = tlc_setup(timeout) if engine == "tlc" else None
    jobs = jobs or default_reader_jobs()
    results: list[tuple[str, Verdict]] = []
    try:
        _judge_all(traces, designs, results, gmem_dev, added, disabled, tlc, coverage, jobs,
                   features, gmem_ino)
    except TraceNotJudged as bad:       # exit 2; --json still says what was decided
        if as_json:
            _print_json(results, {"trace": bad.trace, "error": bad.message,
                                  "decided": len(results)})
        raise
    except (KeyboardInterrupt, Terminated) as stop:     # the same for an interrupt
        if as_json:
            _print_json(results, {"interrupted": "SIGINT" if isinstance(stop, KeyboardInterrupt)
                                  else "SIGTERM", "decided": len(results)})
        raise
    if as_json:
        _print_json(results)
    else:
        for p, v in results:
            click.echo("\n".join(terminal_safe(line) for line in _describe(p, v, verbose)))
        if design == "all":
            accepting = [d for d in designs
                         if all(v.verdict == "accepted" for p, v in results if v.design == d)]
            click.echo(f"designs that accept: {', '.join(accepting) or 'none'}")
    if design == "all":
        ok = any(all(v.verdict == "accepted" for _, v in results if v.design == d)
                 for d in designs)
        undecided = all(v.verdict != "violation" for _, v in results)
        sys.exit(0 if ok else 3 if undecided else 1)
    codes = {EXIT[v.verdict] for _, v in results}
    for code in (1, 3, 0):
        if code in codes:
            sys.exit(code)
