"""The ablation's plan, comparison, classification and text, on synthetic results (no TLC)."""

from pathlib import Path

import pytest

from validator.check import ablation
from validator.check.ablation import (DEFAULT_SETTINGS, Ablation, AblationError, AblationRun,
                                      Setting, Shape, Variant, make_run, run_ablation,
                                      select_checks, select_designs)
from validator.check.ablation_outcomes import (LOAD_BEARING, REDUNDANT, SHORTENS, Diff, classify,
                                               compare, masking, pair_candidates, role_of)
from validator.check.ablation_output import to_json, to_text
from validator.check.ablation_render import render_cell, render_table
from validator.check.claims import CLAIMS, answer
from validator.model import CHECKS, DESIGNS
from validator.model.properties import PROPERTIES
from validator.check.results import PropertyVerdict, RunResult
from validator.tlc.setup import TlcSetup

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "spec"
SHAPES = {"buddy": Shape(2, 1, 1), "hugetlb": Shape(2, 2, 1)}
BUDDY, HUGE = DEFAULT_SETTINGS


def result(design="HWPoison", setting=BUDDY, variant=None, **verdicts) -> RunResult:
    """A RunResult: every applicable property holds unless given as steps (violated) or None."""
    run = make_run(variant or Variant(design), setting, SHAPES[setting.backing], True)
    out = RunResult(run)
    for p in PROPERTIES:
        if not run.applies(p.key):
            out.verdicts[p.key] = PropertyVerdict("-")
        elif verdicts.get(p.key) is not None:
            out.verdicts[p.key] = PropertyVerdict("violated", verdicts[p.key])
        else:
            out.verdicts[p.key] = PropertyVerdict("holds")
    return out


# ---- the check sets' use ------------------------------------------------

def test_designs_and_checks_are_selected_by_name():
    assert select_designs(()) == select_designs(("all",)) == DESIGNS
    assert select_designs(("hwpoison", "NoHold")) == ("NoHold", "HWPoison")
    with pytest.raises(AblationError, match="--design Nope is not one of NoHold, FolioRef"):
        select_designs(("Nope",))
    assert select_checks((), SPEC) is None
    assert select_checks(("do_fault.hwpoison",), SPEC) == ("do_fault.hwpoison",)
    with pytest.raises(AblationError, match="--check x.y is not a check of .*Poison.tla"):
        select_checks(("do_fault.hwpoison", "x.y"), SPEC)


def test_same_path_pairs_only():
    sets = CHECKS
    quiet = [classify("HWPoison", c, "present", Diff()) for c in
             ("do_fault.hwpoison", "gmem_fault.hwpoison", "restructure.safe_refcount")]
    loud = classify("HWPoison", "gmem_fault.shared", "present",
                    compare({"b": result()}, {"b": result(NoHostAccessToTdPage=3)}))
    pairs = pair_candidates(sets, quiet + [loud])
    assert pairs == [("do_fault.hwpoison", "gmem_fault.hwpoison")]
    assert len(pair_candidates(sets, quiet + [loud], full=True)) == 3


def test_runs_without_liveness_skip_it():
    run = make_run(Variant("NoHold", disabled=("do_fault.hwpoison",)), BUDDY, SHAPES["buddy"], False)
    assert isinstance(run, AblationRun)
    assert not run.applies("ConversionCompletes") and run.applies("PoisonContained")
    assert run.name == "NoHold.buddy-f1m1.off.do_fault.hwpoison"


# ---- comparison and classification ----------------------------------------

def test_compare_finds_breaks_closes_and_step_changes():
    base = {"buddy": result(NoHostAccessToTdPage=7, ConversionCompletes=6),
            "hugetlb": result(setting=HUGE, NoHostAccessToTdPage=7)}
    var = {"buddy": result(NoHostAccessToTdPage=6, PoisonContained=5),
           "hugetlb": result(setting=HUGE, NoHostAccessToTdPage=9, PoisonContained=4)}
    diff = compare(base, var)
    assert set(diff.broken) == {"PoisonContained"}
    assert (diff.broken["PoisonContained"].steps, diff.broken["PoisonContained"].setting) == (4, "hugetlb")
    assert diff.closed == {"ConversionCompletes": ["buddy"]}
    assert diff.shorter == {"NoHostAccessToTdPage": (7, 6, "buddy")}
    assert diff.longer == {"NoHostAccessToTdPage": (7, 9, "hugetlb")}


