"""The Python replay engine on behaviours of the spec rendered as ftrace text."""

import os
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from validator import model
from validator.synth import ftrace_text as render
from validator.cli import cli
from validator.ftrace import iter_events
from validator.replay.input import read_lines
from validator.replay.engine import replay


def text_of(design, backing, actions, pages=1, folios=1, **budgets):
    cfg = model.Config(design, backing, folios=folios, pages_per_folio=pages,
                       max_remove_failures=budgets.get("fails", 1),
                       max_mem_errors=budgets.get("errors", 1),
                       disabled=frozenset(budgets.get("disabled", ())))
    return render.render(cfg, render.steps_from_actions(cfg, actions))


def judge(text, design, **kw):
    return replay(iter_events(read_lines(text.splitlines())), design, **kw)


LIFECYCLE = [("KvmGmemAllocFolio", 0), ("KvmTdpMapPrivate", 0),
             ("VmmConvertRequest", 0, "shared"), ("TdxSeptRemoveOk", 0),
             ("KvmGmemConvertShared",), ("KvmGmemHostFault", 0), ("HostUnmap", 0),
             ("VmmConvertRequest", 0, "private"), ("KvmGmemConvertPrivate",),
             ("KvmTdpMapPrivate", 0), ("TdxReleaseHkid",), ("TdxSeptRemoveOk", 0),
             ("KvmGmemEvictInode", 0), ("FreeFolio", 0)]
FAIL_FREE_REUSE = [("KvmGmemAllocFolio", 0), ("KvmTdpMapPrivate", 0),
                   ("TdxSeptRemoveFailed", 0), ("KvmGmemPunchHole", 0), ("FreeFolio", 0),
                   ("AllocatorReuse", 0)]


@pytest.mark.parametrize("design", model.DESIGNS)
@pytest.mark.parametrize("backing, pages", [("buddy", 1), ("hugetlb", 2)])
def test_a_vm_life_cycle_is_accepted_by_every_design(design, backing, pages):
    verdict = judge(text_of("NoHold", backing, LIFECYCLE, pages=pages), design)
    assert verdict.verdict == "accepted", verdict.to_json()
    assert verdict.events >= 12


def test_nohold_window_conforms_but_is_unsafe():
    text = text_of("NoHold", "buddy", FAIL_FREE_REUSE)
    verdict = judge(text, "NoHold")
    assert (verdict.verdict, verdict.kind, verdict.property) == (
        "violation", "property", "NoHostAccessToTdPage")
    lines = text.splitlines()
    assert "mm_page_alloc" in lines[verdict.line - 1] and "stress-ng" in lines[verdict.line - 1]
    assert verdict.accepted_prefix < verdict.line


def test_the_same_trace_under_hwpoison_is_a_step_violation_when_poison_is_missing():
    # HWPoison would have poisoned the page: the buddy free path keeps it out,
    # and a later guest_memfd allocation of that pfn cannot happen.
    actions = FAIL_FREE_REUSE[:-1] + [("KvmGmemAllocFolio", 0)]
    verdict = judge(text_of("NoHold", "buddy", actions), "HWPoison")
    # The page allocator cannot hand out the leaked page in the first place.
    assert (verdict.verdict, verdict.kind, verdict.protocol_event) == (
        "violation", "step", "page_alloc")
    assert any("it is leaked" in g for g in verdict.guards), verdict.guards


def test_a_poisoned_hugetlb_folio_freed_to_the_pool_breaks_hwpoison():
    actions = [("KvmGmemAllocFolio", 0), ("KvmTdpMapPrivate", 0), ("TdxSeptRemoveFailed", 0),
               ("KvmGmemPunchHole", 0), ("FreeFolio", 0)]
    text = text_of("NoHold", "hugetlb", actions, pages=2)
    assert "hugetlb_free" in text
    verdict = judge(text, "HWPoison")
    assert (verdict.verdict, verdict.kind, verdict.protocol_event) == (
        "violation", "step", "hugetlb_free")
    assert any("goes back to the pool" in g for g in verdict.guards), verdict.guards
    assert judge(text, "NoHold").verdict == "accepted"


def test_set_hwpoison_is_a_step_only_hwpoison_takes():
    text = text_of("HWPoison", "buddy", FAIL_FREE_REUSE[:3])
    assert "set_hwpoison" in text
    assert judge(text, "HWPoison").verdict == "accepted"
    verdict = judge(text, "NoHold")
    assert verdict.kind == "step" and verdict.protocol_event == "set_hwpoison"


def test_folioref_conversion_after_a_failure_is_refused():
    # FolioRef keeps its reference on the failed page; the trace shows the
    # conversion to shared succeeding, which FolioRef's refcount check forbids.
    actions = [("KvmGmemAllocFolio", 0), ("KvmTdpMapPrivate", 0),
               ("VmmConvertRequest", 0, "shared"), ("TdxSeptRemoveFailed", 0),
               ("KvmGmemConvertShared",), ("KvmGmemHostFault", 0)]
    text = text_of("NoHold", "buddy", actions)
    folioref = judge(text, "FolioRef")
    assert (folioref.kind, folioref.protocol_event) == ("step", "convert")
    assert any("convert_shared.safe_refcount" in g for g in folioref.guards)
    nohold = judge(text, "NoHold")
    assert (nohold.kind, nohold.property) == ("property", "NoHostAccessToTdPage")


