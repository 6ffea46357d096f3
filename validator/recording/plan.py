"""What `poisoncheck record` sets up (Plan) and the steps that set it up or undo it.

A set-up is one list of steps (`setup_steps`), printed as a shell script by
script.render_script or carried out by tracefs.apply_steps, so the script and --apply
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

`remove_steps` undoes it (events off, our probes removed, the instance removed).  Kprobe
events live in the global kprobe_events file (every instance sees them); everything else
is written into the instance.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from validator.recording.kprobes import enable_path, filter_path, kprobe_line
from validator.replay.catalogue import Catalogue
from validator.replay.probe_spec import ProbeSpec

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
    # probe name -> the function name this kernel has (one of spec.symbols); None: the
    # catalogue's first names (the kernel's functions were not listed)
    symbols: tuple[tuple[str, str], ...] | None = None
    left_out: frozenset[str] = frozenset()   # probes this kernel cannot have (no function)

    @property
    def base(self) -> str:
        return f"instances/{self.instance}/" if self.instance else ""

    def probes(self) -> list[ProbeSpec]:
        if not self.kprobes:
            return []
        return [s for s in self.cat.probes(self.only_upstream) if s.name not in self.left_out]

    def symbol(self, spec: ProbeSpec) -> str | None:
        return dict(self.symbols or ()).get(spec.name)

    def events(self) -> list[ProbeSpec]:
        tps = list(self.tracepoints if self.tracepoints is not None else self.cat.tracepoints())
        return self.probes() + tps

    def marker(self) -> str | None:
        if self.gmem_dev is None:
            return None
        major, minor = self.gmem_dev
        text = f"{MARKER} gmem_dev={major}:{minor} kprobes={int(self.kprobes)}"
        if self.kprobes and self.left_out:     # so a verdict can say why they never fired
            text += " left_out=" + ",".join(sorted(self.left_out))
        return text


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
        steps.append(TracefsStep("kprobe_events", kprobe_line(spec, plan.symbol(spec)),
                                 append=True, comment=comment))
    filters = [(spec, spec.filter) for spec in probes if spec.filter]
    if plan.gmem_dev is not None:
        filters += [(spec, f"s_dev == {dev_t(plan.gmem_dev)}") for spec in plan.events()
                    if spec.system == FILEMAP]
    for i, (spec, text) in enumerate(filters):
        steps.append(TracefsStep(base + filter_path(spec), text,
                          comment="5. keep only the calls that matter" if i == 0 else ""))
    if plan.pid is not None:
        steps.append(TracefsStep(base + "set_event_pid", str(plan.pid), comment="only this process"))
    for i, spec in enumerate(plan.events()):
        steps.append(TracefsStep(base + enable_path(spec), "1",
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
        steps.append(TracefsStep(base + enable_path(spec), "0", optional=True,
                          comment="2. disable the events" if i == 0 else ""))
    if not plan.instance:       # (an instance's filters go with it)
        for spec in plan.events():
            if spec.filter or spec.system == FILEMAP:   # the device filter, whatever it was
                steps.append(TracefsStep(base + filter_path(spec), "0", optional=True))
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
