"""`poisoncheck record`: the tracefs set-up for the probe catalogue (validator/recording/),
printed as a shell script (default) or carried out (--apply); --remove undoes it."""

from __future__ import annotations

from pathlib import Path

import click

from validator.cli.errors import InputError, device_option
from validator.recording.kprobes import CatalogueError
from validator.recording.plan import RecordError, check_instance_name
from validator.recording.session import RecordOptions, run_record
from validator.recording.tracefs import DEFAULT_TRACEFS


def _instance(ctx, param, value):
    if value is None:
        return None
    try:
        return check_instance_name(value)
    except RecordError as err:
        raise click.BadParameter(str(err)) from None


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
              help="Fail unless every probed function is in DIR/available_filter_functions "
                   "and the kernel accepts every probe line. Without it such probes are left "
                   "out, each named in a note with what the capture loses.")
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
    kernel refused (the message names the line and error_log's reason; what was written is
    undone), or --check found missing functions or a refused probe line.
    """
    opts = RecordOptions(Path(tracefs), do_apply, remove, instance, buffer_kb, only_upstream,
                         tracepoints_only, gmem_dev, pid, check, catalogue_path)
    try:
        run_record(opts, click.echo, lambda text: click.echo(text, err=True))
    except (RecordError, CatalogueError) as err:
        raise InputError(str(err)) from None