def test_liveness_lasso_lengths_are_not_compared():
    base = {"b": result(ConversionCompletes=4)}
    diff = compare(base, {"b": result(ConversionCompletes=3)})
    assert not diff.changed and diff.still == {"ConversionCompletes": ["b"]}


def test_compare_ignores_missing_settings_errors_and_not_applicable():
    base = {"buddy": result()}
    var = result(PoisonContained=3)
    var.verdicts["NoHostAccessToTdPage"] = PropertyVerdict("error", error="boom")
    var.verdicts["ConversionCompletes"] = PropertyVerdict("-")
    base["buddy"].verdicts["PoisonContained"] = PropertyVerdict("-")
    assert not compare(base, {"buddy": var, "hugetlb": result(setting=HUGE, PoisonContained=2)}).changed


@pytest.mark.parametrize("variant, status", [
    ({"NoHostAccessToTdPage": 7, "PoisonContained": 6}, LOAD_BEARING),
    ({"NoPrivateHostMapping": 7, "NoHostAccessToTdPage": 5}, LOAD_BEARING),
    ({"NoHostAccessToTdPage": 5, "NoPrivateHostMapping": None}, SHORTENS),
    ({}, REDUNDANT),
])
def test_classify_present(variant, status):
    base = {"b": result(design="BuggyCleanup", NoHostAccessToTdPage=7)}
    diff = compare(base, {"b": result(design="BuggyCleanup", **variant)})
    if status == REDUNDANT:   # the check is what broke P1: off, it holds
        assert diff.closed == {"NoHostAccessToTdPage": ["b"]}
    assert classify("BuggyCleanup", "x.y", "present", diff).status == status


def test_masking_needs_a_new_break():
    quiet = Diff()
    p3 = compare({"b": result()}, {"b": result(PoisonContained=5)})
    singles = {"a": quiet, "b": quiet, "c": p3}
    pairs = {("a", "b"): p3, ("a", "c"): p3}
    assert masking(singles, pairs) == {"a": {"b": p3}, "b": {"a": p3}}


# ---- text ------------------------------------------------------------------

def outcome(check, role, base, var, design="HWPoison", masked=None):
    o = classify(design, check, role, None if role == "absent" else compare(base, var))
    o.masked_by = masked or {}
    return o


def test_cells():
    base = {"buddy-f1m1": result(), "hugetlb-f1m1": result(setting=HUGE, NoHostAccessToTdPage=6)}
    ok = {"buddy-f1m1": result(), "hugetlb-f1m1": result(setting=HUGE, NoHostAccessToTdPage=6)}
    lb = {"buddy-f1m1": result(PoisonContained=5, NoHostAccessToTdPage=6), "hugetlb-f1m1": ok["hugetlb-f1m1"]}
    closes = {"buddy-f1m1": result(), "hugetlb-f1m1": result(setting=HUGE)}
    breaks = {"buddy-f1m1": result(ConversionCompletes=3), "hugetlb-f1m1": ok["hugetlb-f1m1"]}
    assert render_cell(outcome("a.b", "present", base, lb)) == "load-bearing: P3 (5 steps), P1 (6)"
    assert render_cell(outcome("a.b", "present", base, ok)) == "redundant"
    masked = outcome("a.b", "present", base, ok, masked={"c.d": Diff()})
    assert render_cell(masked) == "redundant (masked by c.d)"
    assert render_cell(outcome("a.b", "absent", base, ok)) == "not present"
    assert render_cell(outcome("a.b", "proposed", base, ok)) == "adds nothing"
    assert render_cell(outcome("a.b", "proposed", base, closes)) == "closes: P1"
    assert render_cell(outcome("a.b", "proposed", base, breaks)) == "breaks: P7 (3 steps)"
    half = {"buddy-f1m1": result(), "hugetlb-f1m1": result(setting=HUGE, NoHostAccessToTdPage=6)}
    base2 = {"buddy-f1m1": result(NoHostAccessToTdPage=6), "hugetlb-f1m1": base["hugetlb-f1m1"]}
    assert render_cell(outcome("a.b", "proposed", base2, half)) == "closes: P1 on buddy-f1m1 only"


