"""The fast path must say exactly what the lark grammar says, on every corpus line."""

from pathlib import Path

import pytest

from validator.ftrace import TraceInputError, fastpath, grammar
# the reader as poisoncheck runs it: the probe catalogue's events typed
from validator.replay.input import read_file, read_lines
from validator.ftrace.decoders import decode_probe

from test_ftrace_corpus import CORPUS, corpus_files

DATA = Path(__file__).parent.parent / "data" / "ftrace"
pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")

# Lines no capture holds but the grammar has rules for, or that sit on rule boundaries.
EDGE_LINES = [
    "",
    "   \t ",
    "CPU:0 [LOST EVENTS]",
    "CPU:12 [LOST 3 EVENTS]",
    "CPU:1 [7 EVENTS DROPPED]",
    "CPU:1 [EVENTS DROPPED]",
    "[7 EVENTS DROPPED]",
    "[EVENTS DROPPED]",
    "[LINE TOO BIG]",
    "##### CPU 3 buffer started ####",
    "##### CPU 3 buffer started #### and more",
    "CPU:0 [LOST 897 EVENTS] trailing",
    "kvm.dat: CPU:0 [LOST 3 EVENTS]",
    "[ 1234.567890] ",
    "[ 1234.567890] bash-5402    [001] .....   584.034896: sys_write -> 0x2",
    "            bash-5402    [001] .....   584.034896: [LINE TOO BIG]",
    "            bash-5402    [001] .....   584.034896: UNKNOWN TYPE 5",
    "            bash-5402    [001] .....   584.034896: Unknown type 12",
    "            bash-5402    [001] .....   584.034896: func <-parent+0x4/0x10",
    "            bash-5402    [001] .....   584.034896: func+0x6/0xa0 <ffffffff8149895a>",
    "            bash-5402    [001] .....   584.034896: tracing_mark_write:",
    "            bash-5402    [001] .....   584.034896: ",
    "            bash-5402    [001] .....   584.034896: (+12)   x: y",
    "           <...>-1     (-------) [1023] dNh5.   1.000000: a: b",
    "  x-1 [000] 1.0: !!! b-2 [000] 2.0: x: y",
    "a-1 [000] 1.0: sys_write -> 0x1 b-2 [000] 2.0: c: d",
    "   -1 [000] 1.0: x: y-2 [000] 2.0: !!!",  # the hot path must not backtrack into the padding
    "                -7 [000] 1.0: x: y",  # an empty comm
    "\t\t-7 [000] 1.0: x: y",
    "       foo-12  7760 [000]   690.547471:   sched:sched_waking: comm=x",
    "rcu_tort-70        1dNh3. 10607789211us : sched_wakeup: comm=x pid=65",
    "   bash    5402   0 0 00000000 00000000 [22dc5c0c] 16.136ms (+0.098ms): sys_write -> 0x2",
    "5402 0 585318887524 type: 839",
    "5402 0 585318887524 type: 839 extra",
    "0000151a 00000000 00000088501269ef # ffffffff8149895a text",
    "sched_switch: prev_comm=bash",
    "sys_write(fd: 2, buf: 0x5, count: 0xed)",
    "<stack trace>",
    " => kernel_clone",
    " 0)   0.198 us    |          _raw_spin_lock_irqsave();",
    " ------------------------------------------",
    "# tracer: nop",
    "# tracer: nop extra",
    "# entries-in-buffer/entries-written: 585/1865   #P:2",
    "cpus=2",
    "cpus=2x",
    "version = 6",
    "libtraceevent: No such file or directory",
    "Average wakeup latency: 83.289 usecs",
]


def _lines(path: Path) -> list[str]:
    return path.read_bytes().decode("utf-8", "surrogateescape").split("\n")


def _all_lines() -> list[str]:
    lines = list(EDGE_LINES)
    for name in corpus_files():
        lines.extend(_lines(CORPUS / name))
    for path in sorted(DATA.glob("*")):
        lines.extend(_lines(path))
    return lines


def test_line_parsers_agree_on_every_corpus_line():
    differ = [(text, grammar.parse_line(text), fastpath.parse_line(text))
              for text in _all_lines() if grammar.parse_line(text) != fastpath.parse_line(text)]
    assert differ == []


def test_edge_lines_cover_every_line_kind():
    kinds = {fastpath.parse_line(text).kind for text in EDGE_LINES}
    assert kinds == {"record", "body", "header", "lost", "stack_entry", "funcgraph", "blank", "bad"}


def _read(path, engine):
    try:
        return list(read_file(path, engine=engine))
    except TraceInputError as exc:
        return str(exc)


@pytest.mark.parametrize("name", corpus_files())
def test_reader_engines_agree(name):
    """The whole reader, including the fused hot path, gives equal Lines with both engines."""
    assert _read(CORPUS / name, "fast") == _read(CORPUS / name, "lark")


def test_payload_parsers_agree_on_corpus_payloads():
    payloads = set()
    for name in corpus_files():
        try:
            for line in read_file(CORPUS / name):
                payloads.update(event.payload for event in line.events)
        except TraceInputError:
            pass
    assert len(payloads) > 1000
    for payload in payloads:
        text = payload.rstrip()
        assert fastpath.parse_kv_args(text) == grammar.parse_kv_args(text), payload
        assert fastpath.parse_probe_args(text) == grammar.parse_probe_args(text), payload
        # decode_probe validates with one regex what parse_probe_args checks token by token
        assert (decode_probe(text) is not None) <= (fastpath.parse_probe_args(text) is not None)


@pytest.mark.parametrize("text", EDGE_LINES)
def test_reader_engines_agree_on_edge_lines(text):
    fast = list(read_lines([text], engine="fast", require_ftrace=False))
    slow = list(read_lines([text], engine="lark", require_ftrace=False))
    assert fast == slow
