"""The two meanings of a resolved event: validator/replay/meaning.py (Python engine) and the IsX
operators of spec/PoisonTrace.tla (TLC engine).  Each is written on its own, so a verdict
that depends on what an event means is checked in both engines against the same expected
value: a wrong mapping in either one fails here.  And the checked-in trace spec runs with
plain TLC on a data module poisoncheck writes."""

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from validator.replay import meaning
from validator import model
from validator.synth import ftrace_text as render
from validator.review.corpus import verdict_text
from validator.ftrace import iter_events
from validator.replay.input import read_lines
from validator.replay.engine import Replay, replay
from validator.replay.resolved import Resolved
from validator.replay.tlc_engine import DATA_MODULE, prepare, validate_tlc
from validator.tlc.setup import TlcSetup
from validator.tlc.setup import SetupError, default_jar, find_java, verify_jar

from conftest import ROOT
from test_planner import OTHER, add, alloc, delete, free, trace

TRACES = ROOT / "traces"


@pytest.fixture(scope="module")
def tlc():
    """Java and the jar, else the test is skipped (plain TLC runs need nothing else)."""
    try:
        return find_java(), verify_jar(default_jar())
    except SetupError as err:
        pytest.skip(f"TLC is not set up: {err}")


def rendered(design, backing, actions, pages=1):
    cfg = model.Config(design, backing, folios=1, pages_per_folio=pages,
                       max_remove_failures=1, max_mem_errors=2)
    return render.render(cfg, render.steps_from_actions(cfg, actions))


def with_ret(text: str, probe: str, ret: int, nth: int = -1) -> str:
    """The trace with the ret= of the probe's nth line replaced."""
    lines = text.splitlines()
    at = [i for i, line in enumerate(lines) if f" {probe}: " in line][nth]
    lines[at] = re.sub(r"ret=-?\w+", f"ret={ret}", lines[at])
    return "\n".join(lines) + "\n"


REMOVAL = (TRACES / "removal-fails-then-reused.trace").read_text()
BUSY = rendered("FolioRef", "buddy", [("KvmGmemAllocFolio", 0), ("TdxAugBusy", 0),
                                      ("KvmTdpMapPrivate", 0)])
CONVERT = rendered("NoHold", "buddy", [
    ("KvmGmemAllocFolio", 0), ("VmmConvertRequest", 0, "shared"), ("KvmGmemConvertShared",),
    ("VmmConvertRequest", 0, "private"), ("KvmGmemConvertPrivate",)])
SHARED_POISON = (TRACES / "memory-error-on-shared-page.trace").read_text()
HWPOISON_4K = (TRACES / "hwpoison-removal-fails-4k.trace").read_text()
# A memory error on the tail page of a whole HugeTLB folio, reported twice: PG_hwpoison
# sits on the head only, so "already poisoned" must be read from the page's own poison.
TAIL_ERROR = rendered("NoHold", "hugetlb", [("KvmGmemAllocFolio", 0), ("MemoryFailure", 1)],
                      pages=2)
TAIL_ERROR += [line for line in TAIL_ERROR.splitlines() if "memory_failure" in line][-1] + "\n"
MUTANT = ("tdx_aug_busy.no_second_unpin",)


def probe_line(text: str, probe: str, nth: int = 0) -> str:
    """The nth line of the probe in a rendered trace, with its newline."""
    return [line for line in text.splitlines() if f" {probe}: " in line][nth] + "\n"


RELEASED = rendered("NoHold", "buddy", [("KvmGmemAllocFolio", 0), ("TdxReleaseHkid",)])
RELEASED_TWICE = RELEASED + probe_line(RELEASED, "hkid_release")
MEMORY_ERROR = rendered("NoHold", "buddy", [("KvmGmemAllocFolio", 0), ("MemoryFailure", 0)])
FREED = rendered("NoHold", "buddy", [("KvmGmemAllocFolio", 0), ("KvmGmemPunchHole", 0),
                                     ("FreeFolio", 0)])
