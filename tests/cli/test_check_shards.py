"""`poisoncheck check` across machines: --list, --shard K/N, --merge, --workers."""

import json

import pytest
from click.testing import CliRunner
from hypothesis import given, strategies as st

from validator.check.matrix import MatrixError
from validator.check.shards import parse_shard, shard
from validator.cli import cli

from conftest import ROOT

# Three small runs of the real matrix (a few seconds of TLC each).
SUBSET = ("NoHold-buddy-nofault", "NoHold-buddy-fail1", "FolioRef-buddy-nofault")


def invoke(*args):
    return CliRunner().invoke(cli, ["check", "-q", *map(str, args)])


def names(*args) -> list[str]:
    result = invoke("--list", *args)
    assert result.exit_code == 0, result.output
    return result.output.split()


def only(*runs):
    return [arg for run in runs for arg in ("--only", run)]


def test_list_names_the_matrix_runs_without_tlc(monkeypatch):
    monkeypatch.setenv("POISONCHECK_JAR", "/nonexistent/tla2tools.jar")   # not needed
    listed = names()
    matrix = (ROOT / "spec" / "matrix.toml").read_text()
    assert listed and all(f'name = "{name}"' in matrix for name in listed)
    assert len(set(listed)) == len(listed)
    assert set(names("--deep")) > set(listed)       # deep runs only with --deep


def test_shards_partition_the_list():
    whole = names("--deep")
    for n in (1, 2, 3, 7):
        parts = [names("--deep", "--shard", f"{k}/{n}") for k in range(1, n + 1)]
        assert sorted(sum(parts, [])) == sorted(whole)                  # together: all
        assert sum(map(len, parts)) == len(whole)                       # disjoint
        assert names("--deep", "--shard", f"1/{n}") == parts[0]         # the same each time


@given(st.lists(st.integers(), max_size=40), st.integers(1, 9))
def test_shard_is_a_partition_in_matrix_order(runs, n):
    parts = [shard(runs, k, n) for k in range(1, n + 1)]
    assert sorted(x for p in parts for x in p) == sorted(runs)
    for p in parts:     # each share keeps the matrix's order
        assert p == [x for x in runs if x in p] or len(set(runs)) != len(runs)


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0", "-1/2", ""])
def test_a_bad_shard_is_refused(text):
    with pytest.raises(MatrixError):
        parse_shard(text)
    result = invoke("--list", "--shard", text)
    assert result.exit_code == 2 and "--shard" in result.output


def test_merge_refuses_what_is_not_the_selection(tmp_path):
    result = invoke("--merge")
    assert result.exit_code == 2 and "needs the shards' results.json" in result.output
    stray = tmp_path / "results.json"
    stray.write_text('{"runs": [{"name": "no-such-run"}]}')
    result = invoke("--merge", stray, "--out", tmp_path / "out")
    assert result.exit_code == 2 and "no-such-run" in result.output
    stray.write_text("not json")
    result = invoke("--merge", stray, "--out", tmp_path / "out")
    assert result.exit_code == 2 and "not a results.json" in result.output
    result = invoke(stray)
    assert result.exit_code == 2 and "only with --merge" in result.output


def verdicts(results: dict) -> dict:
    return {r["name"]: ({k: (v["verdict"], v["steps"]) for k, v in r["verdicts"].items()},
                        r["distinct_states"], r["mismatches"])
            for r in results["runs"]}


def test_merged_shards_equal_the_whole_check(tlc_ready, tmp_path):
    whole = invoke(*only(*SUBSET), "--out", tmp_path / "whole", "--json")
    assert whole.exit_code == 0, whole.output
    for k in (1, 2):
        part = invoke(*only(*SUBSET), "--shard", f"{k}/2", "--out", tmp_path / f"s{k}")
        assert part.exit_code == 0, part.output
    shards = [tmp_path / f"s{k}" / "results.json" for k in (1, 2)]
    assert all(len(json.loads(p.read_text())["runs"]) >= 1 for p in shards)

    merged = invoke(*only(*SUBSET), "--merge", *shards, "--out", tmp_path / "merged", "--json")
    assert merged.exit_code == 0, merged.output
    assert verdicts(json.loads(merged.stdout)) == verdicts(json.loads(whole.stdout))
    written = json.loads((tmp_path / "merged" / "results.json").read_text())
    assert verdicts(written) == verdicts(json.loads(whole.stdout))

    # One shard missing, or one twice: no table that looks whole.
    result = invoke(*only(*SUBSET), "--merge", shards[0], "--out", tmp_path / "m2")
    assert result.exit_code == 2 and "no results for" in result.output
    result = invoke(*only(*SUBSET), "--merge", shards[0], shards[0], "--out", tmp_path / "m3")
    assert result.exit_code == 2 and "in another results file too" in result.output


