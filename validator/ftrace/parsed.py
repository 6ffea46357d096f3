"""What one line of ftrace text says, before any state or typing: the common output of the
reference grammar (grammar.py) and the fast path (fastpath.py). Tests require the two to
produce equal values for every corpus line, so this stays plain strings, close to the text."""

from typing import NamedTuple


class Parsed(NamedTuple):
    # record     an event record with its context (task, pid, cpu, time)
    # body       an event body alone ("sched_switch: ..."): context-info off, or prose
    # header     "#" lines, preambles, tool summaries and messages
    # lost       lost-event markers
    # stack_entry, funcgraph, blank
    # bad        nothing matched; reader.py explains why
    kind: str
    # record: kernel | latency | verbose | perf | raw_dec | raw_hex
    # header: tracer | entries | legend | comment | cpus | preamble | summary | tool
    # lost:   lost_events | events_dropped | buffer_started
    form: str | None = None
    # record/body: named | sys_exit | sys_enter | function | stack_head | raw_type | raw_print
    body: str | None = None
    task: str | None = None
    pid: str | None = None  # perf -F pid,tid: "4762/4785"
    tgid: str | None = None  # "4762" or "-------"
    cpu: str | None = None
    flags: str | None = None
    ts: str | None = None  # as printed: "584.035950", "58602", "19758us!", verbose: hex usecs
    system: str | None = None
    name: str | None = None
    sym: str | None = None  # "+0x8a/0x170 <ffffffff8149895a>" after a marker or function name
    payload: str | None = None
    numbers: tuple = ()  # lost: (cpu, count); entries: (in buffer, written, cpus); cpus: (n,)
    dmesg: str | None = None  # "[10611.835048]" wrapper
    source: str | None = None  # trace-cmd input file prefix "kvm.dat"


BAD = Parsed("bad")
BLANK = Parsed("blank")


class ProbeArgs(NamedTuple):
    """A kprobe/kretprobe/uprobe payload: "(site <- func) k=v ..."."""

    site: str
    func: str | None  # set for return probes: the probed function
    lead: str | None  # words before the first key=value
    pairs: tuple  # ((key, raw value), ...)
