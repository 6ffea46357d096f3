"""The tracefs set-up for the probe catalogue, and its undoing (`poisoncheck record`).

A set-up is one list of steps (`setup_steps`), printed as a shell script by
`render_script` or carried out by `apply_steps`, so the script and --apply
always do the same writes in the same order:

  0. a private instance (instances/NAME), when asked for
  1. tracing_on = 0
  2. remove the poisoncheck probes of an earlier run (disable each first: the kernel refuses
     to remove an enabled probe)                                   [kernels with kprobes]
  3. buffer_size_kb, trace_clock
  4. append one line per probe to kprobe_events (append: writing without O_APPEND would
     delete every probe, the kernel's as well as other tools')     [kernels with kprobes]
  5. the probes' filters; the page-cache events filtered to guest_memfd's device
  6. enable the probes and the upstream tracepoints
  7. clear the trace buffer, tracing_on = 1
  8. a marker line naming guest_memfd's device, so `validate` knows which page-cache
     events are guest_memfd's

`remove_steps` undoes it (events off, our probes removed, the instance removed);
`apply_steps` runs them itself when a write fails midway.  Kprobe events live in
the global kprobe_events file (every instance sees them); everything else is
written into the instance.
"""

from __future__ import annotations

import errno
import re
import shlex
import textwrap
from dataclasses import dataclass
from pathlib import Path

from validator.recording.catalogue import Catalogue, ProbeSpec

DEFAULT_TRACEFS = "/sys/kernel/tracing"
DESIGNS = ("NoHold", "FolioRef", "HWPoison", "BuggyCleanup", "NoMoreSeamcalls")
FILEMAP = "filemap"             # the page-cache events filtered by device
MARKER = "poisoncheck"          # first word of the marker line (replay.MARKER_PREFIX)
_INSTANCE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


class RecordError(Exception):
    """Not a tracefs, a refused write, missing symbols: one line, exit code 2."""


@dataclass(frozen=True)
class TracefsStep:
    path: str  # relative to the tracefs root
    text: str = ""  # written followed by a newline ("" writes nothing: truncation only)
    append: bool = False
    comment: str = ""  # shown above the line in the script
    optional: bool = False  # skipped when the file does not exist
    kind: str = "write"  # "write" | "mkdir" | "rmdir"


REMOVE_OLD = "remove-old-probes"  # placeholder step: depends on what kprobe_events holds
_OLD_PROBE = re.compile(r"^[pr]\d*:(?P<group>[^/\s]+)/(?P<name>\S+)\s")


@dataclass(frozen=True)
class Plan:
    """What to set up: which probes and tracepoints, where."""
    cat: Catalogue
    instance: str | None = None
    kprobes: bool = True                 # the kernel has kprobe events
    only_upstream: bool = False
    tracepoints: tuple[ProbeSpec, ...] | None = None   # None: every one of the catalogue
    buffer_kb: int | None = None
    gmem_dev: tuple[int, int] | None = None
    pid: int | None = None

    @property
    def base(self) -> str:
        return f"instances/{self.instance}/" if self.instance else ""

    def probes(self) -> list[ProbeSpec]:
        return self.cat.probes(self.only_upstream) if self.kprobes else []

    def events(self) -> list[ProbeSpec]:
        tps = list(self.tracepoints if self.tracepoints is not None else self.cat.tracepoints())
        return self.probes() + tps

    def marker(self) -> str | None:
        if self.gmem_dev is None:
            return None
        major, minor = self.gmem_dev
        return f"{MARKER} gmem_dev={major}:{minor} kprobes={int(self.kprobes)}"


def check_instance_name(name: str) -> str:
    if not _INSTANCE_NAME.fullmatch(name) or name in (".", ".."):
        raise RecordError(f"instance name {name!r}: letters, digits, _ . - only (at most 64)")
    return name


def dev_t(dev: tuple[int, int]) -> int:
    """The kernel's internal dev_t, as a tracepoint's s_dev field holds it (MKDEV)."""
    return (dev[0] << 20) | dev[1]


