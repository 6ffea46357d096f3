"""Mutation fuzzing over corpus lines: no input may raise, every line is classified once, and
the fast path keeps agreeing with the lark grammar on lines no capture holds."""

import io
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from validator.ftrace import (
    LineKind, TraceInputError, fastpath, grammar, iter_lines, printable, summarise,
)
# the reader as poisoncheck runs it: the probe catalogue's events typed
from validator.replay.input import read_lines

from test_ftrace_corpus import CORPUS, corpus_files

DATA = Path(__file__).parent.parent / "data" / "ftrace"


def _corpus_lines() -> list[str]:
    lines = set()
    paths = [CORPUS / name for name in corpus_files()] if CORPUS.is_dir() else []
    for path in paths + sorted(DATA.glob("*")):
        data = path.read_bytes()
        if b"\x00" in data or path.suffix == ".html":
            continue
        lines.update(data.decode("utf-8", "surrogateescape").split("\n"))
    return sorted(lines)


CORPUS_LINES = _corpus_lines()
# characters that matter to the grammar, plus some that do not
ALPHABET = st.sampled_from(list(" \t-[]():.#=<>/+|\"\\,_0123456789abcdefxXdNhs\r\x0b\x85\udcff\u00e9\x00"))
# FTRACE_FUZZ_EXAMPLES=20000 for a long run
SETTINGS = settings(max_examples=int(os.environ.get("FTRACE_FUZZ_EXAMPLES", "400")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def corpus_line():
    # an index, not sampled_from: hypothesis labels a sampled_from by hashing all 60k lines
    return st.integers(0, len(CORPUS_LINES) - 1).map(CORPUS_LINES.__getitem__)


@st.composite
def mutated_line(draw) -> str:
    line = draw(corpus_line())
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "truncate", "splice", "bytes"]))
        i = draw(st.integers(0, len(line)))
        j = draw(st.integers(i, min(len(line), i + 12)))
        if op == "insert":
            line = line[:i] + draw(st.text(ALPHABET, min_size=1, max_size=6)) + line[i:]
        elif op == "delete":
            line = line[:i] + line[j:]
        elif op == "replace":
            line = line[:i] + draw(st.text(ALPHABET, min_size=1, max_size=3)) + line[j:]
        elif op == "truncate":
            line = line[:i]
        elif op == "splice":  # the head of one record glued onto another
            other = draw(corpus_line())
            line = line[:i] + other[draw(st.integers(0, len(other))):]
        else:
            raw = draw(st.binary(min_size=1, max_size=8)).decode("utf-8", "surrogateescape")
            line = line[:i] + raw + line[i:]
    return line.replace("\n", " ")  # one line: the opener never yields a newline


# Records assembled from column pieces, mostly right, sometimes wrong: they reach the rule
# boundaries of the grammar (where the comm ends, which context form applies, what the hot
# path may shortcut) far more often than mutations of real lines do.
def _mostly(valid: list[str], wrong: list[str]):
    return st.sampled_from(valid * 4 + wrong)


COMM_CHARS = st.sampled_from(list("ab -_0123[]():/<>.\t"))
PIECES = [
    _mostly(["", "", " ", "   ", "\t", "                "], []),
    st.one_of(st.just(""), st.sampled_from(["bash", "a-b-1", "x y", "<...>", "-1 [0]"]),
              st.text(COMM_CHARS, max_size=18)),
    _mostly(["-5402", "-1"], ["-", "", " 5402", "-12-3"]),
    _mostly(["", "", " (  12)", " (-------)"], [" (x)", "(1)"]),
    _mostly([" [001]", " [1]", "  [1023]"], ["[001]", "", " 1", " 12"]),
    _mostly(["", " d..2.", " dNh5", " dn.h413"], ["d..2.", " 1d..2."]),
    _mostly([" 584.035950", " 3", " 674.316951184"],
            [" 19758us!", " 19965us ", "", " 0 0 00000000 00000000 [22dc5c0c] 16.136ms (+0.098ms)"]),
    _mostly([": ", ":    "], [":", " ", ": (+12) "]),
    _mostly(["x: y", "tracing_mark_write: t", "m+0x1/0x2 <ff>: t", "a: (f+0x0/0x8) a=1"],
            ["sys_write -> 0x2", "sys_write(fd: 1)", "f <-g", "f", "<stack trace>", "UNKNOWN TYPE 5",
             "!!!", "", "sched:sched_switch: a=1", "a=1 b=2"]),
]


@st.composite
def record_like(draw) -> str:
    text = "".join(draw(piece) for piece in PIECES)
    if draw(st.booleans()):
        text += "".join(draw(piece) for piece in PIECES)
    return text


def _check_classified(texts, lines):
    assert len(lines) == len(texts)
    assert [line.line_no for line in lines] == list(range(1, len(texts) + 1))
    for line, text in zip(lines, texts):
        assert line.text == text and isinstance(line.kind, LineKind)
        assert (line.kind is LineKind.EVENT) == bool(line.events)
        assert (line.kind is LineKind.LOST) == (line.lost is not None)
        if line.kind is LineKind.UNPARSED:
            assert line.reason
        for event in line.events:
            dict(event.fields)  # lazy decoding must not raise either
            assert isinstance(event.name, str)