def fake_ablation(cells: dict[str, dict], base_violations=None) -> Ablation:
    """An Ablation for HWPoison with the given checks' variant results on buddy."""
    sets = CHECKS
    base = {"buddy-f1m1": result(**(base_violations or {}))}
    outcomes = {}
    for check in sets.rows():
        role = role_of(sets, "HWPoison", check)
        var = {"buddy-f1m1": result(**cells.get(check, base_violations or {}))}
        outcomes[("HWPoison", check)] = outcome(check, role, base, var)
    return Ablation(("HWPoison",), (BUDDY,), sets, outcomes, {"HWPoison": base}, [], 1.0, 1.0,
                    2, sets.rows())


def test_claims_follow_the_results():
    claim = CLAIMS[0]   # conversion needs no poison check
    assert claim.check == "convert.hwpoison"
    holds = answer(fake_ablation({}), claim)
    assert "Holds in the model" in holds and "would change no verdict" in holds
    costly = answer(fake_ablation({"convert.hwpoison": {"ConversionCompletes": 3}}), claim)
    assert "Holds in the model" in costly and "costs P7" in costly
    refuted = answer(fake_ablation({"convert.hwpoison": {}}, {"NoHostAccessToTdPage": 6}), claim)
    assert "Refuted" in refuted and "closes P1" in refuted


def test_relied_on_claims_name_the_property_or_the_masker():
    claim = CLAIMS[1]   # free_pages_prepare() checks poison
    relied = answer(fake_ablation({claim.check: {"PoisonContained": 5}}), claim)
    assert "load-bearing" in relied and "P3 PoisonContained in 5 steps" in relied
    assert "HWPoison relies on this check" in relied
    not_relied = answer(fake_ablation({}), claim)
    assert "does not rely on it" in not_relied
    a = fake_ablation({})
    a.outcomes[("HWPoison", CLAIMS[2].check)].masked_by = {
        "hugetlb_dequeue.hwpoison": compare({"b": result()}, {"b": result(PoisonContained=8)})}
    masked = answer(a, CLAIMS[2])
    assert "`hugetlb_dequeue.hwpoison` also stops" in masked and "in 8 steps" in masked


def test_table_has_a_row_per_check_and_a_column_per_design():
    table = render_table(fake_ablation({"gmem_fault.shared": {"NoPrivateHostMapping": 2}}))
    lines = table.splitlines()
    assert lines[0].split() == ["check", "HWPoison"]
    assert any(l.startswith("gmem_fault.shared") and "load-bearing: P2 (2 steps)" in l for l in lines)
    assert any(l.startswith("convert.hwpoison (proposed)") and "adds nothing" in l for l in lines)


def test_json_has_what_the_review_report_reads():
    data = to_json(fake_ablation({"gmem_fault.shared": {"NoPrivateHostMapping": 2}}))
    assert data["designs"] == ["HWPoison"]
    assert data["checks"]["gmem_fault.shared"]["HWPoison"]["cell"] == "load-bearing: P2 (2 steps)"
    assert data["checks"]["gmem_fault.shared"]["HWPoison"]["sites"] == ["KvmGmemHostFault"]
    assert [c["check"] for c in data["claims"]] == [c.check for c in CLAIMS]
    assert data["claims"][1]["answer"].startswith("In HWPoison, `free_pages_prepare.hwpoison`")