TO_THE_POOL = rendered("HWPoison", "hugetlb", [("KvmGmemAllocFolio", 0), ("KvmGmemPunchHole", 0),
                                               ("FreeFolio", 0)], pages=2)
# HWPoison on HugeTLB: a failed removal poisons the folio, guest_memfd's free leaks it.
LEAKED = rendered("HWPoison", "hugetlb", [
    ("KvmGmemAllocFolio", 0), ("KvmTdpMapPrivate", 0), ("TdxSeptRemoveFailed", 0),
    ("KvmGmemPunchHole", 0), ("FreeFolio", 0)], pages=2)

# (name, trace, design, disabled, expected verdict): each verdict hangs on one meaning.
CASES = [
    # tdx_remove: ret != 0 is the failed removal (KVM_BUG_ON), the page stays the TD's
    ("remove failed", REMOVAL, "NoHold", (), "violation:NoHostAccessToTdPage@23"),
    ("remove ok", with_ret(REMOVAL, "tdx_remove", 0), "NoHold", (), "accepted"),
    # tdx_aug: -16 is FolioRef's busy AUG (the double put breaks RefcountSound there),
    # another error is not modelled, 0 maps the page (so the second AUG cannot)
    ("aug busy", BUSY, "FolioRef", MUTANT, "violation:RefcountSound@17"),
    ("aug busy, no mutant", BUSY, "FolioRef", (), "accepted"),
    # only FolioRef takes a reference on AUG: elsewhere a busy AUG changes nothing
    ("aug busy, another design", BUSY, "NoHold", (), "accepted"),
    ("aug other error", with_ret(BUSY, "tdx_aug", -5, 0), "FolioRef", MUTANT, "accepted"),
    ("aug ok twice", with_ret(BUSY, "tdx_aug", 0, 0), "FolioRef", MUTANT, "violation:step@20"),
    # gmem_convert: -EAGAIN is the refcount check's refusal, which nothing here explains;
    # another error changes nothing
    ("convert done", CONVERT, "NoHold", (), "accepted"),
    ("convert refused", with_ret(CONVERT, "gmem_convert", -11), "NoHold", (),
     "violation:step@16"),
    ("convert failed", with_ret(CONVERT, "gmem_convert", -5), "NoHold", (), "accepted"),
    # gmem_host_fault: refused (nothing changes) or mapped (HWPoison refuses a poisoned page)
    ("host fault refused", SHARED_POISON, "HWPoison", (), "accepted"),
    ("host fault mapped", SHARED_POISON.replace("ret=-133", "ret=0"), "HWPoison", (),
     "violation:step@19"),
    ("repeated memory error on a tail page", TAIL_ERROR, "NoHold", (), "accepted"),
    # set_hwpoison is HWPoison's hook: in another design it is a step no behaviour takes
    ("set_hwpoison, its design", HWPOISON_4K, "HWPoison", (), "accepted"),
    ("set_hwpoison, another design", HWPOISON_4K, "NoHold", (), "violation:step@19"),
    # the allocation claim and the free's strictness (planner flags, meaning in each engine)
    ("claim lapses", trace(alloc(0x9), add(0x9, 0), delete(0x9, 0), free(0x9),
                           (OTHER, alloc(0x9)), (OTHER, alloc(0x9))), "HWPoison", (),
     "violation:step@9"),
    ("claim confirmed", trace(alloc(0x9), add(0x9, 0), delete(0x9, 0), free(0x9), alloc(0x9),
                              add(0x9, 3)), "HWPoison", (), "accepted"),
    ("freed while cached", trace(alloc(0x9), add(0x9, 0), free(0x9), delete(0x9, 0)),
     "NoHold", (), "violation:step@6"),
    # hkid_release is tdh_mng_key_freeid()'s return: nonzero is "HKID %d is leaked" (the TD
    # pages are never reclaimed, kernel-facts 2.3).  Poison has no leaked-HKID state, so the
    # failure is no step: the VM is not destroyed and a release that succeeds later is the
    # VM's first.  A release that succeeds destroys the VM; a second one is no step.
    ("HKID release failed, then done", with_ret(RELEASED_TWICE, "hkid_release", -5, 0),
     "NoHold", (), "accepted"),
    ("HKID released twice", RELEASED_TWICE, "NoHold", (), "violation:step@16"),
    # gmem_error_folio is guest_memfd's .error_remove_folio, which memory_failure() reaches
    # through the folio's mapping (truncate_error_folio(), kernel-facts 1.5, 3.1): only for
    # a folio in guest_memfd's page cache.  Freed to the buddy allocator, it has none.
    ("error_folio, folio in the page cache", MEMORY_ERROR, "NoHold", (), "accepted"),
    ("error_folio, folio freed", FREED + probe_line(MEMORY_ERROR, "gmem_error_folio"),
     "NoHold", (), "violation:step@18"),
    # gmem_free fires as the folio leaves the page cache, with guest_memfd's last reference
    # (the step that frees it to the pool); free_huge_folio() is the same free seen from
    # mm (__folio_put()), so hugetlb_free finds the folio already in the pool.  A folio
    # HWPoison's free leaked never reaches free_huge_folio() (kernel-facts 6, "HugeTLB
    # free -> guest_memfd must leak"): a hugetlb_free of it is no step.
    ("hugetlb_free, folio already in the pool", TO_THE_POOL, "HWPoison", (), "accepted"),
    ("hugetlb_free, folio leaked", LEAKED + probe_line(TO_THE_POOL, "hugetlb_free"),
     "HWPoison", (), "violation:step@23"),
]


