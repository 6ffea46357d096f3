"""Handmade lines for each text form the reader must know (docs/parse.md), both engines."""

import pytest

from validator.ftrace import LineKind
from validator.ftrace.state import R_BAD_BODY, R_NO_CONTEXT, R_NOT_FTRACE
# the reader as poisoncheck runs it: the probe catalogue's events typed
from validator.replay.input import read_lines

ENGINES = ["fast", "lark"]


def read(text: str, engine: str = "fast"):
    return list(read_lines(text.split("\n"), engine=engine, require_ftrace=False))


def one_event(line: str, engine: str = "fast"):
    (parsed,) = read(line, engine)
    assert parsed.kind is LineKind.EVENT, parsed
    (event,) = parsed.events
    return event


def columns(event):
    return (event.task, event.pid, event.tgid, event.cpu, event.flags, event.ts, event.ts_unit)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("line, expected", [
    # 7-wide pid, 5 flags (current mainline)
    ("            bash-5402    [001] d..2.   584.035950: sched_switch: prev_comm=bash",
     ("bash", 5402, None, 1, "d..2.", 584_035_950_000, "ns")),
    # 5-wide pid, 4 flags (3.x .. 5.8)
    ("          chrome-2804  [003] d..3  1136.097350: cpu_idle: state=0 cpu_id=3",
     ("chrome", 2804, None, 3, "d..3", 1136_097_350_000, "ns")),
    # record-tgid, 7 and 5 wide, and the "(-------)" of an unknown tgid
    ("        Thread-1-4785    (   4762) [001] d.h2.   584.223060: sched_waking: pid=1",
     ("Thread-1", 4785, 4762, 1, "d.h2.", 584_223_060_000, "ns")),
    ("RenderThread-1143  (  611) [004] ...1 514769.085985: tracing_mark_write: E",
     ("RenderThread", 1143, 611, 4, "...1", 514769_085_985_000, "ns")),
    ("           <...>-7000    (-------) [000] .....   584.000001: x: y",
     ("<...>", 7000, None, 0, ".....", 584_000_001_000, "ns")),
    # irq-info off: no flags column
    ("            bash-5402    [000]    584.370975: x: y", ("bash", 5402, None, 0, None, 584_370_975_000, "ns")),
    # PREEMPT_RT / RHEL 9: 7 flag characters
    ("          ktimer-16      [002] dn.h413   7.000001: x: y", ("ktimer", 16, None, 2, "dn.h413", 7_000_001_000, "ns")),
    # raw-counter clocks: counter, uptime (jiffies), x86-tsc wider than 12 digits
    ("            bash-5402    [000] .....            3: x: y", ("bash", 5402, None, 0, ".....", 3, "count")),
    ("            bash-5402    [000] ..... 1525009023616: x: y",
     ("bash", 5402, None, 0, ".....", 1525009023616, "count")),
    # seconds wider than %5lu
    ("          svscan-1678  [000] .... 6412438.703521: do_nanosleep <-hrtimer_nanosleep",
     ("svscan", 1678, None, 0, "....", 6412438_703_521_000, "ns")),
    # comms: spaces, dash-digits, colon, slash, brackets, <idle>, tabs before
    ("       CPU 5/KVM-4145    [002] .....    86.581928: x: y", ("CPU 5/KVM", 4145, None, 2, ".....", 86_581_928_000, "ns")),
    ("        a-b-1234-5448    [001] .....   1.000000: x: y", ("a-b-1234", 5448, None, 1, ".....", 1_000_000_000, "ns")),
    (" memfd:sealed-91-1366    [001] d..2.   1.000000: x: y", ("memfd:sealed-91", 1366, None, 1, "d..2.", 1_000_000_000, "ns")),
    ("      [brkt] x:y-7645    [000] .....   1.000000: x: y", ("[brkt] x:y", 7645, None, 0, ".....", 1_000_000_000, "ns")),
    ("\t  <idle>-0     [006]  7115.449607: x: y", ("<idle>", 0, None, 6, None, 7115_449_607_000, "ns")),
    # trace-cmd report: -t nanoseconds, --ts-diff, -l latency columns
    ("            bash-7557  [001]   674.316951184: sched_switch:         bash:7557 [120] R ==> bash:7559 [120]",
     ("bash", 7557, None, 1, None, 674_316_951_184, "ns")),
    ("         python3-7559  [001]   674.317618: (+667)   sched_switch:         python3:7559 [120] D",
     ("python3", 7559, None, 1, None, 674_317_618_000, "ns")),
    ("    bash-7557    1d..2.   674.316951: sched_switch:         bash:7557 [120] R ==> bash:7559 [120]",
     ("bash", 7557, None, 1, "d..2.", 674_316_951_000, "ns")),
    # latency format: CPU glued to the flags, relative microseconds with a delay mark
    ("    bash-5402      0..... 19758us!: sys_write -> 0x2", ("bash", 5402, None, 0, ".....", 19_758_000, "rel_ns")),
    ("Thread-1-4785      1d.h.. 19965us : hrtimer_expire_entry: x=1", ("Thread-1", 4785, None, 1, "d.h..", 19_965_000, "rel_ns")),
    ("  rcuc/1-25       12D..4. 10607791725us : sched_wakeup: comm=x", ("rcuc/1", 25, None, 12, "D..4.", 10607791725_000, "rel_ns")),
    # latency + verbose: absolute microseconds in hex
    ("            bash    5402   0 0 00000000 00000000 [22dc5c0c] 16.136ms (+0.098ms): sys_write -> 0x2",
     ("bash", 5402, None, 0, None, 0x22DC5C0C * 1000, "ns")),
    # perf script: pid, pid/tid, nanoseconds
    ("            perf  7760 [000]   690.547471:                 sched:sched_waking: comm=migration/0 pid=18",
     ("perf", 7760, None, 0, None, 690_547_471_000, "ns")),
    ("        Thread-1  4762/4785  [000]   690.771270:                 sched:sched_switch: prev_comm=Thread-1",
     ("Thread-1", 4785, 4762, 0, None, 690_771_270_000, "ns")),
    # raw and hex trace options
    ("5402 0 585318887524 type: 839", (None, 5402, None, 0, None, 585318887524, "count")),
    ("0000151a 00000001 00000088501269ef type: 839", (None, 0x151A, None, 1, None, 0x88501269EF, "count")),
])
def test_context_columns(engine, line, expected):
    assert columns(one_event(line, engine)) == expected


