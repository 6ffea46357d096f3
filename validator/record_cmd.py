"""`poisoncheck record`: the tracefs set-up for the probe catalogue, printed as a shell script
(default) or written into tracefs (--apply).

The set-up is one list of steps (`setup_steps`), rendered by `render_script` or carried out by
`apply_steps`, so the script and --apply always do the same writes in the same order:

  1. tracing_on = 0
  2. remove the poisoncheck probes of an earlier run (disable each first: the kernel refuses
     to remove an enabled probe)
  3. buffer_size_kb, trace_clock
  4. append one line per probe to kprobe_events (append: writing without O_APPEND would
     delete every probe, the kernel's as well as other tools')
  5. the probes' filters
  6. enable the probes and the upstream tracepoints
  7. clear the trace buffer, tracing_on = 1
"""

from __future__ import annotations

import errno
import re
import shlex
import textwrap
from dataclasses import dataclass
from pathlib import Path

import click

from .probes import Catalogue, CatalogueError, ProbeSpec, load_catalogue

DEFAULT_TRACEFS = "/sys/kernel/tracing"
DESIGNS = ("NoHold", "FolioRef", "HWPoison", "BuggyCleanup", "NoMoreSeamcalls")


class RecordError(click.ClickException):
    """Not a tracefs, a refused write, missing symbols: one line on stderr, exit code 2."""

    exit_code = 2


@dataclass(frozen=True)
class Step:
    path: str  # relative to the tracefs root
    text: str  # written followed by a newline ("" writes nothing: truncation only)
    append: bool = False
    comment: str = ""  # shown above the line in the script
    optional: bool = False  # skipped when the file does not exist


REMOVE_OLD = "remove-old-probes"  # placeholder step: depends on what kprobe_events holds
_OLD_PROBE = re.compile(r"^[pr]\d*:(?P<group>[^/\s]+)/(?P<name>\S+)\s")


def setup_steps(cat: Catalogue, buffer_kb: int | None = None,
                only_upstream: bool = False) -> list[Step | str]:
    probes = cat.probes(only_upstream)
    steps: list[Step | str] = [
        Step("tracing_on", "0", comment="1. stop tracing while the set-up changes"),
        REMOVE_OLD,
        Step("buffer_size_kb", str(buffer_kb or cat.buffer_size_kb),
             comment="3. ring buffer per CPU (KiB) and one clock for all CPUs"),
    ]
    if cat.trace_clock:
        steps.append(Step("trace_clock", cat.trace_clock, optional=True))
    for i, spec in enumerate(probes):
        comment = _probe_comment(spec)
        if i == 0:
            comment = "4. the probes, appended one line at a time\n" + comment
        steps.append(Step("kprobe_events", spec.kprobe_line(), append=True, comment=comment))
    for i, spec in enumerate(s for s in probes if s.filter):
        steps.append(Step(spec.filter_path(), spec.filter,
                          comment="5. keep only the calls that matter" if i == 0 else ""))
    enables = probes + cat.tracepoints()
    for i, spec in enumerate(enables):
        steps.append(Step(spec.enable_path(), "1",
                          comment="6. enable the probes and the upstream tracepoints" if i == 0 else ""))
    steps.append(Step("trace", "", optional=True, comment="7. empty the buffer and start"))
    steps.append(Step("tracing_on", "1"))
    return steps


def _probe_comment(spec: ProbeSpec) -> str:
    where = "" if spec.upstream else " [needs the design's patch]"
    text = f"{spec.name} -> {spec.protocol}: {spec.summary}{where}"
    if spec.unfetched:
        text += f" (not printed: {', '.join(spec.unfetched)})"
    return text


def collect_hint(tracefs: str) -> str:
    return "\n".join([
        "Tracing is on. Run the workload, then collect the trace:",
        f"  cat {tracefs}/trace > run.trace          (what the buffer holds now)",
        f"  cat {tracefs}/trace_pipe > run.trace     (or stream it while the workload runs)",
        f"  echo 0 > {tracefs}/tracing_on",
        "and check it against a design:",
        "  poisoncheck validate run.trace --design D   (D: " + ", ".join(DESIGNS) + ")",
    ])