def test_lost_events_make_the_verdict_inconclusive_not_a_violation():
    text = text_of("NoHold", "buddy", FAIL_FREE_REUSE)
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if "gmem_punch_hole" in line)
    lines.insert(at, "CPU:1 [LOST 42 EVENTS]")
    verdict = judge("\n".join(lines) + "\n", "NoHold")
    assert verdict.verdict == "inconclusive"
    assert any("lost" in n for n in verdict.notes)


def test_events_of_foreign_pfns_are_skipped_and_counted():
    text = text_of("NoHold", "buddy", LIFECYCLE)
    noise = ("       stress-ng-5001    [000] .....   200.000001: mm_page_alloc: "
             "page=000000004d2a1c5e pfn=0x2345 order=0 migratetype=1 gfp_flags=GFP_KERNEL\n")
    verdict = judge(text + noise, "NoHold")
    assert verdict.verdict == "accepted"
    assert any("has not allocated" in n for n in verdict.notes)


def invoke(*args):
    return CliRunner().invoke(cli, ["validate", *map(str, args)])


def test_cli_exit_codes_and_json(tmp_path):
    good = tmp_path / "good.trace"
    good.write_text(text_of("NoHold", "buddy", LIFECYCLE))
    bad = tmp_path / "bad.trace"
    bad.write_text(text_of("NoHold", "buddy", FAIL_FREE_REUSE))
    assert invoke(good, "-d", "HWPoison").exit_code == 0
    result = invoke(bad, "-d", "NoHold")
    assert result.exit_code == 1
    assert "violation (property NoHostAccessToTdPage) at line" in result.output
    result = invoke(bad, "--design", "all", "--json")
    import json
    rows = json.loads(result.output)
    assert {r["design"] for r in rows} == set(model.DESIGNS)
    assert {"verdict", "kind", "property", "design", "line", "event", "reason",
            "accepted_prefix"} <= set(rows[0])
    lost = tmp_path / "lost.trace"
    lost.write_text(good.read_text().replace("hkid_release", "hkid_release", 1)
                    + "CPU:0 [LOST 3 EVENTS]\n")
    assert invoke(lost, "-d", "NoHold").exit_code == 3


def test_cli_input_errors_are_exit_2(tmp_path):
    html = tmp_path / "page.html"
    html.write_text("<html><body>not a trace</body></html>\n")
    for args in ([tmp_path / "absent.trace"], [html], [html, "--disable", "no.such"]):
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output


def test_coverage_names_actions_taken_and_checks_that_refused(tmp_path):
    from validator.synth.scenarios import LIFECYCLE as PINNED_LIFECYCLE   # one -EAGAIN on a pin
    text = text_of("NoHold", "buddy", PINNED_LIFECYCLE, folios=2)
    assert judge(text, "NoHold").coverage is None
    cov = replay(iter_events(read_lines(text.splitlines())), "NoHold", coverage=True).coverage
    assert {"KvmTdpMapPrivate", "KvmGmemConvertPrivate", "FreeFolio", "HostGup"} <= set(
        cov["actions"])
    assert "TdxSeptRemoveFailed" in cov["actions_never"]
    assert cov["checks_refused"] == ["convert.safe_refcount"]
    assert "do_fault.hwpoison" in cov["checks_never"]
    path = tmp_path / "t.trace"
    path.write_text(text)
    output = CliRunner().invoke(cli, ["validate", str(path), "--coverage"]).output
    assert "checks that refused a step: convert.safe_refcount" in output


def test_trace_text_cannot_drive_the_terminal(tmp_path):
    """A task name with an OSC sequence (retitles a terminal) is shown escaped, in the
    verdict's event line and in a one-line error naming the file."""
    text = text_of("NoHold", "buddy", FAIL_FREE_REUSE).replace(
        "stress-ng-5001", "\x1b]0;owned\x07-5001")
    bad = tmp_path / "bad\x1b[2J.trace"
    bad.write_text(text)
    result = invoke(bad, "-d", "NoHold")
    assert result.exit_code == 1
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\\x1b]0;owned\\x07" in result.output
    missing = invoke(tmp_path / "gone\x1b[2J.trace")
    assert missing.exit_code == 2
    assert "\x1b" not in missing.output and "\\x1b[2J" in missing.output


def test_names_pipes_and_folders_are_input_errors_or_read(tmp_path):
    """A name too long for the file system is a one-line error (was an OSError
    traceback); a pipe is read like a file (was "no such file"); a folder is refused."""
    result = invoke(tmp_path / ("a" * 300 + ".trace"))
    assert result.exit_code == 2 and "File name too long" in result.output
    assert "Traceback" not in result.output
    assert invoke(tmp_path).exit_code == 2
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    text = text_of("NoHold", "buddy", FAIL_FREE_REUSE)
    writer = threading.Thread(target=lambda: fifo.write_text(text))
    writer.start()
    result = invoke(fifo, "-d", "NoHold")
    writer.join()
    assert result.exit_code == 1, result.output
    assert "violation (property NoHostAccessToTdPage)" in result.output


