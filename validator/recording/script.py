"""The set-up as a shell script to read and run (`poisoncheck record` without --apply),
and what the user is told around it."""

from __future__ import annotations

import shlex
import textwrap

from validator.recording.plan import REMOVE_OLD, Plan, TracefsStep
from validator.model import DESIGNS
from validator.replay.catalogue import Catalogue


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