def render_script(steps: list[Step | str], tracefs: str, cat: Catalogue,
                  only_upstream: bool = False) -> str:
    probes = cat.probes(only_upstream)
    patched = [s.name for s in probes if not s.upstream]
    out = [
        "#!/bin/sh",
        f"# poisoncheck tracefs set-up: {len(probes)} kprobe events (group {cat.group}) and "
        f"{len(cat.tracepoints())} upstream tracepoints.",
        "# Read it, then run it as root: poisoncheck record | sudo sh  (or: poisoncheck record --apply)",
        "# Needs CONFIG_KPROBE_EVENTS, BTF with CONFIG_PROBE_EVENTS_BTF_ARGS (the fetch-args use",
        "# argument names), and the kvm and kvm_intel modules loaded.",
    ]
    if patched:
        note = ("Only a kernel with a design's patch has: " + ", ".join(patched)
                + " (leave them out: --only-upstream).")
        out += [f"# {line}" for line in textwrap.wrap(note, 94)]
    out += [
        "set -e",
        f"T={shlex.quote(tracefs)}",
        '[ -f "$T/kprobe_events" ] || { echo "$T is not a tracefs with kprobe_events" >&2; exit 2; }',
    ]
    for step in steps:
        if step == REMOVE_OLD:
            out += [
                "",
                f"# 2. remove {cat.group} probes left from an earlier run (an enabled probe cannot be removed)",
                f"for e in $(sed -n 's|^[pr][0-9]*:{cat.group}/\\([^ ]*\\) .*|\\1|p' \"$T/kprobe_events\"); do",
                f'\techo 0 > "$T/events/{cat.group}/$e/enable"',
                f'\techo "-:{cat.group}/$e" >> "$T/kprobe_events"',
                "done",
            ]
            continue
        if step.comment:
            if step.comment[0].isdigit():
                out.append("")
            out += [f"# {line}" for line in step.comment.splitlines()]
        target = f'"$T/{step.path}"'
        redirect = ">>" if step.append else ">"
        command = (f"echo {shlex.quote(step.text)} {redirect} {target}" if step.text
                   else f": > {target}")
        if step.optional:
            command = f"[ ! -e {target} ] || {command}"
        out.append(command)
    out.append("")
    out += [f"# {line}" for line in collect_hint(tracefs).splitlines()]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- checks

