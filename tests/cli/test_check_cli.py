"""`poisoncheck check` end to end, with real TLC runs on tiny matrices."""

import json

import pytest
from click.testing import CliRunner

from validator.cli import cli

HOLDS_BUT_P1 = ('expect = { NoHostAccessToTdPage = "%s", NoPrivateHostMapping = "holds", '
                'PoisonContained = "holds", RefcountSound = "holds", '
                'ConversionNeedsNoPoisonCheck = "-", NoLeakWithoutFaults = "-", '
                'ConversionCompletes = "holds", NoHostWriteToTdPage = "violated", '
                'TeardownCompletes = "holds" }')
TINY_RUN = ('[[run]]\nname = "tiny-nohold"\ndesign = "NoHold"\nbacking = "buddy"\nfolios = 1\n'
            'remove_failures = 1\n')


def matrix(tmp_path, p1="violated", extra=""):
    path = tmp_path / "matrix.toml"
    path.write_text(TINY_RUN + HOLDS_BUT_P1 % p1 + "\n" + extra)
    return path


def invoke(*args):
    return CliRunner().invoke(cli, ["check", "-q", *map(str, args)])


def test_real_tlc_run_finds_the_nohold_window(tlc_ready, tmp_path):
    out = tmp_path / "out"
    result = invoke("--matrix", matrix(tmp_path), "--out", out, "--json")
    assert result.exit_code == 0, result.output
    (run,) = json.loads(result.output)["runs"]
    verdicts = {k: v["verdict"] for k, v in run["verdicts"].items()}
    assert verdicts["NoHostAccessToTdPage"] == "violated"
    assert verdicts["PoisonContained"] == "holds"
    assert verdicts["NoLeakWithoutFaults"] == "-"
    assert run["distinct_states"] > 10
    # The counterexample: a failed removal, then the folio is freed and reused.
    trace = json.loads((out / "tiny-nohold" / "NoHostAccessToTdPage.json").read_text())["trace"]
    actions = [step["action"] for step in trace]
    assert "TdxSeptRemoveFailed" in actions and actions[-1] == "AllocatorReuse"
    assert trace[-1]["state"]["sept"]["<<f1, 1>>"] == "mapped"


def test_table_and_mismatch_exit_1(tlc_ready, tmp_path):
    result = invoke("--matrix", matrix(tmp_path, p1="holds"), "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert "VIOLATED (" in result.output and "tiny-nohold" in result.output
    assert ("differs: tiny-nohold: NoHostAccessToTdPage is violated, the matrix expects holds"
            in result.output)


def test_timeout_is_exit_2_one_line(tlc_ready, tmp_path):
    slow = ('[[run]]\nname = "slow"\ndesign = "NoHold"\nbacking = "hugetlb"\nremove_failures = 1\n'
            'mem_errors = 1\n' + HOLDS_BUT_P1.replace('"-", NoLeak', '"-", NoLeak') % "violated")
    path = tmp_path / "slow.toml"
    path.write_text(slow + "\n")
    result = invoke("--matrix", path, "--out", tmp_path / "out", "--timeout", 1)
    assert result.exit_code == 2
    assert "exceeded --timeout 1s" in result.output
    assert "Traceback" not in result.output


def test_tla_error_is_exit_2(tlc_ready, tmp_path, spec_copy):
    module = spec_copy / "Poison.tla"
    module.write_text(module.read_text().replace("Spec == Init /\\ [][Next]_vars",
                                                 "Spec == Init /\\ [][Next]_vars /\\"))
    result = invoke("--spec-dir", spec_copy, "--matrix", matrix(tmp_path), "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "Parsing or semantic analysis failed" in result.output


def test_missing_java_is_exit_2(tmp_path, monkeypatch):
    monkeypatch.setenv("POISONCHECK_JAVA", str(tmp_path / "no-java"))
    result = invoke("--matrix", matrix(tmp_path))
    assert result.exit_code == 2
    assert "Java not found" in result.output and "openjdk-17-jre-headless" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_wrong_jar_hash_is_exit_2(tmp_path, monkeypatch):
    fake = tmp_path / "tla2tools.jar"
    fake.write_bytes(b"not TLC")
    monkeypatch.setenv("POISONCHECK_JAR", str(fake))
    result = invoke("--matrix", matrix(tmp_path))
    assert result.exit_code == 2
    assert "expected 58c6df9a" in result.output


@pytest.mark.parametrize("args, message", [
    (["--only", "nothing-like-this"], "matches no run"),
    (["--matrix", "/nonexistent/m.toml"], "no such file"),
])
def test_bad_usage_is_exit_2(args, message):
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in result.output


def test_unknown_check_in_matrix_is_exit_2(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(TINY_RUN + 'kind = "mutant"\ndisabled = ["nosuch.check"]\n'
                    + HOLDS_BUT_P1 % "violated" + "\n")
    result = invoke("--matrix", path)
    assert result.exit_code == 2
    assert "unknown check(s) nosuch.check" in result.output


def test_the_command_list_matches_the_commands():
    """`poisoncheck --help` lists commands from a table (nothing imported): it must say
    what each command's own help says."""
    import click

    from validator.cli import COMMANDS, cli
    ctx = click.Context(cli)
    for name, (_, _, short) in COMMANDS.items():
        command = cli.get_command(ctx, name)
        assert command.name == name
        first = " ".join(command.help.split("\n\n")[0].split())
        assert first.startswith(short.rstrip(".").split(":")[0]), (name, first)


def test_a_second_check_on_the_same_folder_is_refused(tlc_ready, tmp_path):
    """Two checks of one folder lost each other's results; the second is now refused."""
    import fcntl
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".lock", "w") as held:            # what a running check holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = invoke("--matrix", matrix(tmp_path), "--out", out)
    assert result.exit_code == 2
    assert "in use by another poisoncheck check" in result.output
    assert invoke("--matrix", matrix(tmp_path), "--out", out).exit_code == 0


def test_an_interrupted_check_leaves_no_stale_results(tlc_ready, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert invoke("--matrix", matrix(tmp_path), "--out", out).exit_code == 0
    assert (out / "results.json").is_file()
    from validator.cli import check as check_cmd

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(check_cmd, "check_runs", interrupted)
    invoke("--matrix", matrix(tmp_path), "--out", out)
    assert not (out / "results.json").exists()
    assert [p.name for p in out.iterdir() if p.name.startswith("results.json")] == []


def test_an_unwritable_output_folder_is_one_line_exit_2(tlc_ready, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = invoke("--matrix", matrix(tmp_path), "--out", blocker / "out")
    assert result.exit_code == 2 and "Not a directory" in result.output
    assert "Traceback" not in result.output


def test_results_are_written_whole_or_not_at_all(tlc_ready, tmp_path, monkeypatch):
    """A failing write (a full disk) is one line, exit 2, and leaves no partial file."""
    from pathlib import Path
    out = tmp_path / "out"

    def full_disk(self, target):
        raise OSError(28, "No space left on device", str(target))
    monkeypatch.setattr(Path, "replace", full_disk)
    result = invoke("--matrix", matrix(tmp_path), "--out", out)
    assert result.exit_code == 2 and "No space left on device" in result.output
    assert [p.name for p in out.iterdir() if p.name.startswith("results.json")] == []