@pytest.mark.parametrize("engine", ENGINES)
def test_invalid_utf8_comm(engine):
    raw = b"           \xff\xfebin-7647    [001] .....   674.549127: x: y"
    event = one_event(raw.decode("utf-8", "surrogateescape"), engine)
    assert event.task.encode("utf-8", "surrogateescape") == b"\xff\xfebin"
    assert event.pid == 7647


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("body, name, fields", [
    ("sched_switch: prev_comm=VM Periodic Tas prev_pid=4780 prev_state=R+ ==> next_comm=bash next_pid=1",
     "sched_switch", {"prev_comm": "VM Periodic Tas", "prev_pid": 4780, "prev_state": "R+ ==>",
                      "next_comm": "bash", "next_pid": 1}),
    ("sys_write -> 0x2", "sys_exit_write", {"ret": 2}),
    ("sys_write(fd: 2, buf: 0x56470aebc1e0, count: 0xed)", "sys_enter_write",
     {"fd": 2, "buf": 0x56470AEBC1E0, "count": 0xED}),
    ("do_nanosleep <-hrtimer_nanosleep", "function", {"func": "do_nanosleep", "parent": "hrtimer_nanosleep"}),
    ("<stack trace>", "kernel_stack", {}),
    ("<user stack trace>", "user_stack", {}),
    ("UNKNOWN TYPE 5", "type_5", {"type": 5}),
    # `fields` option: "0x151a (5402)"; units and annotations after a number
    ("sched_process_fork: parent_pid=0x151a (5402) child_comm=bash", "sched_process_fork",
     {"parent_pid": 5402, "child_comm": "bash"}),
    ("sched_stat_runtime:   comm=sshd pid=2450 runtime=134042 [ns]", "sched_stat_runtime",
     {"comm": "sshd", "pid": 2450, "runtime": 134042}),
    ("tracing_mark_write: key=value other=\"quoted string\"", "tracing_mark_write",
     {"key": "value", "other": "quoted string"}),
    ("equals_event: my_field=foo=bar=baz", "equals_event", {"my_field": "foo=bar=baz"}),
    # printk-style payloads have no key=value fields to offer
    ("ext4_da_write_end:    dev 8,13 ino 5898483 pos 0 len 4096 copied 4096", "ext4_da_write_end", {}),
])
def test_bodies(engine, body, name, fields):
    event = one_event(f"            bash-5402    [001] .....   584.000001: {body}", engine)
    assert (event.name, dict(event.fields)) == (name, fields)