def setup_steps(plan: Plan) -> list[TracefsStep | str]:
    cat, base = plan.cat, plan.base
    probes = plan.probes()
    steps: list[TracefsStep | str] = []
    if plan.instance:
        steps.append(TracefsStep(f"instances/{plan.instance}", kind="mkdir",
                          comment="0. a private tracefs instance"))
    steps.append(TracefsStep(base + "tracing_on", "0", comment="1. stop tracing while the set-up changes"))
    if plan.kprobes:
        steps.append(REMOVE_OLD)
    steps.append(TracefsStep(base + "buffer_size_kb", str(plan.buffer_kb or cat.buffer_size_kb),
                      comment="3. ring buffer per CPU (KiB) and one clock for all CPUs"))
    if cat.trace_clock:
        steps.append(TracefsStep(base + "trace_clock", cat.trace_clock, optional=True))
    for i, spec in enumerate(probes):
        comment = _probe_comment(spec)
        if i == 0:
            comment = "4. the probes, appended one line at a time\n" + comment
        steps.append(TracefsStep("kprobe_events", spec.kprobe_line(), append=True, comment=comment))
    filters = [(spec, spec.filter) for spec in probes if spec.filter]
    if plan.gmem_dev is not None:
        filters += [(spec, f"s_dev == {dev_t(plan.gmem_dev)}") for spec in plan.events()
                    if spec.system == FILEMAP]
    for i, (spec, text) in enumerate(filters):
        steps.append(TracefsStep(base + spec.filter_path(), text,
                          comment="5. keep only the calls that matter" if i == 0 else ""))
    if plan.pid is not None:
        steps.append(TracefsStep(base + "set_event_pid", str(plan.pid), comment="only this process"))
    for i, spec in enumerate(plan.events()):
        steps.append(TracefsStep(base + spec.enable_path(), "1",
                          comment="6. enable the probes and the upstream tracepoints" if i == 0 else ""))
    steps.append(TracefsStep(base + "trace", "", optional=True, comment="7. empty the buffer and start"))
    steps.append(TracefsStep(base + "tracing_on", "1"))
    marker = plan.marker()
    if marker:
        steps.append(TracefsStep(base + "trace_marker", marker,
                          comment="8. name guest_memfd's device in the capture"))
    return steps


def remove_steps(plan: Plan) -> list[TracefsStep | str]:
    """Undo setup_steps(plan): events off, our probes removed, the instance removed."""
    base = plan.base
    steps: list[TracefsStep | str] = [TracefsStep(base + "tracing_on", "0", optional=True,
                                    comment="1. stop tracing")]
    for i, spec in enumerate(plan.events()):
        steps.append(TracefsStep(base + spec.enable_path(), "0", optional=True,
                          comment="2. disable the events" if i == 0 else ""))
    if not plan.instance:       # (an instance's filters go with it)
        for spec in plan.events():
            if spec.filter or spec.system == FILEMAP:   # the device filter, whatever it was
                steps.append(TracefsStep(base + spec.filter_path(), "0", optional=True))
        if plan.pid is not None:
            steps.append(TracefsStep(base + "set_event_pid", "", optional=True))
    if plan.kprobes:
        steps.append(REMOVE_OLD)
    if plan.instance:
        steps.append(TracefsStep(f"instances/{plan.instance}", kind="rmdir",
                          comment="4. remove the instance (its buffer goes with it)"))
    return steps


def _probe_comment(spec: ProbeSpec) -> str:
    where = "" if spec.upstream else " [needs the design's patch]"
    text = f"{spec.name} -> {spec.protocol}: {spec.summary}{where}"
    if spec.unfetched:
        text += f" (not printed: {', '.join(spec.unfetched)})"
    return text


def collect_hint(tracefs: str, plan: Plan) -> str:
    where = f"{tracefs}/{plan.base}".rstrip("/")
    undo = "poisoncheck record --remove" + (f" --instance {plan.instance}" if plan.instance else "")
    return "\n".join([
        "Tracing is on. Run the workload, then collect the trace:",
        f"  cat {where}/trace > run.trace          (what the buffer holds now)",
        f"  cat {where}/trace_pipe > run.trace     (or stream it while the workload runs)",
        f"and undo the set-up: {undo}",
        "then check the trace against a design:",
        "  poisoncheck validate run.trace --design D   (D: " + ", ".join(DESIGNS) + ")",
    ])


