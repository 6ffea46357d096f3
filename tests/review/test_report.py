"""The design-review report: its content, not only its files."""


import pytest
from click.testing import CliRunner

from validator.cli import cli
from validator.review.costs import compute_cost, design_costs
from validator import model
from validator.review.diagram import folio_edges


@pytest.fixture(scope="module")
def checked(tmp_path_factory, tlc_ready):
    out = tmp_path_factory.mktemp("check")
    result = CliRunner().invoke(cli, ["check", "-q", "--out", str(out), "--only",
                                      "NoHold-buddy-fail1", "--only", "HWPoison-buddy-fail1",
                                      "--only", "mutant-guest-fault-ignores-poison"])
    assert result.exit_code == 0, result.output
    return out


def report(checked, *args):
    return CliRunner().invoke(cli, ["report", "--check-dir", str(checked), *args])


def test_text_report_fits_a_mail_and_says_what_tlc_found(checked):
    result = report(checked)
    assert result.exit_code == 0, result.output
    text = result.output
    assert all(len(line) <= 80 for line in text.splitlines()), max(text.splitlines(), key=len)
    assert text.isascii()
    row = next(line for line in text.splitlines() if line.startswith("NoHold "))
    assert row.split()[1:3] == ["VIOL", "6"]          # P1 violated in 6 steps
    hw = next(line for line in text.splitlines() if line.startswith("HWPoison "))
    assert hw.split()[1:6] == ["holds"] * 5
    # costs: computed, per design and backing
    assert "NoMoreSeamcalls  buddy      0 of 2" in text and "every other TD" in text
    assert "HWPoison         hugetlb    1 of 2" in text
    # counterexamples: step tables with kernel functions, and the kernel trace
    assert "[tdx_sept_remove_leaf_spte() fails: KVM_BUG_ON()]" in text
    assert "folioLoc[f1]: pool -> reused" in text
    assert "tdx_remove: gfn=0x0 pfn=0x100000 level=1 ret=-5" in text
    assert "mutant-guest-fault-ignores-poison: PoisonContained (mutant)" in text
    # the state machines differ where the designs differ
    assert "pool (TD-owned) -> reused (TD-owned): AllocatorReuse" in text
    # coverage of the corpus
    assert "lifecycle-buddy" in text and "checks no trace saw refuse" in text


def test_markdown_and_html_files(checked, tmp_path):
    out = tmp_path / "review"
    result = report(checked, "-o", str(out))
    assert result.exit_code == 0, result.output
    md = (out / "report.md").read_text()
    assert "| NoHold " in md and "VIOLATED (6 steps)" in md
    html = (out / "report.html").read_text()
    assert html.startswith("<!doctype html>") and "<link" not in html and "<script" not in html
    assert 'class="viol">VIOLATED (6 steps)' in html
    dot = (out / "diagrams" / "folio-NoHold.dot").read_text()
    assert '"pool (TD-owned)" -> "reused (TD-owned)"' in dot
    traces = sorted(p.name for p in (out / "counterexamples").iterdir())
    assert "NoHold-buddy-fail1--NoHostAccessToTdPage.trace" in traces


def test_missing_check_results_is_exit_2(tmp_path):
    result = CliRunner().invoke(cli, ["report", "--check-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "run `make check`" in result.output and "Traceback" not in result.output


def test_costs_are_computed():
    costs = {(c.design, c.backing): c for c in design_costs()}
    assert costs[("HWPoison", "hugetlb")].collateral_pages == 1      # rest of the folio
    assert costs[("HWPoison", "buddy")].collateral_pages == 0
    assert costs[("BuggyCleanup", "buddy")].collateral_pages == 1    # the other folio of the fd
    assert costs[("NoMoreSeamcalls", "buddy")].blast_radius == "every other TD"
    # Reuse by another TD: its AUG of the page still assigned to this TD fails and kills it.
    assert costs[("NoHold", "buddy")].blast_radius == "the TD that gets it"
    assert costs[("HWPoison", "hugetlb")].blast_radius == "the TD that gets it"
    for design in ("FolioRef", "BuggyCleanup"):
        assert not costs[(design, "buddy")].other_tds_die, design
        assert costs[(design, "hugetlb")].blast_radius == "none", design
    # Without a failure nothing is stranded, whatever the design.
    for design in model.DESIGNS:
        cost = compute_cost(model.Config(design, "hugetlb", folios=1, pages_per_folio=2))
        assert cost.leaked_pages == 0, design


def test_the_folio_state_machine_tells_designs_apart():
    nohold, hwpoison = folio_edges("NoHold"), folio_edges("HWPoison")
    assert ("pool (TD-owned)", "AllocatorReuse", "reused (TD-owned)") in nohold
    # HWPoison reaches the hazard only through the HugeTLB merge that loses a tail's
    # PG_hwpoison (the folio looks clean: "poisoned" is the page's truth, not its flag)
    hazards = {(a, b) for a, _, b in hwpoison if b.startswith("reused") and "TD-owned" in b}
    assert hazards == {("pool (TD-owned, poisoned)", "reused (TD-owned, poisoned)")}
    from validator.review import diagram
    from validator import model
    cfg = model.Config("HWPoison", "buddy", folios=1, max_remove_failures=1, max_mem_errors=1)
    _, graph = model.reachable(cfg)
    assert not any("TD-owned" in diagram.folio_label(cfg, t, 0) and t.folioLoc[0] == "reused"
                   for _, _, t in graph)


def test_an_output_folder_that_cannot_be_written_is_exit_2(checked, tmp_path):
    (tmp_path / "afile").write_text("")
    result = report(checked, "-o", str(tmp_path / "afile" / "review"))
    assert result.exit_code == 2, result.output
    assert "cannot write there" in result.output and "Traceback" not in result.output


def test_a_named_ablation_file_that_is_missing_is_exit_2(checked, tmp_path):
    result = report(checked, "--ablation", str(tmp_path / "none.json"))
    assert result.exit_code == 2 and "no such file (--ablation)" in result.output
