"""validate --json when a later trace cannot be judged: the verdicts already decided are
still written, then the error for the bad trace, and the exit code stays 2."""

import json

from click.testing import CliRunner

from validator.cli import cli

from conftest import ROOT

GOOD = str(ROOT / "traces" / "lifecycle-buddy.trace")


def validate(*args):
    return CliRunner().invoke(cli, ["validate", "--jobs", "1", "-d", "NoHold", *args])


def test_json_keeps_the_decided_verdicts_when_a_later_trace_is_bad(tmp_path):
    missing = str(tmp_path / "missing.trace")
    result = validate("--json", GOOD, missing, GOOD)
    assert result.exit_code == 2, result.output
    got = json.loads(result.stdout)
    assert [g["trace"] for g in got] == [GOOD, missing]
    assert got[0]["verdict"] == "accepted"
    assert got[1] == {"trace": missing, "error": f"{missing}: no such file", "decided": 1}
    # the one-line message on stderr is unchanged
    assert result.stderr.strip() == f"Error: {missing}: no such file"


def test_json_of_a_bad_first_trace_holds_only_its_error(tmp_path):
    result = validate("--json", str(tmp_path), GOOD)
    assert result.exit_code == 2
    assert json.loads(result.stdout) == [
        {"trace": str(tmp_path), "error": f"{tmp_path}: is a directory, not a trace",
         "decided": 0}]


def test_without_json_a_bad_trace_prints_no_verdicts(tmp_path):
    """The text output is written once every trace is judged, as before."""
    result = validate(GOOD, str(tmp_path / "missing.trace"))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "no such file" in result.stderr


def test_json_of_good_traces_is_the_plain_list():
    result = validate("--json", GOOD, GOOD)
    assert result.exit_code == 0
    got = json.loads(result.stdout)
    assert [g["verdict"] for g in got] == ["accepted", "accepted"]
    assert all("error" not in g for g in got)