def read_text(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def require_tracefs(root: Path) -> None:
    if not root.is_dir():
        raise RecordError(f"{root}: no such directory (mount tracefs: "
                          "mount -t tracefs nodev /sys/kernel/tracing)")
    if not (root / "kprobe_events").is_file():
        raise RecordError(f"{root} is not a tracefs with kprobe events (no kprobe_events file; "
                          "needs CONFIG_KPROBE_EVENTS, and tracefs mounted there)")


def missing_tracepoints(root: Path, cat: Catalogue) -> list[str]:
    return [s.qualname for s in cat.tracepoints() if not (root / s.enable_path()).is_file()]


def check_symbols(root: Path, cat: Catalogue, only_upstream: bool) -> tuple[bool, list[ProbeSpec]]:
    """(could check, probes whose symbol is not in available_filter_functions)."""
    text = read_text(root / "available_filter_functions")
    if text is None:
        return False, []
    known = set()
    for line in text.splitlines():
        parts = line.split()
        if parts:
            known.add(parts[0])
    missing = []
    for spec in cat.probes(only_upstream):
        symbol = spec.symbol.split(":", 1)[-1]
        if symbol not in known:
            missing.append(spec)
    return True, missing


def _missing_message(root: Path, missing: list[ProbeSpec]) -> str:
    by_symbol: dict[str, list[ProbeSpec]] = {}
    for spec in missing:
        by_symbol.setdefault(spec.symbol, []).append(spec)
    names = ", ".join(
        f"{symbol} ({', '.join(s.name for s in specs)}"
        f"{'' if all(s.upstream for s in specs) else '; design patch'})"
        for symbol, specs in by_symbol.items())
    hint = "inlined, renamed, or its module (kvm, kvm_intel) not loaded"
    if any(not s.upstream for s in missing):
        hint += "; on a kernel without a design's patch use --only-upstream"
    return (f"{len(by_symbol)} probed function(s) not in {root}/available_filter_functions: "
            f"{names} ({hint})")


# ---------------------------------------------------------------- writing

def _write_file(path: Path, text: str, append: bool) -> None:
    """One open and one write per line, as `echo` does: tracefs parses each write."""
    with open(path, "a" if append else "w") as fh:
        if text:
            fh.write(text + "\n")


def old_probes(root: Path, group: str) -> list[str]:
    names = []
    for line in (read_text(root / "kprobe_events") or "").splitlines():
        m = _OLD_PROBE.match(line + " ")
        if m and m["group"] == group:
            names.append(m["name"])
    return names


def apply_steps(root: Path, steps: list[Step | str], cat: Catalogue, echo) -> int:
    """Carry out the steps in order; report each write through `echo`; RecordError on the
    first refused write.  Returns the number of writes."""
    writes = 0
    probe_line = 0

    def write(rel: str, text: str, append: bool, what: str):
        nonlocal writes
        path = root / rel
        try:
            _write_file(path, text, append)
        except OSError as err:
            raise RecordError(_refused(root, path, text, what, err)) from None
        writes += 1
        shown = text if text else "(emptied)"
        echo(f"{'appended to' if append else 'wrote'} {path}: {shown}")

    for step in steps:
        if step == REMOVE_OLD:
            for name in old_probes(root, cat.group):
                enable = f"events/{cat.group}/{name}/enable"
                if (root / enable).exists():
                    write(enable, "0", False, f"disabling the old probe {cat.group}/{name}")
                write("kprobe_events", f"-:{cat.group}/{name}", True,
                      f"removing the old probe {cat.group}/{name}")
            continue
        if step.optional and not (root / step.path).exists():
            echo(f"skipped {root / step.path}: not present")
            continue
        what = ""
        if step.path == "kprobe_events":
            probe_line += 1
            what = f"line {probe_line} of kprobe_events"
        elif step.path.endswith("/filter"):
            what = f"the filter of {step.path.split('/')[1]}/{step.path.split('/')[2]}"
        write(step.path, step.text, step.append, what)
    return writes


def _refused(root: Path, path: Path, text: str, what: str, err: OSError) -> str:
    reason = err.strerror or str(err)
    if err.errno in (errno.EACCES, errno.EPERM):
        return f"cannot write {path}: {reason} (run as root)"
    if err.errno == errno.ENOENT:
        hint = ""
        if "/events/" in f"/{path.relative_to(root)}":
            hint = " (the event does not exist: the probe was not created, or its module is not loaded)"
        return f"cannot write {path}: {reason}{hint}"
    if what:
        log = root / "error_log"
        more = f"; the kernel says why in {log}" if log.exists() else ""
        return f"the kernel refused {what}: {text!r} ({reason}){more}"
    return f"cannot write {path}: {reason}"


# ---------------------------------------------------------------- command

@click.command()
@click.option("--apply", "do_apply", is_flag=True,
              help="Write the set-up into the tracefs instead of printing it (needs root).")
@click.option("--tracefs", "tracefs", default=DEFAULT_TRACEFS, show_default=True,
              metavar="DIR", help="The tracefs mount point.")
@click.option("--buffer-kb", type=click.IntRange(min=1), default=None, metavar="N",
              help="Ring buffer size per CPU in KiB [default: the catalogue's, 32768].")
@click.option("--only-upstream", is_flag=True,
              help="Leave out the probes on functions that only a design's patch adds.")
@click.option("--check", "check", is_flag=True,
              help="Fail unless every probed function is in DIR/available_filter_functions.")
@click.option("--catalogue", "catalogue_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Another probe catalogue [default: the packaged probes.toml].")
def record(do_apply, tracefs, buffer_kb, only_upstream, check, catalogue_path):
    """Set up tracefs to record what the validator reads: the poisoncheck kprobe events
    (kprobe_events lines with BTF argument names), the upstream tracepoints to enable, the
    buffer size, then tracing on.

    By default it prints the set-up as a shell script and writes nothing; read it, then
    pipe it to `sudo sh`, or run again with --apply.  Either way, collect the trace with
    `cat DIR/trace > run.trace` (or `cat DIR/trace_pipe`) and check it with
    `poisoncheck validate run.trace --design D`.

    \b
    Examples:
      poisoncheck record                      # print the script
      poisoncheck record | sudo sh
      sudo poisoncheck record --apply --check --only-upstream
      poisoncheck record --tracefs /sys/kernel/debug/tracing --buffer-kb 131072

    \b
    Exit codes: 0 printed or applied, 2 a bad catalogue, DIR not a tracefs, a write the
    kernel refused (the message names the line), or --check found missing functions.
    """
    try:
        cat = load_catalogue(catalogue_path)
    except CatalogueError as err:
        raise RecordError(str(err)) from None
    root = Path(tracefs)
    steps = setup_steps(cat, buffer_kb, only_upstream)

    if check or do_apply:
        require_tracefs(root)
    if check:
        could, missing = check_symbols(root, cat, only_upstream)
        if not could:
            click.echo(f"note: {root}/available_filter_functions is missing; symbols not checked",
                       err=True)
        elif missing:
            raise RecordError(_missing_message(root, missing))
        else:
            click.echo(f"all {len(cat.probes(only_upstream))} probed functions are in "
                       f"{root}/available_filter_functions", err=True)

    if not do_apply:
        click.echo(render_script(steps, str(root), cat, only_upstream), nl=False)
        return

    absent = missing_tracepoints(root, cat)
    if absent:
        raise RecordError(f"{len(absent)} upstream event(s) missing under {root}/events: "
                          f"{', '.join(absent)} (is the kvm module loaded? CONFIG_RAS?)")
    writes = apply_steps(root, steps, cat, click.echo)
    click.echo(f"{writes} writes to {root}.")
    click.echo(collect_hint(str(root)))
