"""`poisoncheck check --distributed N`: TLC's own distributed mode on loopback."""

import json
import subprocess
from pathlib import Path

from click.testing import CliRunner

from validator.cli import cli
from validator.model.properties import BY_KEY

from test_check_cli import matrix

ROOT = Path(__file__).resolve().parents[2]


def invoke(*args):
    return CliRunner().invoke(cli, ["check", "-q", *map(str, args)])


def runs_of(result) -> dict:
    return {r["name"]: r for r in json.loads(result.stdout)["runs"]}


def no_java_left(tmp_path) -> bool:
    found = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    return found.stdout.strip() == ""


def test_distributed_safety_finds_the_plain_run_s_states(tlc_ready, tmp_path):
    name = "NoHold-buddy-nofault"
    # Liveness on one folio: the plain check then searches safety alone, with symmetry,
    # as the distributed mode does (a small run's single exploration has no symmetry).
    text = (ROOT / "spec" / "matrix.toml").read_text()
    path = tmp_path / "m.toml"
    path.write_text(text.replace(f'name = "{name}"\n', f'name = "{name}"\nliveness_folios = 1\n'))
    plain = invoke("--matrix", path, "--only", name, "--out", tmp_path / "plain", "--json")
    spread = invoke("--matrix", path, "--only", name, "--distributed", 2,
                    "--out", tmp_path / "dist", "--json")
    assert plain.exit_code == 0 and spread.exit_code == 0, spread.output
    a, b = runs_of(plain)[name], runs_of(spread)[name]
    assert b["distinct_states"] == a["distinct_states"] > 100
    for key, verdict in a["verdicts"].items():
        if BY_KEY[key].kind == "liveness":                          # said, not dropped
            assert b["verdicts"][key]["verdict"] == "not checked"
        else:
            assert b["verdicts"][key]["verdict"] == verdict["verdict"]
    assert b["mismatches"] == [] and any("liveness not checked" in n for n in b["notes"])
    workers = sorted(p.name for p in (tmp_path / "dist" / name).glob("*.worker*.out"))
    assert workers == ["distributed.worker1.out", "distributed.worker2.out"]
    assert no_java_left(tmp_path)


def test_a_violation_found_distributed_is_named_by_plain_tlc(tlc_ready, tmp_path):
    # One folio, one removal failure: NoHold hands the page back while the S-EPT maps it.
    path = matrix(tmp_path)
    plain = invoke("--matrix", path, "--out", tmp_path / "plain", "--json")
    spread = invoke("--matrix", path, "--distributed", 1, "--out", tmp_path / "dist", "--json")
    assert plain.exit_code == 0 and spread.exit_code == 0, spread.output
    a, b = runs_of(plain)["tiny-nohold"], runs_of(spread)["tiny-nohold"]
    assert a["verdicts"]["NoHostAccessToTdPage"]["verdict"] == "violated"
    assert b["verdicts"]["NoHostAccessToTdPage"] == {
        **a["verdicts"]["NoHostAccessToTdPage"],
        "counterexample": b["verdicts"]["NoHostAccessToTdPage"]["counterexample"]}
    assert any("plain TLC named it" in n for n in b["notes"])
    assert no_java_left(tmp_path)


def test_remote_only_needs_a_port(tmp_path):
    result = invoke("--only", "NoHold-buddy-nofault", "--distributed", 0, "--out", tmp_path)
    assert result.exit_code == 2 and "--server-port" in result.output


def test_bad_heap_and_a_worker_without_jar_are_one_line_exit_2(tmp_path, monkeypatch):
    result = invoke("--only", "NoHold-buddy-nofault", "--heap", "2x", "--out", tmp_path)
    assert result.exit_code == 2 and "'2x' is not a Java heap size" in result.output
    monkeypatch.setenv("POISONCHECK_JAR", str(tmp_path / "missing.jar"))
    worker = CliRunner().invoke(cli, ["tlc-worker", "127.0.0.1", "--port", "10997",
                                      "--host", "127.0.0.1"])
    assert worker.exit_code == 2 and "poisoncheck setup" in worker.output
    assert len(worker.output.strip().splitlines()) == 1, worker.output
    heap = CliRunner().invoke(cli, ["tlc-worker", "127.0.0.1", "--port", "10997",
                                    "--host", "127.0.0.1", "--heap", "lots"])
    assert heap.exit_code == 2 and "'lots' is not a Java heap size" in heap.output


def test_a_budget_is_refused_with_the_distributed_mode(tmp_path):
    result = invoke("--only", "NoHold-buddy-nofault", "--distributed", 1, "--budget", 60,
                    "--out", tmp_path)
    assert result.exit_code == 2 and "--budget stops plain TLC processes" in result.output
    assert invoke("--only", "NoHold-buddy-nofault", "--budget", 0).exit_code == 2