@pytest.mark.parametrize("engine", ENGINES)
def test_marker_with_sym_offset_and_addr(engine):
    event = one_event("           <...>-6564    [001] ...1.   587.908449: "
                      "tracing_mark_write+0x8a/0x170 <ffffffff8149895a>: workload start", engine)
    assert (event.name, event.payload) == ("tracing_mark_write", "workload start")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("text, kind, detail", [
    ("CPU:0 [LOST 897 EVENTS]", LineKind.LOST, (1, "lost_events", 0, 897)),
    ("CPU:3 [LOST EVENTS]", LineKind.LOST, (1, "lost_events", 3, None)),
    ("CPU:1 [12 EVENTS DROPPED]", LineKind.LOST, (1, "events_dropped", 1, 12)),
    ("[12 EVENTS DROPPED]", LineKind.LOST, (1, "events_dropped", None, 12)),
    ("CPU:2 [EVENTS DROPPED]", LineKind.LOST, (1, "events_dropped", 2, None)),
    ("##### CPU 0 buffer started ####", LineKind.LOST, (1, "buffer_started", 0, None)),
    ("[LINE TOO BIG]", LineKind.LOST, (1, "line_too_big", None, None)),
    ("# tracer: nop", LineKind.HEADER, ("tracer", {"tracer": "nop"})),
    ("# entries-in-buffer/entries-written: 585/1865   #P:2", LineKind.HEADER,
     ("entries", {"in_buffer": 585, "written": 1865, "cpus": 2})),
    ("#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION", LineKind.HEADER, ("legend", {})),
    ("#                  ||| / _--=> preempt-depth   ", LineKind.HEADER, ("comment", {})),
    ("cpus=2", LineKind.HEADER, ("cpus", {"cpus": 2})),
    ("version = 6", LineKind.HEADER, ("preamble", {})),
    ("CPU 3 is empty", LineKind.HEADER, ("preamble", {})),
    ("Average wakeup latency: 83.289 usecs", LineKind.HEADER, ("summary", {})),
    ("  [kvm:kvm_inj_exception] bad op token }", LineKind.HEADER, ("tool", {})),
    ("", LineKind.BLANK, None),
    ("  \t", LineKind.BLANK, None),
    (" 0) ! 8147.120 us |  } /* ext3_readpages */", LineKind.FUNCGRAPH, None),
    ("Tracing kprobe do_sys_open. Ctrl-C to end.", LineKind.UNPARSED, R_NOT_FTRACE),
    ("sched_switch: prev_comm=bash", LineKind.UNPARSED, R_NO_CONTEXT),
    ("            bash-5402    [001] .....   584.034896: #1 inner/outer(us): 11/12", LineKind.UNPARSED, R_BAD_BODY),
])
def test_other_lines(engine, text, kind, detail):
    (line,) = read(text, engine)
    assert line.kind is kind
    if kind is LineKind.LOST:
        assert line.lost == detail
    elif kind is LineKind.HEADER:
        assert (line.header.form, dict(line.header.values)) == detail
    elif kind is LineKind.UNPARSED:
        assert line.reason == detail


@pytest.mark.parametrize("engine", ENGINES)
def test_wrappers(engine):
    dump = one_event("[10611.835048] rcu_tort-70        1dNh3. 10607789211us : sched_wakeup: comm=x pid=65", engine)
    assert (dump.task, dump.pid, dump.cpu, dump.flags) == ("rcu_tort", 70, 1, "dNh3.")
    two = one_event("kvm2.dat:             bash-7557  [001]   674.316951: sched_switch:   x", engine)
    assert (two.source, two.task, two.pid) == ("kvm2.dat", "bash", 7557)
    (lost,) = read(" kvm.dat: CPU:0 [LOST 3 EVENTS]", engine)
    assert lost.lost == (1, "lost_events", 0, 3)


@pytest.mark.parametrize("engine", ENGINES)
def test_marker_continuation_and_stack_lines(engine):
    lines = read("\n".join([
        "           <...>-6512    [001] ...1.   587.739904: tracing_mark_write: line one",
        "line two (embedded newline)",
        "sched_switch: looks like a body, is marker text",
        "            bash-5402    [001] .....   587.542160: <stack trace>",
        " => trace_event_raw_event_sched_process_fork",
        " => kernel_clone",
        "line after the stack",
    ]), engine)
    assert [line.kind for line in lines] == [
        LineKind.EVENT, LineKind.CONTINUATION, LineKind.CONTINUATION, LineKind.EVENT,
        LineKind.CONTINUATION, LineKind.CONTINUATION, LineKind.UNPARSED]
    assert [line.continues for line in lines] == [None, 1, 1, None, 4, 4, None]
    assert [line.reason for line in lines[1:3]] == ["marker text", "marker text"]


@pytest.mark.parametrize("engine", ENGINES)
def test_glued_records_are_split(engine):
    (line,) = read("           <...>-6512    [001] ...1.   587.739905: tracing_mark_write: binary"
                   "            <...>-6512    [001] ...1.   587.739905: tracing_mark_write: tab\tvalues", engine)
    assert [(e.name, e.payload) for e in line.events] == [
        ("tracing_mark_write", "binary"), ("tracing_mark_write", "tab\tvalues")]
    assert line.events[1].raw.startswith("           <...>-6512")
    assert line.events[0].line_no == line.events[1].line_no == 1


@pytest.mark.parametrize("engine", ENGINES)
def test_context_info_off(engine):
    lines = read("# tracer: nop\n#\nsys_write -> 0x2\nsched_switch: prev_comm=bash prev_pid=1\n"
                 "tracing_mark_write: line one\nline two", engine)
    kinds = [line.kind for line in lines]
    assert kinds == [LineKind.HEADER] * 2 + [LineKind.EVENT] * 3 + [LineKind.CONTINUATION]
    event = lines[3].events[0]
    assert (event.task, event.pid, event.cpu, event.ts, event.name) == (None, None, None, None, "sched_switch")
