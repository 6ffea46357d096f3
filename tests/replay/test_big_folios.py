"""Folios bigger than big_folios.EXACT_PAGES (a 1G HugeTLB page) are replayed on runs of pages
the trace cannot tell apart (big_folios.SlotPlan): memory and time follow the trace, not the
folio's order (issue 13, item 2), and the verdicts are those of the page-by-page replay."""

import re

import pytest

from validator import model
from validator.replay import big_folios, folio_table
from validator.ftrace import iter_events
from validator.replay.input import read_file, read_lines
from validator.replay.big_folios import NeedsSurvey
from validator.replay.engine import Replay, replay, survey_slots

from conftest import ROOT

HUGETLB_TRACES = ["lifecycle-hugetlb.trace", "poisoned-hugetlb-folio-freed.trace",
                  "hwpoison-lost-at-merge.trace"]
BASE = 0x100000
TAIL = 700          # page 1 of the order-1 traces becomes page 700 of an order-10 folio


def widen(text: str, order: int, full_range: bool) -> str:
    """An order-1 HugeTLB trace as the same story on a folio of 2^order pages: its second
    page becomes page TAIL; a conversion of both pages covers the whole folio (or, without
    full_range, the tail page alone)."""
    pages = 1 << order

    def page(n: int) -> int:
        return TAIL if n == 1 else n

    def number(m) -> str:
        key, sep, value = m.group(1), m.group(2), int(m.group(3), 16)
        if key == "pfn":
            return f"{key}{sep}{BASE + page(value - BASE):#x}"
        return f"{key}{sep}{page(value):#x}"

    text = re.sub(r"\b(pfn|index|gfn)([= ])(0x[0-9a-f]+)", number, text)
    text = text.replace("start=0x0 end=0x2", f"start=0x0 end={pages if full_range else 1:#x}")
    text = text.replace("start=0x1 end=0x2", f"start={TAIL:#x} end={TAIL + 1:#x}")
    return text.replace("order=1", f"order={order}")


def events_of(text: str) -> list:
    return list(iter_events(read_lines(text.split("\n"), require_ftrace=False)))


def outcome(v) -> tuple:
    return (v.verdict, v.kind, v.property, v.line, v.events, v.folio_events)


@pytest.mark.parametrize("name", HUGETLB_TRACES)
@pytest.mark.parametrize("full_range", [True, False])
def test_runs_give_the_page_by_page_verdicts(name, full_range, monkeypatch):
    text = widen((ROOT / "traces" / name).read_text(), 10, full_range)
    items = events_of(text)
    compact = {d: outcome(replay(items, d)) for d in model.DESIGNS}
    monkeypatch.setattr(folio_table, "EXACT_PAGES", 4096)      # 1024 pages, one by one
    exact = {d: outcome(replay(items, d)) for d in model.DESIGNS}
    assert compact == exact
    # and the story on 1024 pages ends as it does on 2 (the traces' own verdicts)
    original = events_of((ROOT / "traces" / name).read_text())
    assert {d: v[:4] for d, v in compact.items()} == {
        d: outcome(replay(original, d))[:4] for d in model.DESIGNS}


def test_model_pages_follow_the_trace_not_the_order():
    """An order-18 folio and a conversion of every index there is: four model pages (the
    head, page 1, page TAIL, the rest), and the verdict of the same story on 2 pages."""
    convert_all = (" qemu-system-x86-4130    [002] .....   100.000200: gmem_convert: "
                   "(kvm_gmem_ioctl+0x1c6/0x2d0 <- kvm_gmem_set_attributes) start=0x0 "
                   "end=0xffffffffffffffff to=\"shared\" ret=0\n")
    story = (ROOT / "traces" / "lifecycle-hugetlb.trace").read_text()
    items = events_of(widen(story, 18, True) + convert_all)
    engine = Replay("HWPoison")
    with pytest.raises(NeedsSurvey):        # an iterator is not read twice here
        for item in items:
            engine.feed(item)
    plan = survey_slots(items, "HWPoison")
    assert plan.pages == 4 and plan.starts == {BASE: (0, 1, TAIL, TAIL + 1)}
    big = replay(items, "HWPoison")
    small = replay(events_of(story + convert_all), "HWPoison")
    assert outcome(big) == outcome(small) and big.line == items[-1].line_no


