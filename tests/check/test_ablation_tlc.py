"""`poisoncheck ablate` end to end: a small real TLC ablation and the error exits."""

import json

from click.testing import CliRunner

from validator.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, ["ablate", "-q", *map(str, args)])


def test_real_ablation_of_hwpoison_host_fault_checks(tlc_ready, tmp_path):
    """HWPoison on buddy: the free path's poison check carries the load; the two
    host-fault poison checks cover each other, so only the pair breaks."""
    result = invoke("--design", "HWPoison", "--backing", "buddy", "--jobs", 2,
                    "--check", "free_pages_prepare.hwpoison", "--check", "do_fault.hwpoison",
                    "--check", "gmem_fault.hwpoison", "--out", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    cells = {c: v["HWPoison"] for c, v in data["checks"].items()}
    free = cells["free_pages_prepare.hwpoison"]
    assert free["status"] == "load-bearing"
    # A poisoned 4K page reaches the buddy allocator and is handed out again.
    assert free["diff"]["broken"]["PoisonContained"]["steps"] == 5
    trace = json.loads(open(free["diff"]["broken"]["PoisonContained"]["counterexample"]).read())
    actions = [s["action"] for s in trace["trace"]]
    assert actions[-2] == "FreeFolio" and actions[-1] in ("KvmGmemAllocFolio", "AllocatorReuse")
    assert "MemoryFailure" in actions or "TdxSeptRemoveFailed" in actions
    for check, other in (("do_fault.hwpoison", "gmem_fault.hwpoison"),
                         ("gmem_fault.hwpoison", "do_fault.hwpoison")):
        assert cells[check]["status"] == "redundant"
        assert list(cells[check]["masked_by"]) == [other]
        assert "PoisonContained" in cells[check]["masked_by"][other]["broken"]
    assert data["baselines"]["HWPoison"]["buddy-f1m1"]["NoHostAccessToTdPage"]["verdict"] == "holds"
    assert data["tlc_processes"] >= 5


def test_unknown_design_is_exit_2():
    result = invoke("--design", "Nope")
    assert result.exit_code == 2
    assert result.output.strip() == ("Error: --design Nope is not one of NoHold, FolioRef, "
                                     "HWPoison, BuggyCleanup, NoMoreSeamcalls or all")


def test_unknown_check_is_exit_2():
    result = invoke("--check", "gmem_get_pfn.nope")
    assert result.exit_code == 2
    assert "--check gmem_get_pfn.nope is not a check of" in result.output
    assert "Traceback" not in result.output


def test_missing_java_is_exit_2(tmp_path, monkeypatch):
    monkeypatch.setenv("POISONCHECK_JAVA", str(tmp_path / "no-java"))
    result = invoke("--design", "NoHold")
    assert result.exit_code == 2
    assert "Java not found" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_tla_error_is_exit_2(tlc_ready, tmp_path, spec_copy):
    module = spec_copy / "Poison.tla"
    module.write_text(module.read_text().replace("Spec == Init /\\ [][Next]_vars",
                                                 "Spec == Init /\\ [][Next]_vars /\\"))
    result = invoke("--spec-dir", spec_copy, "--matrix", spec_copy / "matrix.toml",
                    "--design", "NoHold", "--backing", "buddy", "--check", "gmem_fault.shared",
                    "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "Parsing or semantic analysis failed" in result.output
    assert "Traceback" not in result.output
