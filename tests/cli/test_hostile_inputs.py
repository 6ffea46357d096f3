"""Endless or hostile inputs get one line and exit 2, in bounded time, disk and memory."""

import os
import subprocess
import tempfile

import pytest
from click.testing import CliRunner

from validator.cli import cli
from validator.cli import validate as validate_command


@pytest.fixture
def spool_dir(tmp_path, monkeypatch):
    """Where validate's spools go: watched for leftovers."""
    folder = tmp_path / "spool"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def one_line_exit_2(result, *words):
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    for word in words:
        assert word in result.output, result.output


def test_validate_refuses_a_device_of_zeros_before_spooling_it(spool_dir, monkeypatch):
    # Were it spooled, the bound keeps this test from filling the disk.
    monkeypatch.setattr(validate_command, "SPOOL_LIMIT", 1 << 20)
    result = CliRunner().invoke(cli, ["validate", "/dev/zero"])
    one_line_exit_2(result, "/dev/zero", "binary data")
    assert not list(spool_dir.iterdir())


def test_validate_bounds_the_spool_of_an_endless_pipe(spool_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(validate_command, "SPOOL_LIMIT", 1 << 20)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # `yes` writes text until the reader goes away (then SIGPIPE ends it).
    writer = subprocess.Popen(["sh", "-c", f"exec yes '# tracer: nop' > {fifo}"])
    try:
        result = CliRunner().invoke(cli, ["validate", str(fifo)])
    finally:
        writer.kill()
        writer.wait()
    one_line_exit_2(result, str(fifo), "1 MiB", "save it to a file")
    assert not list(spool_dir.iterdir())


# ---- check --merge: results files from other machines -------------------------------

MERGED_RUN = "NoHold-buddy-nofault"


@pytest.fixture
def shard_file(tmp_path):
    """A results.json that merges cleanly: the matrix's own verdicts for one run."""
    import json
    from pathlib import Path
    from validator.check.matrix import load_matrix, select_runs
    from validator.check.results import PropertyVerdict, RunResult
    matrix = Path(__file__).resolve().parents[2] / "spec" / "matrix.toml"
    (run,) = select_runs(load_matrix(matrix), (MERGED_RUN,))
    entry = RunResult(run, {k: PropertyVerdict(v) for k, v in run.expect.items()}).to_json()
    path = tmp_path / "shard.json"
    path.write_text(json.dumps({"runs": [entry]}))
    return path


def merge(path, tmp_path):
    return CliRunner().invoke(cli, ["check", "--only", MERGED_RUN, "--merge", str(path),
                                    "--out", str(tmp_path / "merged")])


def edit_run(path, **values):
    import json
    data = json.loads(path.read_text())
    data["runs"][0].update(values)
    path.write_text(json.dumps(data))


def test_merge_bounds_what_it_reads(tmp_path, monkeypatch):
    from validator.check import readback
    monkeypatch.setattr(readback, "MAX_BYTES", 1 << 20)
    one_line_exit_2(merge("/dev/zero", tmp_path), "/dev/zero", "larger than 1 MiB")


@pytest.mark.parametrize("values, field", [
    ({"seconds": float("nan")}, "NaN"), ({"seconds": float("inf")}, "Infinity"),
    ({"seconds": -95}, "seconds"), ({"peak_mib": "12"}, "peak_mib"),
    ({"collision_probability": -1e-9}, "collision_probability"),
    ({"distinct_states": 1.5}, "distinct_states"), ({"tlc_runs": True}, "tlc_runs"),
    ({"notes": "a string"}, "notes"), ({"notes": [["x"]]}, "notes"),
    ({"name": ["x"]}, "not in the selected"), ({"name": {"a": 1}}, "not in the selected"),
])
def test_merge_refuses_values_no_check_writes(shard_file, tmp_path, values, field):
    edit_run(shard_file, **values)
    one_line_exit_2(merge(shard_file, tmp_path), str(shard_file), field)
    assert not (tmp_path / "merged" / "results.json").exists()


def test_merge_refuses_a_string_for_steps(shard_file, tmp_path):
    import json
    data = json.loads(shard_file.read_text())
    data["runs"][0]["verdicts"]["RefcountSound"]["steps"] = "\x1b[2J"
    shard_file.write_text(json.dumps(data))
    one_line_exit_2(merge(shard_file, tmp_path), "RefcountSound", "steps")


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, "9" * 5000, '{"runs": 1e400}',
                                  '{"runs": [{}]}', "{}", '{"runs": [' + "7" * 5000 + "]}"])
def test_merge_refuses_hostile_json(tmp_path, text):
    path = tmp_path / "shard.json"
    path.write_text(text)
    one_line_exit_2(merge(path, tmp_path), str(path))