def test_text_has_the_table_the_baselines_and_every_claim(tmp_path):
    a = fake_ablation({"gmem_fault.shared": {"NoPrivateHostMapping": 2}},
                      {"NoHostAccessToTdPage": 6})
    text = to_text(a, tmp_path)
    assert text.startswith(render_table(a) + "\n\nP1 NoHostAccessToTdPage, P2 ")
    assert "settings: buddy-f1m1 (backing" in text
    assert "\nBaselines (every check on):\n  HWPoison: P1 on buddy-f1m1 (6 steps)\n" in text
    for claim in CLAIMS:
        assert f'- "{claim.quote}": {answer(a, claim)}' in text
    assert text.endswith(f"JSON and counterexamples in {tmp_path}")


# ---- orchestration, with check_runs replaced -------------------------------

def test_staging_and_pairs(monkeypatch, tmp_path):
    """Baselines everywhere; later settings only for what they can still change;
    pairs only for redundant checks on one path, and only until they break."""
    calls = []

    def fake_check_runs(runs, setup, jobs, progress):
        calls.append([r.name for r in runs])
        out = []
        for run in runs:
            bad = {}
            if "gmem_fault.shared" in run.disabled:
                bad["NoPrivateHostMapping"] = 2
            if {"do_fault.hwpoison", "gmem_fault.hwpoison"} <= set(run.disabled):
                bad["PoisonContained"] = 5
            if "convert.hwpoison" in run.added:
                bad["ConversionCompletes"] = 3
            out.append(result(run.design, Setting(run.backing, 1, 1), None, **bad))
            out[-1].run = run
        return out, []

    monkeypatch.setattr(ablation, "check_runs", fake_check_runs)
    setup = TlcSetup("java", tmp_path / "jar", SPEC, tmp_path, 10)
    checks = ("gmem_fault.shared", "do_fault.hwpoison", "gmem_fault.hwpoison", "convert.hwpoison",
              "buggy_cleanup.pins_file", "restructure.safe_refcount")
    a = run_ablation(setup, SHAPES, designs=("HWPoison",), checks=checks)
    first, huge, pairs = calls   # no HugeTLB pair: the only pair broke on buddy
    assert {"HWPoison.buddy-f1m1.base", "HWPoison.hugetlb-f1m1.base",
            "HWPoison.buddy-f1m1.off.gmem_fault.shared",
            "HWPoison.buddy-f1m1.add.convert.hwpoison"} <= set(first)
    assert not any("pins_file" in n for n in first + huge)     # HWPoison never tests pins_file
    assert sorted(huge) == ["HWPoison.hugetlb-f1m1.off.do_fault.hwpoison",
                            "HWPoison.hugetlb-f1m1.off.gmem_fault.hwpoison",
                            "HWPoison.hugetlb-f1m1.off.restructure.safe_refcount"]
    # restructure tests safe_refcount, the others hwpoison or shared: one pair only.
    assert pairs == ["HWPoison.buddy-f1m1.off.do_fault.hwpoison+gmem_fault.hwpoison"]
    assert a.outcome("HWPoison", "gmem_fault.shared").status == LOAD_BEARING
    assert list(a.outcome("HWPoison", "do_fault.hwpoison").masked_by) == ["gmem_fault.hwpoison"]
    assert a.outcome("HWPoison", "restructure.safe_refcount").masked_by == {}
    assert a.outcome("HWPoison", "buggy_cleanup.pins_file").status == "not tried"
    assert a.outcome("HWPoison", "tdx_remove_failed.hold_ref") is None   # not a selected check


