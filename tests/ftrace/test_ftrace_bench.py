"""The benchmark's generated trace is realistic enough to read cleanly, and its runner works
(no timing is asserted: that is what `make bench` reports)."""

import json
import sys

from validator.ftrace import LineKind, summarise
# the reader as poisoncheck runs it: the probe catalogue's events typed
from validator.replay.input import read_file

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import bench  # noqa: E402  (make bench's script, outside the package)
import reader_mix  # noqa: E402  (its reader stress mix)


def test_generated_trace_reads_cleanly(tmp_path):
    path = tmp_path / "trace.txt"
    reader_mix.generate(path, 3000, seed=7)
    lines = list(read_file(path))
    summary = summarise(lines)
    assert summary.lines == 3000 and summary.unparsed == 0
    assert summary.events + summary.lost_markers + summary.by_kind[LineKind.HEADER] == 3000
    # the mix the validator will meet: protocol tracepoints, poisoncheck probes, noise
    names = set(summary.by_event)
    assert {"mm_page_alloc", "kvm_tdp_mmu_spte_changed", "memory_failure_event", "sched_switch"} <= names
    assert len(names & set(reader_mix.PROBES)) >= 10
    cpus = {e.cpu for line in lines for e in line.events}
    assert len(cpus) == 8


def test_generation_is_deterministic(tmp_path):
    reader_mix.generate(tmp_path / "a", 500, seed=3)
    reader_mix.generate(tmp_path / "b", 500, seed=3)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_main_runs_every_measurement(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "BENCH_DIR", tmp_path)
    assert bench.main(["--lines", "400", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    names = [r["name"] for r in out["results"]]
    assert names == [name for name, _ in bench.MEASUREMENTS]
    assert names[0].startswith("baseline")
    assert all(r["lines"] == 400 for r in out["results"])
    assert out["results"][0]["ratio"] == 1.0
    assert (tmp_path / "trace-400-1.txt").exists()
