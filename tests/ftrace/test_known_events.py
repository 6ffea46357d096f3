"""The reader is generic: the events it types are its caller's word (KnownEvents), handed
over as plain data, to worker processes too; ftrace/ imports no poisoncheck module."""

import ast
import pickle
from pathlib import Path
from typing import NamedTuple

import pytest

from validator.ftrace import (NO_KNOWN_EVENTS, KnownEvents, LineKind, LostMarker, TracepointFormat,
                              read_lines)
from validator.ftrace.opener import TextLines, open_trace
from validator.ftrace.parallel import ParallelReader
from validator.ftrace.reader import read_events
from validator.ftrace.state import UnparsedCount

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "          worker-12    [001] .....   100.{:06d}: "
# A made-up tool's vocabulary: one tracepoint printed "pfn=%lx len %d", one probe group.
KNOWN = KnownEvents.of(
    tracepoints=[TracepointFormat("toy", "toy_map", (("pfn=%lx len %d", ("pfn", "len")),),
                                  ("pfn",))],
    probe_group="toyprobes", probe_names=["toy_probe"])
TRACEPOINT = "toy_map: pfn=1f len 3"
BAD_TRACEPOINT = "toy_map: pfn len three"
PROBE_NO_PAYLOAD = "toy_probe: no site here"
PROBE = "toy_probe: (toy_fn+0x0/0x10) a=0x10"


def one(body: str, known: KnownEvents = NO_KNOWN_EVENTS, engine: str = "fast"):
    (line,) = read_lines([PREFIX.format(1) + body], known=known, engine=engine,
                         require_ftrace=False)
    return line


@pytest.mark.parametrize("engine", ["fast", "lark"])
def test_without_known_events_every_event_is_key_value(engine):
    line = one(TRACEPOINT, engine=engine)
    assert line.kind is LineKind.EVENT
    assert dict(line.events[0].fields) == {"pfn": "1f len 3"}     # key=value, best effort
    assert one(BAD_TRACEPOINT, engine=engine).kind is LineKind.EVENT
    assert one(PROBE_NO_PAYLOAD, engine=engine).kind is LineKind.EVENT
    assert one(PROBE, engine=engine).events[0].system is None


@pytest.mark.parametrize("engine", ["fast", "lark"])
def test_known_events_are_typed_and_their_bad_payloads_refused(engine):
    event = one(TRACEPOINT, KNOWN, engine).events[0]
    assert (event.system, dict(event.fields)) == ("toy", {"pfn": 0x1f, "len": 3})
    bad = one(BAD_TRACEPOINT, KNOWN, engine)
    assert bad.kind is LineKind.UNPARSED and bad.reason.startswith("toy:toy_map: ")
    assert one(PROBE, KNOWN, engine).events[0].system == "toyprobes"
    refused = one(PROBE_NO_PAYLOAD, KNOWN, engine)
    assert refused.kind is LineKind.UNPARSED and refused.reason.startswith("toyprobes:toy_probe: ")


def test_known_events_pickle_as_their_plain_data():
    again = pickle.loads(pickle.dumps(KNOWN))
    assert again == KNOWN and again.tracepoints.keys() == KNOWN.tracepoints.keys()
    assert again.special_names == KNOWN.special_names


class Seen(NamedTuple):
    line_no: int
    name: str
    fields: dict


def _pack(items) -> list[tuple]:
    return [tuple(item) if type(item) is LostMarker else (item.line_no, item.name, dict(item.fields))
            for item in items]


def test_worker_processes_read_with_the_callers_known_events(tmp_path):
    bodies = [TRACEPOINT, BAD_TRACEPOINT, PROBE, "sched_switch: prev_pid=1 next_pid=2"]
    path = tmp_path / "toy.trace"
    path.write_text("".join(PREFIX.format(i) + bodies[i % 4] + "\n" for i in range(40_000)))
    wanted = frozenset({"toy_map", "toy_probe"})

    def sequential():
        unparsed = UnparsedCount()
        with open_trace(str(path)) as lines:
            return _pack(read_events(lines, wanted, unparsed, known=KNOWN)), unparsed.count

    def parallel():
        with open_trace(str(path)) as lines:
            assert isinstance(lines, TextLines)
            reader = ParallelReader(lines, wanted, jobs=2, pack=_pack,
                                    rebuild={3: Seen, 4: LostMarker}, known=KNOWN,
                                    chunk_bytes=64 << 10)
            items, count = [], 0
            for batch, unparsed in reader.batches():
                items += [tuple(item) for item in batch]
                count += unparsed.count
            return items, count

    items, unparsed = sequential()
    assert unparsed == 10_000 and items[0] == (1, "toy_map", {"pfn": 0x1f, "len": 3})
    assert parallel() == (items, unparsed)


def test_ftrace_imports_nothing_of_poisoncheck():
    """Only its own modules (and validator.children: its workers die with the caller)."""
    outside = []
    for path in sorted((ROOT / "validator" / "ftrace").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            outside += [f"{path.name}: {name}" for name in names
                        if name.startswith("validator") and name != "validator.children"
                        and not name.startswith("validator.ftrace")]
    assert outside == []
