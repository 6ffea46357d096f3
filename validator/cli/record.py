"""`poisoncheck record`: the tracefs set-up for the probe catalogue (validator/recording/tracefs.py),
printed as a shell script (default) or carried out (--apply); --remove undoes it."""

from __future__ import annotations

from pathlib import Path

import click


from validator.cli.errors import InputError, device_option
from validator.recording.catalogue import CatalogueError, load_catalogue
from validator.recording.tracefs import (DEFAULT_TRACEFS, Plan, RecordError, apply_steps,
                                         check_instance_name, check_symbols, collect_hint,
                                         has_kprobes, lost_without_kprobes, missing_message,
                                         present_tracepoints, remove_steps, render_script,
                                         require_tracefs, setup_steps, undo_steps)


def _instance(ctx, param, value):
    if value is None:
        return None
    try:
        return check_instance_name(value)
    except RecordError as err:
        raise click.BadParameter(str(err)) from None


def discover_gmem_dev(echo) -> tuple[int, int] | None:
    """guest_memfd's device, from a guest_memfd made for the purpose (needs /dev/kvm)."""
    from validator.recording.gmem_device import GmemUnavailable, gmem_device
    try:
        return gmem_device()
    except GmemUnavailable as err:
        echo(f"note: guest_memfd's device not found ({err}): no marker line; pass --gmem-dev "
             f"here or to validate")
        return None


# ---------------------------------------------------------------- command

@click.command()
@click.option("--apply", "do_apply", is_flag=True,
              help="Write the set-up (or, with --remove, the undoing) into the tracefs instead "
                   "of printing it (needs root).")
@click.option("--remove", is_flag=True,
              help="Undo the set-up: events off, the poisoncheck probes removed, the instance "
                   "removed.")
@click.option("--tracefs", "tracefs", default=DEFAULT_TRACEFS, show_default=True,
              metavar="DIR", help="The tracefs mount point.")
@click.option("--instance", callback=_instance, metavar="NAME", default=None,
              help="Work in the private instance DIR/instances/NAME, not the global buffer.")
@click.option("--buffer-kb", type=click.IntRange(min=1, max=4 << 20), default=None, metavar="N",
              help="Ring buffer size per CPU in KiB [default: the catalogue's, 32768].")
@click.option("--only-upstream", is_flag=True,
              help="Leave out the probes on functions that only a design's patch adds.")
@click.option("--tracepoints-only", is_flag=True,
              help="Set up the upstream tracepoints alone (the default where the kernel has no "
                   "kprobe events).")
@click.option("--gmem-dev", callback=device_option, metavar="MAJ:MIN", default=None,
              help="guest_memfd's device for the page-cache filter and the marker line "
                   "[default with --apply: found by creating a guest_memfd, needs /dev/kvm].")
@click.option("--pid", type=click.IntRange(min=1), default=None,
              help="Record events of this process only (set_event_pid); other users' "
                   "allocations of guest_memfd's freed pages are then not seen.")
@click.option("--check", "check", is_flag=True,
              help="Fail unless every probed function is in DIR/available_filter_functions.")
@click.option("--catalogue", "catalogue_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Another probe catalogue [default: the packaged probes.toml].")
def record(do_apply, remove, tracefs, instance, buffer_kb, only_upstream, tracepoints_only,
           gmem_dev, pid, check, catalogue_path):
    """Set up tracefs to record what the validator reads: the poisoncheck kprobe events
    (kprobe_events lines with BTF argument names) where the kernel has kprobe events, the
    upstream tracepoints (guest_memfd's page cache, the page allocator, KVM), the buffer
    size, a marker line naming guest_memfd's device, then tracing on.

    By default it prints the set-up as a shell script and writes nothing; read it, then
    pipe it to `sudo sh`, or run again with --apply.  Collect the trace with
    `cat DIR/trace > run.trace`, undo with `--remove --apply`, and check it with
    `poisoncheck validate run.trace --design D`.

    \b
    Examples:
      poisoncheck record                      # print the script
      sudo poisoncheck record --apply --instance pc --only-upstream
      sudo poisoncheck record --remove --apply --instance pc
      poisoncheck record --tracefs /sys/kernel/debug/tracing --buffer-kb 131072

    \b
    Exit codes: 0 printed or applied, 2 a bad catalogue, DIR not a tracefs, a write the
    kernel refused (the message names the line; what was written is undone), or --check
    found missing functions.
    """
    try:
        _record(do_apply, remove, Path(tracefs), instance, buffer_kb, only_upstream,
                tracepoints_only, gmem_dev, pid, check, catalogue_path)
    except (RecordError, CatalogueError) as err:
        raise InputError(str(err)) from None


def _record(do_apply, remove, root, instance, buffer_kb, only_upstream, tracepoints_only,
            gmem_dev, pid, check, catalogue_path):
    cat = load_catalogue(catalogue_path)
    if check or do_apply:
        require_tracefs(root)
    note = lambda text: click.echo(text, err=True)  # noqa: E731
    kprobes = not tracepoints_only and (has_kprobes(root) or not root.is_dir())
    if not kprobes and not tracepoints_only and not remove:
        note(f"note: {lost_without_kprobes(cat, only_upstream)}")
    tracepoints = None
    if root.is_dir():
        have, lack = present_tracepoints(root, cat)
        tracepoints = tuple(have)
        if lack and not remove:
            note(f"note: {len(lack)} upstream event(s) missing under {root}/events, left out: "
                 + ", ".join(f"{s.qualname} ({s.protocol})" for s in lack))
    if check and kprobes:
        could, missing = check_symbols(root, cat, only_upstream)
        if not could:
            note(f"note: {root}/available_filter_functions is missing; symbols not checked")
        elif missing:
            raise RecordError(missing_message(root, missing))
        else:
            note(f"all {len(cat.probes(only_upstream))} probed functions are in "
                 f"{root}/available_filter_functions")
    if gmem_dev is None and do_apply and not remove:
        gmem_dev = discover_gmem_dev(note)
    plan = Plan(cat, instance, kprobes, only_upstream, tracepoints, buffer_kb, gmem_dev, pid)
    steps = remove_steps(plan) if remove else setup_steps(plan)
    if not do_apply:
        click.echo(render_script(steps, str(root), plan, remove), nl=False)
        return
    if remove:
        writes = undo_steps(root, steps, plan, click.echo)
    else:
        writes = apply_steps(root, steps, plan, click.echo, undo=remove_steps(plan))
    click.echo(f"{writes} writes to {root}.")
    if not remove:
        click.echo(collect_hint(str(root), plan))