LIFECYCLE_TEXT = Path(__file__).resolve().parents[2] / "traces" / "lifecycle-buddy.trace"


@pytest.mark.parametrize("old, new, says", [
    ("order=0", "order=x", "order='x' is not a number"),
    ("order=0", "order=-1", "order=-1 is not a number"),
    ("order=0", "order=0x40", "order 64 is not an order"),
    ("order=0", "order=20", "order 20 is not an order"),          # was 1.4 GB of memory
    ("index=0x0 pfn", "index=x pfn", "index='x' is not a number"),
    ("pfn=0x100000 order", "pfn=0x1" + "0" * 20 + " order", "pfn=1208925819614629174706176"),
])
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_malformed_field_is_one_line_naming_the_line(tmp_path, old, new, says, jobs):
    text = LIFECYCLE_TEXT.read_text()
    at = text.index("gmem_alloc:")
    line = text[:at].count("\n") + 1
    bad = tmp_path / "bad.trace"
    bad.write_text(text[:at] + text[at:].replace(old, new, 1))
    result = invoke(bad, "--jobs", jobs)
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert f"{bad}: line {line}: " in result.output and says in result.output


DOUBLE_PUT = [("KvmGmemAllocFolio", 0), ("KvmTdpMapPrivate", 0), ("TdxAugBusy", 1),
              ("TdxSeptRemoveFailed", 0), ("KvmGmemPunchHole", 0), ("FreeFolio", 0),
              ("AllocatorReuse", 0)]


def test_aug_busy_is_replayed_and_a_double_put_is_caught():
    """tdx_aug ret=-16 (TDX_OPERAND_BUSY) is FolioRef's TdxAugBusy: with the mutant that
    puts twice the count goes wrong at that line; as designed the folio is held."""
    mutant = frozenset({"tdx_aug_busy.no_second_unpin"})
    text = text_of("FolioRef", "hugetlb", DOUBLE_PUT, pages=2, disabled=mutant)
    assert "ret=-16" in text
    busy_line = next(i for i, line in enumerate(text.splitlines(), 1) if "ret=-16" in line)
    verdict = judge(text, "FolioRef", disabled=mutant)
    assert (verdict.verdict, verdict.property, verdict.line) == (
        "violation", "RefcountSound", busy_line)
    designed = judge(text, "FolioRef")
    assert designed.verdict == "violation" and designed.kind == "step"   # the free never comes
    assert judge(text, "NoHold").verdict == "violation"     # the reuse while the S-EPT maps


def test_the_replay_takes_the_runs_features():
    """With the erratum a page whose removal failed is never reset, and a buggy shutdown
    hands every TD's pages back un-reset even with the flag set first."""
    steps = [("KvmGmemAllocFolio", 0), ("KvmTdpMapPrivate", 0), ("TdxSeptRemoveFailed", 0)]
    text = text_of("NoMoreSeamcalls", "buddy", steps)
    first = frozenset({"tdx_buggy_shutdown.flag_first"})
    assert judge(text, "NoMoreSeamcalls", added=first).verdict == "accepted"
    erratum = model.DEFAULT_FEATURES | {"pw_erratum"}
    verdict = judge(text, "NoMoreSeamcalls", added=first, features=erratum)
    assert (verdict.verdict, verdict.property) == ("violation", "NoHostAccessToTdPage")


def test_validate_feature_option_judges_an_erratum_platform(tmp_path):
    steps = [("KvmGmemAllocFolio", 0), ("KvmTdpMapPrivate", 0), ("TdxSeptRemoveFailed", 0)]
    trace = tmp_path / "shutdown.trace"
    trace.write_text(text_of("NoMoreSeamcalls", "buddy", steps))
    first = ("-d", "NoMoreSeamcalls", "--add", "tdx_buggy_shutdown.flag_first")
    assert invoke(trace, *first).exit_code == 0
    result = invoke(trace, *first, "--feature", "pw_erratum")
    assert result.exit_code == 1 and "NoHostAccessToTdPage" in result.output
    assert invoke(trace, "--feature", "no_such").exit_code == 2


def test_a_trace_read_without_the_tracepoint_formats_is_refused_not_judged():
    """The generic reader names no tracepoint's system; the replay would skip mm_page_alloc
    and mm_page_free (a reuse of the page) and still accept.  It refuses instead."""
    from validator import ftrace
    from validator.replay.engine import replay
    from validator.replay.vocabulary import UntypedEvent
    path = Path(__file__).resolve().parents[2] / "traces" / "lifecycle-buddy.trace"
    typed = replay(list(iter_events(read_lines(path.read_text().splitlines()))), "NoHold")
    assert typed.verdict == "accepted" and typed.events == 28
    with pytest.raises(UntypedEvent, match="line 13: mm_page_alloc was read without"):
        replay(list(iter_events(ftrace.read_lines(path.read_text().splitlines()))), "NoHold")