def test_full_runs_everything_everywhere(monkeypatch, tmp_path):
    calls = []

    def fake_check_runs(runs, setup, jobs, progress):
        calls.append(list(runs))
        out = [result(r.design, Setting(r.backing, 1, 1), None,
                      **({"NoPrivateHostMapping": 2} if r.disabled else {})) for r in runs]
        for r, run in zip(out, runs):
            r.run = run
        return out, []

    monkeypatch.setattr(ablation, "check_runs", fake_check_runs)
    setup = TlcSetup("java", tmp_path / "jar", SPEC, tmp_path, 10)
    a = run_ablation(setup, SHAPES, designs=("NoHold",),
                     checks=("gmem_fault.shared", "buggy_cleanup.pins_file"), full=True)
    assert sorted(r.name for r in calls[1]) == ["NoHold.hugetlb-f1m1.add.buggy_cleanup.pins_file",
                                                "NoHold.hugetlb-f1m1.off.gmem_fault.shared"]
    assert all(r.applies("ConversionCompletes") for batch in calls for r in batch)
    assert a.outcome("NoHold", "buggy_cleanup.pins_file").status == "adds nothing"


def test_a_proposed_check_is_tried_where_its_condition_or_its_site_is_checked():
    sets = CHECKS
    assert role_of(sets, "NoMoreSeamcalls", "tdx_buggy_shutdown.flag_first") == "proposed"  # site
    assert role_of(sets, "NoHold", "tdx_buggy_shutdown.flag_first") == "untried"
    assert role_of(sets, "NoHold", "merge.hwpoison") == "proposed"                  # condition
    assert role_of(sets, "NoHold", "buggy_cleanup.pins_file") == "untried"
    assert role_of(sets, "NoHold", "gmem_fault.shared") == "present"
    assert role_of(sets, "NoHold", "gmem_fault.hwpoison") == "absent"


def test_the_ablation_takes_its_shapes_from_make_check_s_runs_not_the_deep_profile(tmp_path):
    """A deep run listed first must not set the folios and pages every ablation run uses."""
    expect = ('expect = { NoHostAccessToTdPage = "holds", NoPrivateHostMapping = "holds", '
              'PoisonContained = "holds", RefcountSound = "holds", '
              'ConversionNeedsNoPoisonCheck = "-", NoLeakWithoutFaults = "holds", '
              'ConversionCompletes = "holds", NoHostWriteToTdPage = "holds", TeardownCompletes = "holds" }')
    path = tmp_path / "m.toml"
    path.write_text(
        '[[run]]\nname = "deep-big"\ndesign = "NoHold"\nbacking = "hugetlb"\nfolios = 3\n'
        'pages_per_folio = 4\ndeep = true\n' + expect + "\n\n"
        '[[run]]\nname = "small"\ndesign = "NoHold"\nbacking = "hugetlb"\n' + expect + "\n")
    assert ablation.matrix_shapes(path)["hugetlb"] == ablation.Shape(2, 2, 1)


def test_every_backing_the_option_offers_gets_a_setting(monkeypatch, tmp_path):
    """`ablate --backing thp` (a documented choice) ran no setting and crashed at
    settings[0]: it gets the fault budgets of the others."""
    from click.testing import CliRunner
    from validator.cli import cli
    assert ablation.settings_for(("thp",)) == (Setting("thp", 1, 1),)
    assert ablation.settings_for(("hugetlb", "buddy", "hugetlb")) == (HUGE, BUDDY)
    assert ablation.settings_for(()) == DEFAULT_SETTINGS
    names = []

    def fake_check_runs(runs, setup, jobs, progress):
        names.extend(r.name for r in runs)
        out = []
        for run in runs:
            out.append(result(run.design, BUDDY))
            out[-1].run = run
        return out, []

    monkeypatch.setattr(ablation, "check_runs", fake_check_runs)
    got = CliRunner().invoke(cli, ["ablate", "-q", "--backing", "thp", "--design", "NoHold",
                                   "--check", "gmem_fault.shared", "--out", str(tmp_path)])
    assert got.exit_code == 0, got.output
    assert names and all(".thp-f1m1." in n for n in names), names
    with pytest.raises(AblationError, match="no setting"):
        run_ablation(TlcSetup("java", tmp_path / "jar", SPEC, tmp_path, 10), SHAPES, settings=())
