"""Every expected verdict has its reason, and the README's table and docs/verdicts.md are
what spec/matrix.toml says (python -m validator.check.verdict_table --write)."""

from pathlib import Path

import pytest

from validator.check import verdict_table
from validator.check.matrix import MatrixError, load_matrix
from validator.model.properties import NOT_APPLICABLE, PROPERTIES

ROOT = Path(__file__).resolve().parents[2]
RUNS = load_matrix(ROOT / "spec" / "matrix.toml")


def test_every_expected_verdict_has_a_reason():
    missing = [(r.name, k) for r in RUNS for k, v in r.expect.items()
               if v != NOT_APPLICABLE and not r.why[k].strip()]
    assert not missing


def test_the_readme_table_and_verdicts_doc_are_generated_from_the_matrix():
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(verdict_table.BEGIN) + len(verdict_table.BEGIN):
                   readme.index(verdict_table.END)]
    assert block.strip() == verdict_table.table(RUNS).strip(), "run verdict_table --write"
    doc = (ROOT / "docs" / "verdicts.md").read_text()
    assert doc.strip() == verdict_table.verdicts_doc(RUNS).strip(), "run verdict_table --write"


def test_a_row_holds_only_where_every_run_holds():
    row = verdict_table.row_runs(RUNS, "NoHold", "hugetlb")
    assert [r.name for r in row][:2] == ["NoHold-hugetlb-nofault", "NoHold-hugetlb-fail1"]
    key = "NoHostWriteToTdPage"
    assert verdict_table.cell(row, key) == "VIOLATED (nofault)"
    patched = [r for r in row]
    patched[0] = type(row[0])(**{**row[0].__dict__, "expect": {**row[0].expect, key: "holds"}})
    assert verdict_table.cell(patched, key).startswith("VIOLATED (fail1")


def test_an_unfinished_run_never_shows_as_holds(tmp_path):
    runs = load_matrix(_matrix(tmp_path, deep=True, verdict="not established"))
    assert verdict_table.cell(runs, "RefcountSound") == "holds at nofault; not established at fail1"


def test_not_established_needs_a_deep_run(tmp_path):
    with pytest.raises(MatrixError, match="only a deep or simulated run"):
        load_matrix(_matrix(tmp_path, deep=False, verdict="not established"))


def test_a_reason_names_a_property(tmp_path):
    path = _matrix(tmp_path, deep=False, verdict="holds", why='why = { Nonsense = "x" }\n')
    with pytest.raises(MatrixError, match="why must be a table"):
        load_matrix(path)


def _expect(verdict: str, faults: bool) -> str:
    """An expect table giving `verdict` to every property that applies to the run."""
    skip = {"ConversionNeedsNoPoisonCheck"} | ({"NoLeakWithoutFaults"} if faults else set())
    return "{ " + ", ".join(f'{p.key} = "{"-" if p.key in skip else verdict}"'
                            for p in PROPERTIES) + " }"


def _matrix(tmp_path: Path, deep: bool, verdict: str, why: str = "") -> Path:
    path = tmp_path / "m.toml"
    path.write_text(
        '[why]\n"RefcountSound.holds" = "none taken"\n'
        '[[run]]\nname = "NoHold-buddy-nofault"\ndesign = "NoHold"\nbacking = "buddy"\n'
        f'expect = {_expect("holds", faults=False)}\n'
        '[[run]]\nname = "NoHold-buddy-fail1"\ndesign = "NoHold"\nbacking = "buddy"\n'
        f'remove_failures = 1\ndeep = {str(deep).lower()}\n{why}'
        f'expect = {_expect(verdict, faults=True)}\n')
    return path


def test_not_established_matches_an_unfinished_run_and_nothing_decided(tmp_path):
    from validator.check.results import PropertyVerdict, RunResult
    (_, run) = load_matrix(_matrix(tmp_path, deep=True, verdict="not established"))
    result = RunResult(run, {k: PropertyVerdict("unfinished") for k in run.expect})
    assert result.mismatches() == []
    result.verdicts["RefcountSound"] = PropertyVerdict("holds")
    assert result.mismatches() == [
        "NoHold-buddy-fail1: RefcountSound is holds, the matrix expects not established"]


def test_a_shared_reason_names_a_property_and_a_verdict(tmp_path):
    path = _matrix(tmp_path, deep=False, verdict="holds")
    path.write_text(path.read_text().replace('"RefcountSound.holds"', '"Refcount.holds"'))
    with pytest.raises(MatrixError, match="does not end in a property and a verdict"):
        load_matrix(path)
