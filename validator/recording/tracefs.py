"""The tracefs itself: what it has (checks before a set-up) and writing the steps into it
(`poisoncheck record --apply`), undoing what was written when a write fails midway."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from validator.recording.kprobes import enable_path
from validator.recording.plan import REMOVE_OLD, Plan, RecordError, TracefsStep
from validator.replay.catalogue import Catalogue
from validator.replay.probe_spec import ProbeSpec

DEFAULT_TRACEFS = "/sys/kernel/tracing"
_OLD_PROBE = re.compile(r"^[pr]\d*:(?P<group>[^/\s]+)/(?P<name>\S+)\s")


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
        (have if (root / enable_path(spec)).is_file() else lack).append(spec)
    return have, lack


def kernel_functions(root: Path) -> set[str] | None:
    """The functions kprobes can be placed on (available_filter_functions), None when the
    file is missing.  Module functions are listed as `name [module]`."""
    text = read_text(root / "available_filter_functions")
    if text is None:
        return None
    return {parts[0] for parts in (line.split() for line in text.splitlines()) if parts}


def choose_symbols(known: set[str], probes: list[ProbeSpec]
                   ) -> tuple[dict[str, str], list[ProbeSpec]]:
    """({probe name: the first of its names this kernel has}, probes it has none of)."""
    chosen: dict[str, str] = {}
    missing = []
    for spec in probes:
        name = next((sym for sym in spec.symbols if sym.split(":", 1)[-1] in known), None)
        if name is None:
            missing.append(spec)
        else:
            chosen[spec.name] = name
    return chosen, missing


def left_out_message(root: Path, missing: list[ProbeSpec]) -> str:
    """The note for probes left out because the kernel lacks their function."""
    items = "; ".join(f"{s.name} on {'/'.join(s.symbols)} (no {s.protocol} events: "
                      f"{s.summary}{'' if s.upstream else ', a design patch'})" for s in missing)
    return (f"{len(missing)} probe(s) left out, their function is not in "
            f"{root}/available_filter_functions: {items}")


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
    """One open and one write per line, as `echo` does: tracefs parses each write.  No
    buffered file object: Python's append mode seeks to the end after opening, and a
    write-only kprobe_events refuses the seek with EINVAL (seen on 7.2), which read as the
    kernel refusing the line."""
    flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags)
    try:
        if text:
            os.write(fd, (text + "\n").encode())
    finally:
        os.close(fd)


def error_reasons(root: Path) -> list[str]:
    """The kernel's complaints in error_log (`... error: REASON`), oldest first."""
    lines = (read_text(root / "error_log") or "").splitlines()
    return [line.split("error:", 1)[1].strip() for line in lines if "error:" in line]


def old_probes(root: Path, group: str) -> list[str]:
    names = []
    for line in (read_text(root / "kprobe_events") or "").splitlines():
        m = _OLD_PROBE.match(line + " ")
        if m and m["group"] == group:
            names.append(m["name"])
    return names


def apply_steps(root: Path, steps: list[TracefsStep | str], plan: Plan, echo,
                undo: list[TracefsStep | str] | None = None, refused_probe=None) -> int:
    """Carry out the steps in order and report each through `echo`.  On the first refused
    write, carry out `undo` (best effort) and raise RecordError.  Returns the writes made.
    With `refused_probe(name, message)`, a probe line the kernel refuses is left out
    instead (its filter and enable steps skipped) and reported through it."""
    try:
        return _apply(root, steps, plan, echo, strict=True, refused_probe=refused_probe)
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


def _apply(root: Path, steps: list[TracefsStep | str], plan: Plan, echo, strict: bool,
           refused_probe=None) -> int:
    writes = 0
    probe_line = 0
    group = plan.cat.group
    skipped: list[str] = []     # event directories of probes the kernel refused

    def write(rel: str, text: str, append: bool, what: str, probe: str | None = None):
        nonlocal writes
        path = root / rel
        # error_log keeps earlier complaints too: only one this write adds is its reason
        before = len(error_reasons(root)) if what else 0
        try:
            _write_file(path, text, append)
        except OSError as err:
            why = _refused(root, path, text, what, err, before)
            if probe is not None and refused_probe is not None and err.errno != errno.EPERM:
                refused_probe(probe, why)
                skipped.append(f"{plan.base}events/{group}/{probe}/")
                return
            if strict:
                raise RecordError(why) from None
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
        if any(step.path.startswith(d) for d in skipped):
            echo(f"skipped {path}: its probe was left out")
            continue
        if step.optional and not path.exists():
            echo(f"skipped {path}: not present")
            continue
        what, probe = "", None
        if step.path == "kprobe_events":
            probe_line += 1
            what = f"line {probe_line} of kprobe_events"
            m = _OLD_PROBE.match(step.text + " ")
            probe = m["name"] if m and m["group"] == group else None
        elif step.path.endswith("/filter"):
            parts = step.path.split("/")
            what = f"the filter of {parts[-3]}/{parts[-2]}"
        write(step.path, step.text, step.append, what, probe)
    return writes


def _refused(root: Path, path: Path, text: str, what: str, err: OSError,
             known_errors: int = 0) -> str:
    reason = err.strerror or str(err)
    if err.errno in (errno.EACCES, errno.EPERM):
        return f"cannot write {path}: {reason} (run as root)"
    if err.errno == errno.ENOENT:
        hint = ""
        if "/events/" in f"/{path.relative_to(root)}":
            hint = " (the event does not exist: the probe was not created, or its module is not loaded)"
        return f"cannot write {path}: {reason}{hint}"
    if what:
        new = error_reasons(root)[known_errors:]
        why = new[-1] if new else None
        log = root / "error_log"
        more = (f"; error_log: {why}" if why else
                f"; the kernel says why in {log}" if log.exists() else "")
        return f"the kernel refused {what}: {text!r} ({reason}){more}"
    return f"cannot write {path}: {reason}"
