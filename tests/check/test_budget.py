"""`check --budget`: a TLC process stopped in time gives no verdict, with what it found so far;
and every TLC process's peak memory, from the kernel's accounting of that child."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from validator import children
from validator.check.matrix import Run
from validator.check.results import PropertyVerdict, RunResult
from validator.check.runner import _derive
from validator.cli import cli
from validator.tlc.process import parse_progress

EXPECT = ('expect = { NoHostAccessToTdPage = "violated", NoPrivateHostMapping = "holds", '
          'PoisonContained = "violated", RefcountSound = "holds", '
          'ConversionNeedsNoPoisonCheck = "-", NoLeakWithoutFaults = "-", '
          'ConversionCompletes = "holds", NoHostWriteToTdPage = "holds", TeardownCompletes = "holds" }')
# About a minute of TLC on this machine (NoHold-hugetlb-fail1-memerr1 of the matrix).
SLOW = ('[[run]]\nname = "slow"\ndesign = "NoHold"\nbacking = "hugetlb"\nremove_failures = 1\n'
        'mem_errors = 1\n' + EXPECT + "\n")
ALLOCATE = ("b = bytearray(96 << 20); b[::4096] = b'x' * len(b[::4096]); "
            "print(len(b), flush=True)")


def test_a_child_s_peak_memory_is_its_own():
    big = children.run([sys.executable, "-c", ALLOCATE], None, 60)
    small = children.run([sys.executable, "-c", "print(1)"], None, 60)
    assert big.returncode == small.returncode == 0
    assert big.peak_kib >= 96 << 10          # ru_maxrss is in KiB on Linux
    assert small.peak_kib < 96 << 10         # not the larger child's, as RUSAGE_CHILDREN is


def test_a_child_past_its_timeout_is_killed_with_its_peak_so_far():
    code = ALLOCATE + "; import time; time.sleep(60)"
    with pytest.raises(subprocess.TimeoutExpired) as stopped:
        children.run([sys.executable, "-c", code], None, 3)
    assert stopped.value.peak_kib >= 96 << 10
    assert stopped.value.output == f"{96 << 20}\n"      # what it printed before
    assert not children._LIVE


def test_parse_progress_reads_the_numbers_of_tlc_s_report():
    line = ("Progress(14) at 2026-11-30 18:48:31: 1,234,567 states generated (1,380,000 s/min), "
            "322,262 distinct states found (300,000 ds/min), 107,201 states left on queue.")
    report = parse_progress(line)
    assert (report.depth, report.generated, report.distinct, report.queue) == (
        14, 1234567, 322262, 107201)
    assert parse_progress("Finished in 01min 05s at (2026-11-30 18:49:36)") is None


def test_a_derived_property_without_a_violation_is_no_better_than_its_sources():
    run = Run("r", "HWPoison", "hugetlb", 2, 2, 1, 1, 0,
              expect={k: "holds" for k in ("NoHostAccessToTdPage",)})
    result = RunResult(run)
    for key, verdict in (("NoHostAccessToTdPage", "holds"), ("NoPrivateHostMapping", "holds"),
                         ("PoisonContained", "unfinished"), ("RefcountSound", "unfinished")):
        result.verdicts[key] = PropertyVerdict(verdict)
    _derive(result)
    assert result.verdicts["ConversionNeedsNoPoisonCheck"].verdict == "unfinished"
    result.verdicts["NoHostAccessToTdPage"] = PropertyVerdict("violated", 8)
    _derive(result)
    assert result.verdicts["ConversionNeedsNoPoisonCheck"] == PropertyVerdict("violated", 8)


def test_a_run_past_its_budget_is_unfinished_not_failed(tlc_ready, tmp_path):
    matrix = tmp_path / "slow.toml"
    matrix.write_text(SLOW)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["check", "-q", "--matrix", str(matrix), "--out", str(out),
                                      "--budget", "3", "--json"])
    assert result.exit_code == 0, result.output
    (run,) = json.loads(result.stdout)["runs"]
    verdicts = {k: v["verdict"] for k, v in run["verdicts"].items()}
    # A violation TLC found before the budget stays; the rest has no verdict, never "holds".
    assert "unfinished" in verdicts.values()
    assert set(verdicts.values()) <= {"violated", "unfinished", "-", "holds"}
    assert all(verdicts[k] != "holds" for k in ("NoPrivateHostMapping", "RefcountSound"))
    assert run["mismatches"] == [] and run["queue_left"] is not None
    assert run["peak_mib"] > 10
    assert any("--budget 3s" in note for note in run["notes"])
    # The stopped process's output is kept, with TLC's banner, and says why it ends there.
    stopped = [p.read_text() for p in (out / "slow").glob("*.out")
               if "stopped by poisoncheck at --budget 3s" in p.read_text()]
    assert stopped and all("TLC2 Version 2.15" in text for text in stopped)
    table = CliRunner().invoke(cli, ["check", "-q", "--merge", "--matrix", str(matrix),
                                     "--out", str(tmp_path / "merged"),
                                     str(out / "results.json")])
    assert table.exit_code == 0, table.output
    assert "unfinished" in table.output and "stopped at --budget" in table.output