def test_workers_give_the_same_states(tlc_ready, tmp_path):
    runs = only("NoHold-buddy-fail1")
    one = invoke(*runs, "--out", tmp_path / "w1", "--json")
    two = invoke(*runs, "--workers", "2", "--heap", "1g", "--fpmem", "0.25",
                 "--out", tmp_path / "w2", "--json")
    assert one.exit_code == 0 and two.exit_code == 0, two.output
    # The same states and verdicts; not always the same counterexample length: TLC's
    # parallel BFS does not keep counterexamples shortest (seen here: 7 steps, not 6).
    a, b = ([r for r in json.loads(out.stdout)["runs"] if r["name"] == "NoHold-buddy-fail1"][0]
            for out in (one, two))
    assert a["distinct_states"] == b["distinct_states"]
    assert ({k: v["verdict"] for k, v in a["verdicts"].items()}
            == {k: v["verdict"] for k, v in b["verdicts"].items()})
    steps = [(a["verdicts"][k]["steps"], b["verdicts"][k]["steps"]) for k in a["verdicts"]
             if a["verdicts"][k]["verdict"] == "violated"]
    assert steps and all(s1 <= s2 for s1, s2 in steps)     # one worker: the shortest
    cfg_out = (tmp_path / "w2" / "NoHold-buddy-fail1" / "all.out").read_text()
    assert "with 2 workers" in cfg_out            # TLC's banner: the option reached it
    assert "Model-Checking with fp 0 and" in cfg_out    # the pinned polynomial
    assert 0 < a["collision_probability"] < 1e-6


def test_collision_estimate_is_the_larger_of_tlc_s_two():
    from validator.tlc.output import collision_estimate
    # TLC 2.15's success message (code 2193); the second line only past 1E-10.
    text = ("Model checking completed. No error has been found.\n"
            "  Estimates of the probability that TLC did not check all reachable states\n"
            "  because two distinct states had the same fingerprint:\n"
            "  calculated (optimistic):  val = 6.0E-14\n")
    assert collision_estimate(text) == 6.0e-14
    both = text + "  based on the actual fingerprints:  val = 5.2E-9\n"
    assert collision_estimate(both) == 5.2e-9
    assert collision_estimate("Model checking completed.") is None


def test_progress_line_reads_tlc_s_report():
    from validator.tlc.process import progress_line
    # Message 2200 of TLC 2.15, as printed on this machine (the number is the depth).
    tlc = ("Progress(680) at 2026-11-30 15:23:31: 594,832 states generated (594,832 s/min), "
           "199,053 distinct states found (199,053 ds/min), 323 states left on queue.")
    assert progress_line(tlc, 125) == ("199,053 distinct states, 9,914 states/s, queue 323, "
                                       "depth 680 (2 min)")
    assert progress_line("@!@!@STARTMSG 2200:0 @!@!@", 125) is None


def test_children_run_hands_over_lines_as_they_come(tmp_path):
    import sys
    from validator import children
    seen = []
    code = "import sys; print('one', flush=True); print('two'); sys.stderr.write('err')"
    rc, out, err, peak = children.run([sys.executable, "-c", code], tmp_path, 30, seen.append)
    assert (rc, out, err, seen) == (0, "one\ntwo\n", "err", ["one\n", "two\n"])
    assert peak > 0


def test_long_runs_print_tlc_progress(tlc_ready, tmp_path, monkeypatch):
    from validator.tlc import process
    monkeypatch.setattr(process, "PROGRESS_AFTER", 0)     # every run is "long" here
    result = CliRunner().invoke(cli, ["check", "--only", "NoHold-buddy-nofault",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines()
             if line.startswith("NoHold-buddy-nofault all: ")]
    assert lines and "distinct states" in lines[-1] and "states/s" in lines[-1]
    # one exploration of FairSpec, without symmetry (690 states with it)
    assert lines[-1].startswith("NoHold-buddy-nofault all: 1,350 distinct states")


def test_merge_without_tlc_and_a_failed_write(tmp_path):
    import os
    from validator.check.matrix import load_matrix, select_runs
    from validator.check.results import PropertyVerdict, RunResult
    runs = select_runs(load_matrix(ROOT / "spec" / "matrix.toml"), ("NoHold-buddy-nofault",))
    results = [RunResult(run, {k: PropertyVerdict(v) for k, v in run.expect.items()})
               for run in runs]
    source = tmp_path / "shard.json"
    source.write_text(json.dumps({"runs": [r.to_json() for r in results]}))
    merged = invoke("--only", "NoHold-buddy-nofault", "--merge", source, "--out", tmp_path / "a")
    assert merged.exit_code == 0, merged.output           # the matrix's own verdicts
    assert all(run.name in merged.output for run in runs)
    # results.json cannot be written (its temporary name is taken by a folder): one line.
    out = tmp_path / "b"
    (out / f"results.json.{os.getpid()}").mkdir(parents=True)
    failed = invoke("--only", "NoHold-buddy-nofault", "--merge", source, "--out", out)
    assert failed.exit_code == 2 and "Traceback" not in failed.output
    assert len(failed.output.strip().splitlines()) == 1, failed.output
