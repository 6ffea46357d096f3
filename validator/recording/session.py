"""One `poisoncheck record` run: load the catalogue, look at the tracefs, plan the set-up
(or its undoing), then print it as a script or carry it out.  Output goes through the
caller's `out` (stdout) and `note` (stderr) functions; errors are RecordError or
CatalogueError, one line each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from validator.recording.kprobes import load_catalogue
from validator.recording.plan import Plan, RecordError, remove_steps, setup_steps
from validator.recording.script import collect_hint, lost_without_kprobes, render_script
from validator.recording.tracefs import (apply_steps, choose_symbols, has_kprobes,
                                         kernel_functions, left_out_message, missing_message,
                                         present_tracepoints, require_tracefs, undo_steps)


@dataclass(frozen=True)
class RecordOptions:
    """The command's options (see `poisoncheck record --help`)."""

    root: Path
    apply: bool = False
    remove: bool = False
    instance: str | None = None
    buffer_kb: int | None = None
    only_upstream: bool = False
    tracepoints_only: bool = False
    gmem_dev: tuple[int, int] | None = None
    pid: int | None = None
    check: bool = False
    catalogue_path: Path | None = None


def discover_gmem_dev(note: Callable[[str], None]) -> tuple[int, int] | None:
    """guest_memfd's device, from a guest_memfd made for the purpose (needs /dev/kvm)."""
    from validator.recording.gmem_device import GmemUnavailable, gmem_device
    try:
        return gmem_device()
    except GmemUnavailable as err:
        note(f"note: guest_memfd's device not found ({err}): no marker line; pass --gmem-dev "
             f"here or to validate")
        return None


def run_record(opts: RecordOptions, out: Callable[..., None], note: Callable[[str], None]) -> None:
    """out(text, nl=True) prints the script or reports the writes; note(text) the notes."""
    root, remove, only_upstream = opts.root, opts.remove, opts.only_upstream
    cat = load_catalogue(opts.catalogue_path)
    if opts.check or opts.apply:
        require_tracefs(root)
    kprobes = not opts.tracepoints_only and (has_kprobes(root) or not root.is_dir())
    if not kprobes and not opts.tracepoints_only and not remove:
        note(f"note: {lost_without_kprobes(cat, only_upstream)}")
    tracepoints = None
    if root.is_dir():
        have, lack = present_tracepoints(root, cat)
        tracepoints = tuple(have)
        if lack and not remove:
            note(f"note: {len(lack)} upstream event(s) missing under {root}/events, left out: "
                 + ", ".join(f"{s.qualname} ({s.protocol})" for s in lack))
    symbols, left_out = None, frozenset()
    known = kernel_functions(root) if kprobes and root.is_dir() else None
    if known is None and opts.check and kprobes:
        note(f"note: {root}/available_filter_functions is missing; symbols not checked")
    elif known is not None:
        chosen, missing = choose_symbols(known, cat.probes(only_upstream))
        symbols = tuple(chosen.items())
        if missing and opts.check:
            raise RecordError(missing_message(root, missing))
        if missing and not remove:
            note(f"note: {left_out_message(root, missing)}")
        elif opts.check:
            note(f"all {len(cat.probes(only_upstream))} probed functions are in "
                 f"{root}/available_filter_functions")
        left_out = frozenset(s.name for s in missing)
    gmem_dev = opts.gmem_dev
    if gmem_dev is None and opts.apply and not remove:
        gmem_dev = discover_gmem_dev(note)
    plan = Plan(cat, opts.instance, kprobes, only_upstream, tracepoints, opts.buffer_kb,
                gmem_dev, opts.pid, symbols, left_out)
    steps = remove_steps(plan) if remove else setup_steps(plan)
    if not opts.apply:
        out(render_script(steps, str(root), plan, remove), nl=False)
        return
    if remove:
        writes = undo_steps(root, steps, plan, out)
    else:
        refused = None if opts.check else (
            lambda name, why: note(f"note: probe {name} left out: {why}"))
        writes = apply_steps(root, steps, plan, out, undo=remove_steps(plan),
                             refused_probe=refused)
    out(f"{writes} writes to {root}.")
    if not remove:
        out(collect_hint(str(root), plan))
