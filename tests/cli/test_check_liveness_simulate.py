"""A run's liveness properties in one TLC process (each alone after a violation), and
`check --simulate`: TLC's random simulation, reported as evidence and never as holds."""

import json

from click.testing import CliRunner

from validator.check.matrix import load_matrix, select_runs
from validator.cli import cli

# A missed put (FolioRef without tdx_unpin() after a successful removal): 6 and 7 break,
# 9 holds (the leaked reference does not block truncation), on one folio to stay small.
MISSED_PUT = """[[run]]
name = "missed-put"
design = "FolioRef"
backing = "buddy"
folios = 1
liveness_folios = 1
kind = "mutant"
disabled = ["tdx_remove_ok.unpin"]
expect = { NoHostAccessToTdPage = "holds", NoPrivateHostMapping = "holds", PoisonContained = "holds", RefcountSound = "violated", ConversionNeedsNoPoisonCheck = "-", NoLeakWithoutFaults = "violated", ConversionCompletes = "violated", NoHostWriteToTdPage = "holds", TeardownCompletes = "holds" }
"""

NOHOLD = """[[run]]
name = "nohold-fail1"
design = "NoHold"
backing = "buddy"
remove_failures = 1
expect = { NoHostAccessToTdPage = "violated", NoPrivateHostMapping = "holds", PoisonContained = "holds", RefcountSound = "holds", ConversionNeedsNoPoisonCheck = "-", NoLeakWithoutFaults = "-", ConversionCompletes = "holds", NoHostWriteToTdPage = "violated", TeardownCompletes = "holds" }
"""


def invoke(*args):
    return CliRunner().invoke(cli, ["check", "-q", *map(str, args)])


def test_liveness_shares_one_process_and_a_violation_is_named_by_lone_reruns(tlc_ready,
                                                                              tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(MISSED_PUT)
    out = tmp_path / "out"
    result = invoke("--matrix", path, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    (run,) = json.loads(result.output)["runs"]
    verdicts = {k: v["verdict"] for k, v in run["verdicts"].items()}
    assert (verdicts["NoLeakWithoutFaults"], verdicts["ConversionCompletes"],
            verdicts["TeardownCompletes"]) == ("violated", "violated", "holds")
    together = (out / "missed-put" / "liveness.cfg").read_text()
    assert together.count("PROPERTY") == 3 and "SYMMETRY" not in together
    for key in ("NoLeakWithoutFaults", "ConversionCompletes", "TeardownCompletes"):
        alone = (out / "missed-put" / f"{key}.cfg").read_text()
        assert alone.count("PROPERTY") == 1
    assert (out / "missed-put" / "ConversionCompletes.json").exists()
    assert not (out / "missed-put" / "TeardownCompletes.json").exists()


def test_liveness_that_holds_costs_one_process(tlc_ready, tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(NOHOLD)
    out = tmp_path / "out"
    result = invoke("--matrix", path, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    assert (out / "nohold-fail1" / "liveness.cfg").exists()
    assert not list((out / "nohold-fail1").glob("*Completes.cfg"))
    text = (out / "nohold-fail1" / "liveness.cfg").read_text()
    assert "f2 = f2" in text            # two buddy folios by default for liveness


def test_simulation_finds_the_window_and_breadth_first_search_its_shortest_form(
        tlc_ready, tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(NOHOLD)
    out = tmp_path / "sim"
    result = invoke("--matrix", path, "--out", out, "--simulate", 15, "--depth", 40,
                    "--only", "nohold-fail1", "--json")
    assert result.exit_code == 0, result.output
    (sim,) = json.loads(result.output)["simulations"]
    found = sim["violated"]["NoHostAccessToTdPage"]
    assert found["bfs"] == "confirmed" and found["shortest"] == 6
    assert found["depth"] >= found["shortest"]
    assert "NoPrivateHostMapping" in sim["no_violation"]
    assert (out / "nohold-fail1" / "NoHostAccessToTdPage-simulated.json").exists()
    assert json.loads((out / "simulation.json").read_text())["simulations"][0]["name"] == \
        "nohold-fail1"


def test_a_simulated_violation_the_matrix_does_not_expect_is_exit_1(tlc_ready, tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(NOHOLD.replace('NoHostAccessToTdPage = "violated"',
                                   'NoHostAccessToTdPage = "holds"'))
    result = invoke("--matrix", path, "--out", tmp_path / "sim", "--simulate", 10,
                    "--depth", 40, "--only", "nohold-fail1")
    assert result.exit_code == 1
    assert "differs: nohold-fail1: NoHostAccessToTdPage is violated (simulation" in result.output
    assert "never a holds" in result.output


def test_simulated_runs_are_never_searched_breadth_first_and_never_hold(tmp_path):
    path = tmp_path / "m.toml"
    big = NOHOLD.replace('"nohold-fail1"', '"big"').replace(
        'remove_failures = 1', 'remove_failures = 1\nsimulation = true').replace(
        'NoPrivateHostMapping = "holds"', 'NoPrivateHostMapping = "not established"').replace(
        '"holds"', '"not established"')
    path.write_text(NOHOLD + "\n" + big)
    runs = load_matrix(path)
    assert [r.name for r in select_runs(runs, ())] == ["nohold-fail1"]
    assert [r.name for r in select_runs(runs, (), simulate=True)] == ["big"]
    result = invoke("--matrix", path, "--simulate", 5, "--only", "big", "--list")
    assert result.exit_code == 0 and result.output.split() == ["big"]
    path.write_text(big.replace('ConversionCompletes = "not established"',
                                'ConversionCompletes = "holds"'))
    result = invoke("--matrix", path, "--list")
    assert result.exit_code == 2 and "a simulated run never establishes holds" in result.output


NOFAULT = NOHOLD.replace('"nohold-fail1"', '"nohold-nofault"').replace(
    "remove_failures = 1", "remove_failures = 0").replace(
    'NoHostAccessToTdPage = "violated"', 'NoHostAccessToTdPage = "holds"').replace(
    'NoLeakWithoutFaults = "-"', 'NoLeakWithoutFaults = "holds"').replace(
    'NoHostWriteToTdPage = "violated"', 'NoHostWriteToTdPage = "holds"')


def test_a_small_run_that_holds_is_one_exploration_of_fairspec(tlc_ready, tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(NOFAULT)
    out = tmp_path / "out"
    result = invoke("--matrix", path, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    (run,) = json.loads(result.output)["runs"]
    assert run["tlc_runs"] == 1
    assert {v["verdict"] for v in run["verdicts"].values()} == {"holds", "-"}
    text = (out / "nohold-nofault" / "all.cfg").read_text()
    assert "SPECIFICATION FairSpec" in text and "SYMMETRY" not in text
    assert "INVARIANT TypeOK" in text and text.count("PROPERTY") == 5   # 3, 8 and 6, 7, 9


def test_a_small_run_s_safety_violation_keeps_its_shortest_length(tlc_ready, tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(NOHOLD)
    out = tmp_path / "out"
    result = invoke("--matrix", path, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    (run,) = json.loads(result.output)["runs"]
    # the symmetric breadth-first search of the matrix finds the same lengths (6 and 9)
    assert run["verdicts"]["NoHostAccessToTdPage"]["steps"] == 6
    assert run["verdicts"]["NoHostWriteToTdPage"]["steps"] == 9
    assert (out / "nohold-fail1" / "all.cfg").exists()