def test_each_meaning_gives_the_expected_verdict_in_both_engines(tlc, tmp_path):
    java, jar = tlc
    setup = TlcSetup(java, jar, ROOT / "spec", tmp_path, 300)

    def both(case):
        name, text, design, disabled, _ = case
        python = verdict_text(replay(iter_events(read_lines(text.splitlines())), design,
                                     disabled=disabled))
        work = tmp_path / re.sub(r"\W", "_", name)
        by_tlc = verdict_text(validate_tlc(iter_events(read_lines(text.splitlines())), design,
                                           setup, work, disabled=disabled))
        return python, by_tlc

    with ThreadPoolExecutor(max_workers=2) as pool:
        got = dict(zip([c[0] for c in CASES], pool.map(both, CASES)))
    expected = {name: (want, want) for name, _, _, _, want in CASES}
    assert got == expected


def test_the_python_meaning_of_return_values():
    aug = lambda ret: meaning.steps(Resolved("aug", 0, page=0, ret=ret))  # noqa: E731
    assert aug(0) == [(("map", 0), 0)]
    assert aug(-16) == [(("aug_busy", 0), 0)]
    assert aug(-5) == [(("stay",), 0)]
    assert meaning.steps(Resolved("remove", 0, page=0, ret=-5)) == [(("remove_failed", 0), 0)]
    assert meaning.steps(Resolved("hkid_release", ret=-5)) == [(("stay",), None)]
    # a lapsed claim is checked before the event's own step
    assert meaning.steps(Resolved("page_free", 1, cached=True, lapsed=True)) == [
        (("claim_lapsed", 1), 1), (("free_observed", 1), 1)]
    assert meaning.steps(Resolved("page_free", 1, cached=True, after_gmem_free=True)) == [
        (("page_free", 1), 1)]


def test_the_planner_resolves_to_named_events_with_the_bookkeepings_flags():
    engine = Replay("NoHold", judge=False)
    text = trace(alloc(0x9), add(0x9, 0), delete(0x9, 0), free(0x9), (OTHER, alloc(0x9)),
                 (OTHER, free(0x8, order=3)))
    for event in iter_events(read_lines(text.splitlines())):
        engine.feed(event)
    got = [(r.kind, r.folio, r.exact, r.cached, r.lapsed) for r, *_ in engine.steps]
    assert got == [("cache_add", 0, False, False, False), ("cache_delete", 0, False, False, False),
                   ("page_free", 0, True, True, False), ("page_alloc", 0, True, False, False),
                   # the order-3 block covers the folio but is not it; the claim lapses
                   ("page_free", 0, False, True, True)]
    assert all(type(r) is Resolved for r, *_ in engine.steps)