def test_validate_surveys_a_file_of_big_folios(tmp_path):
    """validate reads such a file twice: the survey, then the replay (both engines' path)."""
    from validator.cli.validate import validate_one
    text = widen((ROOT / "traces" / "poisoned-hugetlb-folio-freed.trace").read_text(), 18, True)
    path = tmp_path / "big.trace"
    path.write_text(text)
    by_file = validate_one(str(path), "HWPoison")
    in_memory = replay(list(iter_events(read_file(path))), "HWPoison")
    assert outcome(by_file) == outcome(in_memory)


@pytest.mark.parametrize("name", ["poisoned-hugetlb-folio-freed.trace",
                                  "hwpoison-lost-at-merge.trace"])
def test_tlc_judges_a_1g_folio_as_the_python_engine_does(tlc_ready, tmp_path, name):
    """TLC gets the same runs as model pages (PagesPerFolio 4, not 262144)."""
    from validator.tlc.setup import TlcSetup
    from validator.tlc.setup import default_jar, find_java
    from validator.cli.validate import validate_one
    path = tmp_path / name
    path.write_text(widen((ROOT / "traces" / name).read_text(), 18, True))
    setup = TlcSetup(find_java(), default_jar(), ROOT / "spec", tmp_path / "out", 300)
    for design in ("HWPoison", "NoHold"):
        python = validate_one(str(path), design)
        tlc = validate_one(str(path), design, tlc=setup)
        assert outcome(python)[:4] == outcome(tlc)[:4]


def test_a_page_the_survey_did_not_see_is_a_bug_not_a_neighbour():
    """The plan comes from another pass: a page it does not know must not fold silently
    into the run beside it."""
    story = widen((ROOT / "traces" / "lifecycle-hugetlb.trace").read_text(), 18, True)
    items = events_of(story)
    plan = survey_slots(items, "HWPoison")
    blind = big_folios.SlotPlan(plan.pages, {BASE: (0, 1)})      # page TAIL never surveyed
    with pytest.raises(AssertionError, match="the survey did not see page 700"):
        replay(items, "HWPoison", slot_plan=blind)


def test_stdin_with_big_folios_is_refused_in_one_line(tmp_path):
    import subprocess
    import sys
    text = widen((ROOT / "traces" / "lifecycle-hugetlb.trace").read_text(), 18, True)
    done = subprocess.run([sys.executable, "-m", "validator", "validate", "-"], input=text,
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and "save stdin to a file" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["poisoned-hugetlb-folio-freed.trace", "lifecycle-hugetlb.trace"])
def test_a_whole_folio_event_cuts_no_run(name):
    """gmem_free and hugetlb_free are about the folio: naming it by a tail pfn cuts no run
    of its own in the survey, and the verdicts are those of the head pfn's."""
    story = widen((ROOT / "traces" / name).read_text(), 18, True)
    tail = BASE + 0x123
    moved = re.sub(r"((?:gmem_free|hugetlb_free): .* pfn=)0x100000\b", rf"\g<1>{tail:#x}", story)
    assert moved != story
    items, head_items = events_of(moved), events_of(story)
    assert survey_slots(items, "HWPoison") == survey_slots(head_items, "HWPoison")
    assert 0x123 not in survey_slots(items, "HWPoison").starts[BASE]
    assert {d: outcome(replay(items, d)) for d in model.DESIGNS} == {
        d: outcome(replay(head_items, d)) for d in model.DESIGNS}