def test_merged_notes_cannot_drive_the_terminal(shard_file, tmp_path):
    edit_run(shard_file, notes=["\x1b]0;pwned\x07\x1b[2J ok"])
    result = merge(shard_file, tmp_path)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "pwned" in result.output


# ---- compressed inputs: a bomb of blank lines --------------------------------------

@pytest.mark.parametrize("suffix", [".gz", ".xz"])
@pytest.mark.parametrize("command", ["parse", "validate"])
def test_a_compression_bomb_is_refused_early(tmp_path, suffix, command, monkeypatch):
    import gzip
    import lzma
    from validator.ftrace import bounded
    # Past its bound the bomb is refused; without one it would be read whole (16 MiB of
    # blank lines here, two billion in the issue).
    monkeypatch.setattr(bounded, "FREE_BYTES", 1 << 20)
    data = b"# tracer: nop\n#\n" + b"\n" * (16 << 20)
    path = tmp_path / f"bomb.trace{suffix}"
    path.write_bytes(gzip.compress(data) if suffix == ".gz" else lzma.compress(data))
    result = CliRunner().invoke(cli, [command, str(path)])
    one_line_exit_2(result, str(path), "compression bomb")


def test_a_real_compressed_capture_is_read_whole():
    from pathlib import Path
    trace = Path(__file__).resolve().parents[2] / "traces" / "real" / "lab72-no-mmap.trace.gz"
    result = CliRunner().invoke(cli, ["parse", str(trace)])
    assert result.exit_code == 0, result.output


# ---- numbers on the command line ----------------------------------------------------

@pytest.mark.parametrize("args", [
    ["check", "--list", "--timeout"], ["check", "--list", "--budget"],
    ["check", "--list", "--fpmem"], ["check", "--list", "--simulate"],
    ["validate", "-", "--timeout"], ["ablate", "--timeout"]])
@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "infinity"])
def test_float_options_must_be_finite(args, value):
    result = CliRunner().invoke(cli, args + [value])
    assert result.exit_code == 2, result.output
    assert "finite" in result.output or "range" in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("pattern", ["", " "])
def test_an_empty_only_pattern_selects_nothing_but_an_error(pattern):
    # `--only "$UNSET"` would otherwise start the whole matrix, the deep runs too.
    result = CliRunner().invoke(cli, ["check", "--list", "--only", "NoHold-*", "--only", pattern])
    assert result.exit_code == 2, result.output
    assert "empty pattern" in result.output


@pytest.mark.parametrize("device", ["²:16", "0:¹⁶", "٣:16", "0:١٦", "０:16"])
def test_gmem_dev_takes_ascii_digits_only(device):
    from validator.replay.planner import parse_dev
    assert parse_dev(device) is None
    result = CliRunner().invoke(cli, ["validate", "--gmem-dev", device, "-"], input="")
    assert result.exit_code == 2 and "MAJ:MIN" in result.output, result.output


# ---- trace text: the kernel prints ASCII digits only ---------------------------------

TRACE = (__import__("pathlib").Path(__file__).resolve().parents[2] / "traces"
         / "buggy-cleanup-window.trace")
ALLOC = " qemu-system-x86-4130    [002] .....   100.000007: mm_page_alloc: "


@pytest.mark.parametrize("old, new", [("-4130 ", "-٤١٣٠ "), ("[002]", "[٠٠٢]"),
                                      ("100.000007:", "١٠٠.000007:")])
def test_other_digits_in_pid_cpu_or_timestamp_are_not_numbers(tmp_path, old, new):
    lines = TRACE.read_text().splitlines(keepends=True)
    (at,) = [i for i, line in enumerate(lines) if line.startswith(ALLOC)]
    lines[at] = lines[at].replace(old, new, 1)
    path = tmp_path / "t.trace"
    path.write_text("".join(lines))
    for engine in ([], ["--engine", "lark"]):
        result = CliRunner().invoke(cli, ["parse", "--json", *engine, str(path)])
        assert result.exit_code == 0, result.output
        assert '"unparsed": 1' in result.output, result.output


def test_other_digits_in_a_field_are_not_a_number(tmp_path):
    path = tmp_path / "t.trace"
    path.write_text(TRACE.read_text().replace(ALLOC + "page=0000000000100000 pfn=0x100000 order=0",
                                              ALLOC + "page=0000000000100000 pfn=0x100000 order=٠"))
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert "did not parse and were skipped, the first at line 13" in result.output, result.output


@pytest.mark.parametrize("text", ["1/" + "9" * 5000, "9" * 5000 + "/1"])
def test_a_shard_of_huge_or_foreign_numbers_is_refused(text):
    result = CliRunner().invoke(cli, ["check", "--list", "--shard", text])
    one_line_exit_2(result, "--shard")
