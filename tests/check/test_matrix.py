from pathlib import Path

import pytest

from validator.check.matrix import MatrixError, check_names_known, load_matrix, select_runs
from validator.model import ALL_CHECKS, DESIGNS
from validator.model.properties import PROPERTIES

ROOT = Path(__file__).resolve().parents[2]
MATRIX = ROOT / "spec" / "matrix.toml"


def test_real_matrix_loads_and_covers_every_design_and_backing():
    runs = load_matrix(MATRIX)
    pairs = {(r.design, r.backing) for r in runs if r.kind == "design"}
    assert pairs >= {(d, b) for d in DESIGNS for b in ("buddy", "hugetlb")}
    assert {b for _, b in pairs} == {"buddy", "hugetlb", "thp"}
    # the new dimensions are findable by name (issue 12)
    names = [r.name for r in runs]
    for word in ("thp", "dissolve", "erratum", "cross-td", "entry-check", "flag-lifetime",
                 "mf-ignored", "host-write", "wbinvd-fails"):
        assert any(word in n for n in names), word
    for run in runs:
        assert ("dissolve" in run.features) == ("dissolve" in run.name), run.name
        assert ("pw_erratum" in run.features) == ("erratum" in run.name), run.name
        assert ("cross_td" in run.features) == ("cross-td" in run.name), run.name
        assert (run.backing == "thp") == ("thp" in run.name), run.name
        assert ("mf_ignored" in run.features) == ("mf-ignored" in run.name), run.name
        assert ("wbinvd_fails" in run.features) == ("wbinvd-fails" in run.name), run.name
        assert ("in_place_conversion" not in run.features) == run.name.startswith("Upstream"), \
            run.name
    for run in runs:
        assert set(run.expect) == {p.key for p in PROPERTIES}


def test_real_matrix_names_only_checks_the_spec_defines():
    # validator.model's checks are the spec's (tests/model/test_designs_match_spec.py).
    assert "gmem_get_pfn.hwpoison" in ALL_CHECKS
    runs = load_matrix(MATRIX)
    for run in runs:
        assert set(run.disabled) | set(run.added) <= ALL_CHECKS, run.name
    check_names_known(runs, MATRIX)


def test_a_check_the_spec_does_not_define_is_named(tmp_path):
    run = load_matrix(MATRIX)[0]
    wrong = type(run)(**{**run.__dict__, "disabled": ("gmem_fault.nope",)})
    with pytest.raises(MatrixError, match=r"run NoHold-buddy-nofault: unknown check\(s\) "
                                          r"gmem_fault.nope \(see spec/Poison.tla\)"):
        check_names_known([run, wrong], MATRIX)


def test_only_selects_by_glob_or_substring_and_deep_runs_need_asking():
    runs = load_matrix(MATRIX)
    assert [r.name for r in select_runs(runs, ("NoHold-buddy-nofa",))] == [
        "NoHold-buddy-nofault", "NoHold-buddy-nofault-erratum"]
    assert {r.name for r in select_runs(runs, ("NoHold-*-fail1",))} == {
        "NoHold-buddy-fail1", "NoHold-hugetlb-fail1"}
    assert not any(r.deep for r in select_runs(runs, (), deep=False))
    # an exact name is that run alone, though it is a prefix of others (issue 25)
    assert [r.name for r in select_runs(runs, ("NoHold-buddy-fail1",))] == ["NoHold-buddy-fail1"]
    with pytest.raises(MatrixError, match="--only nothing-like-this matches no run"):
        select_runs(runs, ("nothing-like-this",))


def test_some_mutant_breaks_refcount_sound():
    """Property 4 has teeth: a missed put and a double put are expected to break it."""
    breakers = {r.name for r in load_matrix(MATRIX)
                if r.kind == "mutant" and r.expect["RefcountSound"] == "violated"}
    assert {"mutant-folioref-misses-put-on-removal",
            "mutant-folioref-puts-twice-on-aug-busy"} <= breakers


def test_deep_runs_are_a_minority_and_make_check_keeps_every_design():
    runs = load_matrix(MATRIX)
    fast = [r for r in runs if not r.deep]
    # At most two fifths: the deep profile (ten runs) and the slowest of the default
    # constants, moved so that make check stays under 10 minutes on 2 cores (issue 23).
    assert 0 < len(runs) - len(fast) <= 2 * len(runs) // 5
    assert {r.design for r in fast if r.kind == "design"} == set(DESIGNS)
    for word in ("entry-check", "flag-lifetime", "mf-ignored", "host-write"):   # issue 23's points
        assert any(word in r.name for r in fast), word


