"""Check folders from elsewhere (another machine, a CI shard) are not trusted: report and
corpus refuse a hostile results.json or counterexample in one line (exit 2) and write
nothing outside their output folder."""

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from validator.cli import cli

CHECKED = Path(__file__).resolve().parent.parent / "data" / "checked"
RUN = "NoHold-buddy-fail1"
CEX = f"{RUN}/NoHostAccessToTdPage.json"


@pytest.fixture
def check_dir(tmp_path):
    """A check folder as `poisoncheck check --only NoHold-buddy-fail1` leaves it."""
    out = tmp_path / "ck"
    shutil.copytree(CHECKED, out)
    results = out / "results.json"
    results.write_text(results.read_text().replace("@CHECK@", str(out)))
    return out


@pytest.fixture
def traces(tmp_path):
    """An empty corpus: only the check folder is judged."""
    folder = tmp_path / "traces"
    folder.mkdir()
    (folder / "manifest.toml").write_text("")
    return folder


def edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def report(check_dir, traces, out):
    return CliRunner().invoke(cli, ["report", "--check-dir", str(check_dir), "--traces",
                                    str(traces), "-o", str(out)])


def corpus(check_dir, traces, out):
    return CliRunner().invoke(cli, ["corpus", "--counterexamples", str(check_dir), "--traces",
                                    str(traces), "--out", str(out)])


def one_line_exit_2(result, *words):
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    for word in words:
        assert word in result.output, result.output


def test_the_untouched_folder_reports_and_replays(check_dir, traces, tmp_path):
    assert report(check_dir, traces, tmp_path / "out" / "rep").exit_code == 0
    assert (tmp_path / "out" / "rep" / "counterexamples" /
            f"{RUN}--NoHostAccessToTdPage.trace").is_file()
    result = corpus(check_dir, traces, tmp_path / "out" / "tr")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "tr" / f"{RUN}--NoHostAccessToTdPage.trace").is_file()


@pytest.mark.parametrize("command", [report, corpus])
@pytest.mark.parametrize("run", ["../../../OUTSIDE", "a/b", "x\n", "", ".hidden", ["x"]])
def test_a_run_that_is_not_a_name_is_refused_and_nothing_is_written_outside(
        command, run, check_dir, traces, tmp_path):
    edit(check_dir / CEX, lambda d: d.update(run=run))
    result = command(check_dir, traces, tmp_path / "out" / "deep" / "er")
    one_line_exit_2(result, CEX, "run")
    assert not list(tmp_path.rglob("*OUTSIDE*"))


@pytest.mark.parametrize("command", [report, corpus])
@pytest.mark.parametrize("change, field", [
    (lambda d: d.update(property="../x"), "property"),
    (lambda d: d.update(property={"a": 1}), "property"),
    (lambda d: d["constants"].update(Folios="2"), "constants.Folios"),
    (lambda d: d["constants"].update(Design="Evil"), "constants.Design"),
    (lambda d: d["constants"].update(Disabled="abc"), "constants.Disabled"),
    (lambda d: d.update(trace={}), "trace"),
    (lambda d: d.update(trace=[]), "trace"),
    (lambda d: d["trace"].insert(1, 5), "trace[2]"),
    (lambda d: d["trace"][1].update(state=[]), "trace[2].state"),
    (lambda d: d["trace"][1].update(action="../x"), "trace[2].action"),
    (lambda d: d.update(violation=None), "violation"),
])
def test_a_counterexample_of_the_wrong_shape_is_refused(command, change, field, check_dir,
                                                        traces, tmp_path):
    edit(check_dir / CEX, change)
    one_line_exit_2(command(check_dir, traces, tmp_path / "out"), CEX, field)


@pytest.mark.parametrize("command", [report, corpus])
@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, "{}", "[1]", "NaN",
                                  "1" * 5000, '{"run": 1e400}', "\x00\xff"])
def test_hostile_json_in_a_counterexample_is_refused(command, text, check_dir, traces, tmp_path):
    (check_dir / CEX).write_text(text, errors="surrogateescape")
    one_line_exit_2(command(check_dir, traces, tmp_path / "out"), CEX)


@pytest.mark.parametrize("command", [report, corpus])
@pytest.mark.parametrize("text", ['{"runs":[{}]}', "{}", '{"runs": 5}', '{"runs": [[]]}',
                                  '{"runs": [{"name": ["x"]}]}', '{"runs": [{"name": {}}]}',
                                  "[" * 100_000, '{"runs": [], "x": ' + "9" * 5000 + "}",
                                  '{"runs": [], "x": 1e400}'])
def test_hostile_results_are_refused(command, text, check_dir, traces, tmp_path):
    (check_dir / "results.json").write_text(text)
    one_line_exit_2(command(check_dir, traces, tmp_path / "out"), "results.json")


def test_hostile_values_in_results_are_refused(check_dir, traces, tmp_path):
    results = check_dir / "results.json"
    for change, field in [(lambda d: d["runs"][0].update(seconds=-1), "seconds"),
                          (lambda d: d["runs"][0].update(name="../x"), "runs[1].name"),
                          (lambda d: d["runs"][0]["verdicts"].update(Evil={}), "verdicts"),
                          (lambda d: d["runs"][0]["verdicts"]["RefcountSound"].update(
                              steps="9"), "RefcountSound.steps")]:
        saved = results.read_text()
        edit(results, change)
        one_line_exit_2(report(check_dir, traces, tmp_path / "out"), "results.json", field)
        results.write_text(saved)


def test_corpus_reads_the_counterexamples_results_json_lists(check_dir, traces, tmp_path):
    # A foreign JSON in the folder is not a counterexample: not read.
    (check_dir / RUN / "notes.json").write_text("{}")
    (check_dir / "other").mkdir()
    (check_dir / "other" / "x.json").write_text("[")
    result = corpus(check_dir, traces, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "2 counterexamples" in result.output
    # One listed there but deleted is an error naming it, not "0 differ".
    (check_dir / CEX).unlink()
    one_line_exit_2(corpus(check_dir, traces, tmp_path / "out"), CEX, "missing")


def test_corpus_without_results_json_still_reads_the_folder(check_dir, traces, tmp_path):
    (check_dir / "results.json").unlink()
    result = corpus(check_dir, traces, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "2 counterexamples" in result.output