def lost_without_kprobes(cat: Catalogue, only_upstream: bool) -> str:
    """What a capture made with tracepoints alone cannot show (for the user)."""
    names = sorted({s.protocol for s in cat.probes(only_upstream)})
    return ("no kprobe events on this kernel: only the upstream tracepoints are set up, so the "
            "capture cannot show " + ", ".join(names) + " (S-EPT, poison, conversions, host "
            "faults and the designs' hooks); it shows guest_memfd's page cache and the page "
            "allocator")


def render_script(steps: list[TracefsStep | str], tracefs: str, plan: Plan, remove: bool = False) -> str:
    cat = plan.cat
    probes = plan.probes()
    patched = [s.name for s in probes if not s.upstream]
    what = "undo" if remove else "set-up"
    out = [
        "#!/bin/sh",
        f"# poisoncheck tracefs {what}: {len(probes)} kprobe events (group {cat.group}) and "
        f"{len(plan.events()) - len(probes)} upstream tracepoints"
        + (f", instance {plan.instance}." if plan.instance else "."),
        "# Read it, then run it as root: poisoncheck record | sudo sh  (or: poisoncheck record --apply)",
    ]
    if plan.kprobes and not remove:
        out += ["# Needs CONFIG_KPROBE_EVENTS, BTF with CONFIG_PROBE_EVENTS_BTF_ARGS (the fetch-args use",
                "# argument names), and the kvm and kvm_intel modules loaded."]
    elif not plan.kprobes:
        out += [f"# {line}" for line in textwrap.wrap(lost_without_kprobes(cat, plan.only_upstream), 94)]
    if patched and not remove:
        note = ("Only a kernel with a design's patch has: " + ", ".join(patched)
                + " (leave them out: --only-upstream).")
        out += [f"# {line}" for line in textwrap.wrap(note, 94)]
    needed = "kprobe_events" if plan.kprobes else "tracing_on"
    out += [
        "set -e",
        f"T={shlex.quote(tracefs)}",
        f'[ -f "$T/{needed}" ] || {{ echo "$T is not a tracefs with {needed}" >&2; exit 2; }}',
    ]
    for step in steps:
        if step == REMOVE_OLD:
            out += [
                "",
                f"# {'3' if remove else '2'}. remove {cat.group} probes (an enabled probe cannot be removed)",
                f"for e in $(sed -n 's|^[pr][0-9]*:{cat.group}/\\([^ ]*\\) .*|\\1|p' \"$T/kprobe_events\"); do",
                f'\t[ ! -e "$T/events/{cat.group}/$e/enable" ] || echo 0 > "$T/events/{cat.group}/$e/enable"',
                f'\techo "-:{cat.group}/$e" >> "$T/kprobe_events"',
                "done",
            ]
            continue
        if step.comment:
            if step.comment[0].isdigit():
                out.append("")
            out += [f"# {line}" for line in step.comment.splitlines()]
        target = f'"$T/{step.path}"'
        if step.kind == "mkdir":
            out.append(f"mkdir -p {target}")
            continue
        if step.kind == "rmdir":
            out.append(f"[ ! -d {target} ] || rmdir {target}")
            continue
        redirect = ">>" if step.append else ">"
        command = (f"echo {shlex.quote(step.text)} {redirect} {target}" if step.text
                   else f": > {target}")
        if step.optional:
            command = f"[ ! -e {target} ] || {command}"
        out.append(command)
    if not remove:
        out.append("")
        out += [f"# {line}" for line in collect_hint(tracefs, plan).splitlines()]
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
    if not (root / "tracing_on").is_file() or not (root / "events").is_dir():
        raise RecordError(f"{root} is not a tracefs (no tracing_on file or events directory)")


def has_kprobes(root: Path) -> bool:
    return (root / "kprobe_events").is_file()


