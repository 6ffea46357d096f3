"""`poisoncheck parse`: output, JSON keys, exit codes, stdin, compressed inputs."""

import gzip
import json
import lzma
from pathlib import Path

import pytest
from click.testing import CliRunner

from validator.cli import cli

SAMPLE = Path(__file__).parent.parent / "data" / "ftrace" / "poisoncheck-sample.trace"
MIXED = (
    "# tracer: nop\n#\n"
    "            bash-5402    [001] .....   584.034896: sys_write -> 0x2\n"
    "CPU:1 [LOST 7 EVENTS]\n"
    "some prose that is not ftrace\n"
    "            bash-5402    [001] .....   584.035000: mm_page_free: page=0 pfn=bad order=0\n"
    "            bash-5402    [001] d..2.   584.035950: sched_switch: prev_comm=bash prev_pid=5402\n"
    "           <...>-6512    [001] ...1.   587.739904: tracing_mark_write: line one\n"
    "line two"  # no final newline
)


def run(*args, input=None):
    return CliRunner().invoke(cli, ["parse", *args], input=input, catch_exceptions=False)


def test_json_keys_and_types():
    result = run("--json", "-", input=MIXED)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    for key in ("lines", "events", "unparsed", "lost_markers"):
        assert isinstance(out[key], int)
    assert (out["lines"], out["events"], out["unparsed"], out["lost_markers"]) == (9, 3, 2, 1)
    assert out["by_event"] == {"sched_switch": 1, "sys_exit_write": 1, "tracing_mark_write": 1}
    assert out["by_kind"] == {"continuation": 1, "event": 3, "header": 2, "lost": 1, "unparsed": 2}
    assert out["lost_events"] == 7
    assert [(u["line"], u["text"]) for u in out["first_unparsed"]] == [
        (5, "some prose that is not ftrace"),
        (6, "            bash-5402    [001] .....   584.035000: mm_page_free: page=0 pfn=bad order=0")]
    assert all(set(u) == {"file", "line", "text", "reason"} and u["reason"] for u in out["first_unparsed"])
    assert "kmem:mm_page_free" in out["first_unparsed"][1]["reason"]
    assert out["files"][0]["file"] == "-"


def test_table_output():
    result = run(str(SAMPLE))
    assert result.exit_code == 0
    text = result.stdout
    assert text.startswith(f"{SAMPLE}: 38 lines, 25 events, 0 unparsed, 1 lost-event markers (12 events lost)")
    assert "line kind" in text and "gmem_get_pfn" in text and "unparsed lines" not in text


def test_first_unparsed_limit_and_table():
    result = run("--first", "1", "-", input=MIXED)
    assert result.exit_code == 0
    assert "first 1 of 2 unparsed lines" in result.stdout
    assert "some prose that is not ftrace" in result.stdout


@pytest.mark.parametrize("suffix, compress", [(".gz", gzip.compress), (".xz", lzma.compress)])
def test_compressed_files(tmp_path, suffix, compress):
    path = tmp_path / f"sample.trace{suffix}"
    path.write_bytes(compress(SAMPLE.read_bytes()))
    out = json.loads(run("--json", str(path)).stdout)
    assert out["events"] == 25


def test_several_files_add_up(tmp_path):
    out = json.loads(run("--json", str(SAMPLE), str(SAMPLE)).stdout)
    assert out["events"] == 50 and len(out["files"]) == 2


CR_ONLY = (Path(__file__).parents[2] / "traces" / "lifecycle-buddy.trace").read_bytes().replace(b"\n", b"\r")


@pytest.mark.parametrize("data", [b"", b"\x00\x01binary", b"<!DOCTYPE html>\n<html>", b"just words\n",
                                  CR_ONLY])
def test_not_ftrace_exits_2_with_one_line(tmp_path, data):
    path = tmp_path / "input"
    path.write_bytes(data)
    result = run(str(path))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"Error: {path}: ") and result.stderr.count("\n") == 1


def test_missing_file_exits_2():
    result = run("/nonexistent/trace")
    assert result.exit_code == 2
    assert "No such file or directory" in result.stderr


def test_good_and_bad_inputs_report_both(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"")
    result = run("--json", str(SAMPLE), str(bad))
    assert result.exit_code == 2
    assert json.loads(result.stdout)["events"] == 25
    assert "empty input" in result.stderr


def test_invalid_utf8_is_printable():
    data = b"# tracer: nop\n           \xff\xfebin-7647    [001] .....   674.549127: x y z\n"
    result = CliRunner().invoke(cli, ["parse", "-"], input=data)
    assert result.exit_code == 0
    assert "\\xff\\xfebin-7647" in result.stdout


def test_engine_lark_gives_the_same_json():
    fast = json.loads(run("--json", str(SAMPLE)).stdout)
    slow = json.loads(run("--json", "--engine", "lark", str(SAMPLE)).stdout)
    assert fast == slow


def test_help_has_an_example_and_requires_a_file():
    result = run("--help")
    assert result.exit_code == 0 and "Examples:" in result.stdout and "poisoncheck parse -" in result.stdout
    assert run().exit_code == 2