def _plain_tlc(java: str, jar: Path, work: Path) -> str:
    """TLC as a reviewer runs it by hand (README), in the folder poisoncheck prepared."""
    done = subprocess.run([java, "-cp", str(jar), "tlc2.TLC", "-deadlock", "-config",
                           "PoisonTrace.cfg", "PoisonTrace.tla"], cwd=work,
                          capture_output=True, text=True, timeout=300)
    return done.stdout + done.stderr


@pytest.mark.parametrize("name, design, verdict", [
    ("lifecycle-buddy.trace", "NoHold", "accepted"),
    ("removal-fails-then-reused.trace", "NoHold", "TraceNoHostAccess"),
    ("hwpoison-removal-fails-4k.trace", "NoHold", "stuck"),
])
def test_the_checked_in_trace_spec_runs_with_plain_tlc(tlc, tmp_path, name, design, verdict):
    java, jar = tlc
    engine = Replay(design, judge=False)
    for event in iter_events(read_lines((TRACES / name).read_text().splitlines())):
        engine.feed(event)
    work = tmp_path / "work"
    prepare(work, ROOT / "spec", engine)
    data = (work / f"{DATA_MODULE}.tla").read_text()
    assert "TraceEvents ==" in data and "qemu" not in data
    out = _plain_tlc(java, jar, work)
    events = len(engine.steps)
    assert f'<<"poisoncheck-events", {events}>>' in out, out[-2000:]
    reached = max(int(n) for n in re.findall(r'"poisoncheck-reached", (\d+)>>', out))
    if verdict == "accepted":
        assert reached == events + 1 and "No error has been found" in out, out[-2000:]
    elif verdict == "stuck":        # no behaviour takes some event: the cursor stops short
        assert reached <= events and "No error has been found" in out, out[-2000:]
    else:
        assert f"Invariant {verdict} is violated" in out, out[-2000:]


def test_a_page_event_after_an_unconfirmed_own_allocation_is_marked_lapsed():
    """An allocation of exactly a tracked folio, then an event on one of its pages with no
    page-cache add between: the page event carries the lapsed claim (Planner.resolve)."""
    lines = MEMORY_ERROR.splitlines(keepends=True)
    claim = (OTHER.format(us=17) + "mm_page_alloc: page=0000000000100000 pfn=0x100000 order=0 "
             "migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_ZERO\n")
    text = "".join(line for line in lines if "gmem_error_folio" not in line)
    text = text.replace("   kworker/u17:1-212", claim + "   kworker/u17:1-212", 1)
    engine = Replay("NoHold", judge=False)
    for event in iter_events(read_lines(text.splitlines())):
        engine.feed(event)
    got = [(r.kind, r.exact, r.lapsed) for r, *_ in engine.steps]
    # (the first allocation comes before the folio is known: not guest_memfd's yet)
    assert got == [("alloc", False, False), ("page_alloc", True, False),
                   ("memory_failure", False, True)]


def test_a_return_value_beyond_32_bits_on_a_page_event_is_some_other_error():
    """The planner's inline small_ret(): a ret TLC cannot hold is RET_OTHER, on the page
    events' fast path as on every other."""
    from validator.replay.resolved import RET_OTHER
    engine = Replay("NoHold", judge=False)
    text = with_ret(REMOVAL, "tdx_remove", 1 << 40)
    for event in iter_events(read_lines(text.splitlines())):
        engine.feed(event)
    (removal,) = [r for r, *_ in engine.steps if r.kind == "remove"]
    assert removal.ret == RET_OTHER