@SETTINGS
@given(st.lists(mutated_line(), min_size=1, max_size=12))
def test_mutated_lines_are_all_classified(texts):
    lines = list(read_lines(texts, require_ftrace=False))
    _check_classified(texts, lines)
    summary = summarise(lines)
    json.dumps(summary.to_dict())
    for unparsed in summary.first_unparsed:
        printable(unparsed.text).encode("utf-8")


@SETTINGS
@given(st.lists(mutated_line(), min_size=1, max_size=8))
def test_engines_agree_on_mutated_lines(texts):
    for text in texts:
        assert fastpath.parse_line(text) == grammar.parse_line(text), text
    fast = list(read_lines(texts, engine="fast", require_ftrace=False))
    slow = list(read_lines(texts, engine="lark", require_ftrace=False))
    assert fast == slow


@settings(SETTINGS, max_examples=SETTINGS.max_examples * 3)  # cheap, and the rare cases live here
@given(st.lists(record_like(), min_size=1, max_size=6))
def test_engines_agree_on_assembled_records(texts):
    for text in texts:
        assert fastpath.parse_line(text) == grammar.parse_line(text), text
    fast = list(read_lines(texts, engine="fast", require_ftrace=False))
    assert fast == list(read_lines(texts, engine="lark", require_ftrace=False))
    _check_classified(texts, fast)


@SETTINGS
@given(st.text(ALPHABET, max_size=80))
def test_engines_agree_on_random_text(text):
    text = text.replace("\n", " ")
    assert fastpath.parse_line(text) == grammar.parse_line(text)


@SETTINGS
@given(st.binary(max_size=600), st.lists(corpus_line(), max_size=5))
def test_random_bytes_never_raise(noise, lines):
    data = "\n".join(lines).encode("utf-8", "surrogateescape") + noise
    try:
        texts = list(iter_lines(io.BytesIO(data), "<fuzz>"))
        result = list(read_lines(texts))
    except TraceInputError as exc:
        assert "\n" not in str(exc)
        return
    _check_classified(texts, result)


@pytest.mark.parametrize("line", [
    "            bash-5402    [001] .....   " + "9" * 5000 + ".000001: x: y",
    "            bash-" + "9" * 5000 + "    [001] .....   1.000001: x: y",
    "            bash-5402    [001] .....   1.000001: gmem_alloc: (f+0x0/0x1) pfn=" + "9" * 5000,
    # a typed tracepoint's %lu field: converted lazily, after the reader (found by make fuzz)
    "            bash-5402    [001] .....   1.000001: mm_page_alloc: page=000000000010044c pfn="
    + "1" * 4400 + " order=0 migratetype=1 gfp_flags=GFP_KERNEL",
])
def test_huge_numbers_do_not_raise(line):
    (parsed,) = read_lines([line], require_ftrace=False)
    dict(parsed.events[0].fields) if parsed.events else None
    assert parsed.kind in (LineKind.EVENT, LineKind.UNPARSED)


@pytest.mark.parametrize("engine", ["fast", "lark"])
@pytest.mark.parametrize("lead", [" ", "\t", " \t"])
def test_leading_blanks_cost_linear_time(engine, lead):
    """N leading blanks cost O(N^2) in the task columns' regexes (10,000 took 28 s): the
    task now starts at its first non-blank character, so the padding is never re-tried.
    A count of regex steps would be exact; a 200,000-blank line finishing at all is the
    test (quadratic: hours)."""
    def read(tail):
        (line,) = read_lines([lead * 200_000 + tail], engine=engine, require_ftrace=False)
        return line
    assert read("x").kind is LineKind.UNPARSED
    record = read("bash-1 [000] .... 1.0: x: y")     # the padding before a task is allowed
    assert record.kind is LineKind.EVENT and record.events[0].task == "bash"
    assert read("-1 [0] 1.0:").kind is LineKind.UNPARSED   # blanks only are not a task


@pytest.mark.parametrize("engine", ["fast", "lark"])
def test_huge_numbers_in_headers_and_lost_markers(engine):
    """A header's CPU count of 5000 digits is an unparsed line with its reason (was a
    ValueError traceback); a lost-event marker with such a count still says events were
    lost, how many unknown."""
    big = "9" * 5000
    header, lost = read_lines(["# entries-in-buffer/entries-written: 1/1   #P:" + big,
                               f"CPU:1 [LOST {big} EVENTS]"], engine=engine,
                              require_ftrace=False)
    assert header.kind is LineKind.UNPARSED and "too large" in header.reason
    assert lost.kind is LineKind.LOST and lost.lost.count is None


@pytest.mark.parametrize("engine", ["fast", "lark"])
@pytest.mark.parametrize("text", [
    "1 [1] " * 40_000,
    "  a-1 [000] 1.0: tracing_mark_write: " + "x-1 [000] 1.0: y " * 20_000,
    "a b c=" * 50_000,
    "  a-1 [000] 1.0: x: lead " + "k=v w " * 50_000 + "\"q \\\" " * 1000,
    "#" + "|" * 200_000,
    " 0) " + "| " * 100_000,
])
def test_long_pathological_lines_stay_linear(engine, text):
    (line,) = read_lines([text], engine=engine, require_ftrace=False)
    for event in line.events:
        dict(event.fields)
    assert line.kind in LineKind