def present_tracepoints(root: Path, cat: Catalogue) -> tuple[list[ProbeSpec], list[ProbeSpec]]:
    """(tracepoints this kernel has, those it lacks)."""
    have, lack = [], []
    for spec in cat.tracepoints():
        (have if (root / spec.enable_path()).is_file() else lack).append(spec)
    return have, lack


def check_symbols(root: Path, cat: Catalogue, only_upstream: bool) -> tuple[bool, list[ProbeSpec]]:
    """(could check, probes whose symbol is not in available_filter_functions)."""
    text = read_text(root / "available_filter_functions")
    if text is None:
        return False, []
    known = {parts[0] for parts in (line.split() for line in text.splitlines()) if parts}
    missing = [spec for spec in cat.probes(only_upstream)
               if spec.symbol.split(":", 1)[-1] not in known]
    return True, missing


def missing_message(root: Path, missing: list[ProbeSpec]) -> str:
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


def apply_steps(root: Path, steps: list[TracefsStep | str], plan: Plan, echo,
                undo: list[TracefsStep | str] | None = None) -> int:
    """Carry out the steps in order and report each through `echo`.  On the first refused
    write, carry out `undo` (best effort) and raise RecordError.  Returns the writes made."""
    try:
        return _apply(root, steps, plan, echo, strict=True)
    except RecordError as err:
        if undo is None:
            raise
        _apply(root, undo, plan, echo, strict=False)
        raise RecordError(f"{err}; the set-up written so far was undone") from None
    except BaseException:       # SIGINT, SIGTERM midway: no half set-up is left behind
        if undo is not None:
            _apply(root, undo, plan, echo, strict=False)
        raise


def undo_steps(root: Path, steps: list[TracefsStep | str], plan: Plan, echo) -> int:
    """Carry out remove_steps() as far as they go (every step is tried); RecordError
    naming the first step that failed, after all were tried."""
    failed: list[str] = []
    writes = _apply(root, steps, plan, lambda text: (echo(text), text.startswith("could not")
                                                     and failed.append(text)), strict=False)
    if failed:
        raise RecordError(f"{len(failed)} step(s) of the undo failed, the first: {failed[0]}")
    return writes


def _apply(root: Path, steps: list[TracefsStep | str], plan: Plan, echo, strict: bool) -> int:
    writes = 0
    probe_line = 0
    group = plan.cat.group

    def write(rel: str, text: str, append: bool, what: str):
        nonlocal writes
        path = root / rel
        try:
            _write_file(path, text, append)
        except OSError as err:
            if strict:
                raise RecordError(_refused(root, path, text, what, err)) from None
            echo(f"could not write {path}: {err.strerror or err}")
            return
        writes += 1
        echo(f"{'appended to' if append else 'wrote'} {path}: {text if text else '(emptied)'}")

    for step in steps:
        if step == REMOVE_OLD:
            for name in old_probes(root, group):
                for enable in dict.fromkeys((f"{plan.base}events/{group}/{name}/enable",
                                             f"events/{group}/{name}/enable")):
                    if (root / enable).exists():
                        write(enable, "0", False, f"disabling the old probe {group}/{name}")
                write("kprobe_events", f"-:{group}/{name}", True,
                      f"removing the old probe {group}/{name}")
            continue
        path = root / step.path
        if step.kind in ("mkdir", "rmdir"):
            try:
                if step.kind == "mkdir":
                    path.mkdir(exist_ok=True)
                elif path.is_dir():
                    path.rmdir()
            except OSError as err:
                if strict:
                    raise RecordError(f"cannot {step.kind} {path}: {err.strerror or err}") from None
                echo(f"could not {step.kind} {path}: {err.strerror or err}")
                continue
            writes += 1
            echo(f"{step.kind} {path}")
            continue
        if step.optional and not path.exists():
            echo(f"skipped {path}: not present")
            continue
        what = ""
        if step.path == "kprobe_events":
            probe_line += 1
            what = f"line {probe_line} of kprobe_events"
        elif step.path.endswith("/filter"):
            parts = step.path.split("/")
            what = f"the filter of {parts[-3]}/{parts[-2]}"
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