def test_every_mutant_is_expected_to_break_something():
    for run in load_matrix(MATRIX):
        if run.kind == "mutant":
            assert "violated" in run.expect.values(), run.name


EXPECT = ('expect = { NoHostAccessToTdPage = "holds", NoPrivateHostMapping = "holds", '
          'PoisonContained = "holds", RefcountSound = "holds", '
          'ConversionNeedsNoPoisonCheck = "-", NoLeakWithoutFaults = "holds", '
          'ConversionCompletes = "holds", NoHostWriteToTdPage = "holds", TeardownCompletes = "holds" }')


def write(tmp_path, body):
    path = tmp_path / "m.toml"
    path.write_text(body)
    return path


def test_a_minimal_run_gets_defaults(tmp_path):
    path = write(tmp_path, f'[[run]]\nname = "a"\ndesign = "NoHold"\nbacking = "hugetlb"\n{EXPECT}\n')
    (run,) = load_matrix(path)
    assert (run.folios, run.pages_per_folio, run.remove_failures, run.liveness_folios) == (2, 2, 0, 1)  # HugeTLB: 1


@pytest.mark.parametrize("body, message", [
    ("", "no [[run]] entries"),
    ("[[run]\n", "not valid TOML"),
    ('[[run]]\nname = "a"\ndesign = "Nope"\nbacking = "buddy"\n' + EXPECT, "design 'Nope'"),
    ('[[run]]\nname = "a"\ndesign = "NoHold"\nbacking = "buddy"\npages_per_folio = 2\n' + EXPECT,
     "buddy folios have one page"),
    ('[[run]]\nname = "a"\ndesign = "NoHold"\nbacking = "buddy"\nremove_failures = 1\n' + EXPECT,
     "NoLeakWithoutFaults does not apply"),
    ('[[run]]\nname = "a"\ndesign = "NoHold"\nbacking = "buddy"\nkind = "mutant"\n' + EXPECT,
     "must disable at least one check"),
    ('[[run]]\nname = "a"\ndesign = "NoHold"\nbacking = "buddy"\nexpect = {}\n', "no verdict for"),
    ('[[run]]\nname = "a"\ndesign = "NoHold"\nbacking = "buddy"\ncolour = 1\n' + EXPECT,
     "unknown key(s) colour"),
    (f'[[run]]\nname = "a"\ndesign = "NoHold"\nbacking = "buddy"\n{EXPECT}\n'
     f'[[run]]\nname = "a"\ndesign = "NoHold"\nbacking = "buddy"\n{EXPECT}\n', "appears twice"),
    # `$` matches before a final newline: the name would break the generated .cfg
    ('[[run]]\nname = "a\\n"\ndesign = "NoHold"\nbacking = "buddy"\n' + EXPECT,
     "must be letters"),
    ('[[run]]\nname = "a"\ndesign = "NoHold"\nbacking = "buddy"\nkind = "mutant"\n'
     'disabled = ["gmem_get_pfn.hwpoison\\n"]\n' + EXPECT, "list of check names"),
])
def test_bad_matrices_name_the_problem(tmp_path, body, message):
    with pytest.raises(MatrixError, match=None) as err:
        load_matrix(write(tmp_path, body))
    assert message in str(err.value)
    assert str(tmp_path / "m.toml") in str(err.value)


def test_missing_matrix_file(tmp_path):
    with pytest.raises(MatrixError, match="no such file"):
        load_matrix(tmp_path / "absent.toml")


def test_the_deep_profile_has_every_design_on_both_backings_with_the_larger_constants():
    """Issue 15: 3 folios, 2 removal failures, 2 memory errors, another TD, HugeTLB folios
    of 4 pages; only in make check-deep."""
    deep = [r for r in load_matrix(MATRIX) if r.name.startswith("deep-")]
    assert {(r.design, r.backing) for r in deep} == {(d, b) for d in DESIGNS
                                                     for b in ("buddy", "hugetlb")}
    for run in deep:
        assert run.deep and run.kind == "design", run.name
        assert (run.folios, run.remove_failures, run.mem_errors) == (3, 2, 2), run.name
        assert "cross_td" in run.features, run.name
        assert run.pages_per_folio == (4 if run.backing == "hugetlb" else 1), run.name
