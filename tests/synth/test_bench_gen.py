"""The benchmark's valid trace (validator/synth/benchgen.py) and the bench's command runner.
No timing is asserted: `make bench` reports timings."""

import collections
import sys

import pytest

from validator.synth import bench_text, benchgen
from validator import model
from validator.ftrace import LineKind, iter_events, summarise
from validator.replay.input import read_file
from validator.replay.candidates import _CONTEXTS
from validator.replay.catalogue import load_catalogue
from validator.replay.engine import Replay, replay

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import bench  # noqa: E402  (make bench's script, outside the package)

CATALOGUE = load_catalogue()
KINDS = {  # what the trace must hold: every protocol event kind a 4K trace can show
    "gmem_alloc", "mm_page_alloc", "gmem_get_pfn", "tdx_aug", "tdx_remove", "vm_bugged",
    "set_hwpoison", "gmem_convert", "gmem_host_fault", "gmem_punch_hole", "gmem_error_folio",
    "memory_failure_event", "gmem_free", "mm_page_free", "hkid_release", "tdx_reclaim",
    "kvm_page_fault", "kvm_tdp_mmu_spte_changed", "kvm_vm_set_mem_attributes",
}
NOISE = {"sched_switch", "sched_waking", "irq_handler_entry", "irq_handler_exit",
         "softirq_raise", "hrtimer_expire_entry"}


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "valid.trace"
    info = benchgen.generate(path, 60_000, seed=5, design="HWPoison", failures=3, folios=300)
    return path, info


def test_the_trace_has_exactly_the_lines_asked_for_and_reads_cleanly(trace):
    path, info = trace
    summary = summarise(read_file(path))
    assert summary.lines == 60_000 == info["lines"] and summary.unparsed == 0
    names = collections.Counter(summary.by_event)
    assert KINDS <= set(names), KINDS - set(names)
    noise = sum(n for name, n in summary.by_event.items() if name in NOISE)
    assert 0.25 < noise / summary.lines < 0.4
    cpus = {e.cpu for line in read_file(path) for e in line.events}
    assert len(cpus) == 8


def test_the_trace_shows_both_conversions_refusals_and_failures(trace):
    path, _ = trace
    text = path.read_text()
    for needle in ('to="shared" ret=0', 'to="private" ret=0', 'to="private" ret=-11',
                   "gmem_get_pfn: (kvm_mmu_faultin_pfn", "ret=-133",   # a refused guest fault
                   "gmem_host_fault:", "ret=0x2",                     # SIGBUS on a private page
                   "tdx_remove: (tdx_sept_set_private_spte+0xa4/0x3c0 <- "
                   "tdx_sept_remove_leaf_spte) gfn=", "ret=-5"):
        assert needle in text, needle


def test_the_trace_is_accepted_by_its_design_and_keeps_one_product(trace):
    path, info = trace
    engine = Replay("HWPoison")
    for item in iter_events(read_file(path)):
        assert engine.feed(item)
    verdict = engine.result()
    assert verdict.verdict == "accepted", verdict.to_json()
    assert verdict.events > 20_000
    assert len(engine.folios) == info["distinct_folios"] > 300     # refills and fresh pfns
    # the factored candidates: one product, a few folio-part sets, few distinct transitions,
    # however many folios and events (what keeps the cost per event flat)
    assert len(engine.branches) == 1
    ctx = _CONTEXTS[("HWPoison", 1, frozenset(), frozenset(), model.DEFAULT_FEATURES)]
    assert len(ctx.memo) < 500 and len(ctx.sets) < 100


def test_a_design_that_forbids_the_failures_rejects_the_trace(trace):
    path, _ = trace
    verdict = replay(iter_events(read_file(path)), "NoHold")
    assert (verdict.verdict, verdict.kind, verdict.protocol_event) == ("violation", "step",
                                                                        "set_hwpoison")


def test_without_failures_nohold_accepts_and_generation_is_deterministic(tmp_path):
    a, b = tmp_path / "a.trace", tmp_path / "b.trace"
    benchgen.generate(a, 4000, seed=9, design="NoHold", failures=0)
    benchgen.generate(b, 4000, seed=9, design="NoHold", failures=0)
    assert a.read_bytes() == b.read_bytes()
    for design in ("NoHold", "HWPoison", "NoMoreSeamcalls"):
        assert replay(iter_events(read_file(a)), design).verdict == "accepted", design


@pytest.mark.parametrize("design", ["FolioRef", "NoMoreSeamcalls"])
def test_other_designs_with_failures(tmp_path, design):
    path = tmp_path / "t.trace"
    benchgen.generate(path, 6000, seed=3, design=design, failures=2)
    if design == "NoMoreSeamcalls":
        # As described, its shutdown has a window (a CPU enters another TD between its
        # WBINVD and the flag) that no probe shows: every failed removal is a violation.
        verdict = replay(iter_events(read_file(path)), design)
        assert verdict.verdict == "violation" and verdict.property == "NoHostAccessToTdPage"
        assert "tdx_remove" in verdict.event
        added = ("tdx_buggy_shutdown.flag_first",)
    else:
        added = ()
    verdict = replay(iter_events(read_file(path)), design, added)
    assert verdict.verdict == "accepted", verdict.to_json()


def test_generation_streams(tmp_path, monkeypatch):
    """Lines go to the file as they are made: the renderer never holds many."""
    held = []
    flush = bench_text.BenchRenderer.flush

    def watch(self):
        held.append(len(self.lines))
        flush(self)

    monkeypatch.setattr(bench_text.BenchRenderer, "flush", watch)
    benchgen.generate(tmp_path / "t.trace", 100_000, seed=2, folios=50)
    assert len(held) > 3 and max(held) < 25_000


def test_run_command_reports_the_peak_rss_of_its_own_child(tmp_path):
    grow = "x = bytearray(60 << 20); print(len(x))"
    big = bench.run_command([sys.executable, "-c", grow])
    small = bench.run_command([sys.executable, "-c", "print(1)"])
    assert big["code"] == 0 and big["stdout"].strip() == str(60 << 20)
    assert big["rss_mb"] > 60 > small["rss_mb"]
    piped = tmp_path / "in.txt"
    piped.write_text("a\nb\n")
    echo = bench.run_command([sys.executable, "-c", "import sys; print(sys.stdin.read())"],
                             stdin=piped)
    assert echo["stdout"].startswith("a\nb")
    assert echo["tree_rss_mb"] >= echo["rss_mb"] * 0.5 > 0


def test_the_bench_validates_the_generated_trace(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "BENCH_DIR", tmp_path)
    assert bench.main(["--lines", "3000", "--json", "--only", "baseline",
                       "--only", "poisoncheck validate -d"]) == 0
    import json
    out = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in out["results"]}
    commands = {"poisoncheck validate -d HWPoison (default: --jobs 2 on 2 cores)",
                "poisoncheck validate -d HWPoison --jobs 1",
                "poisoncheck validate -d HWPoison - (stdin)"}
    assert set(rows) == {"baseline: bare regex scan"} | commands
    for name in commands:
        # the note is the verdict, then the processes' memory when workers add to it
        assert rows[name]["note"].split(";")[0] == "accepted" and rows[name]["lines"] == 3000
        assert rows[name]["events"] > 500 and rows[name]["rss_mb"] > 0
    assert out["info"]["design"] == model.DESIGNS[2] == "HWPoison"
    # the kprobe-format trace: the baseline and validate from the file, both --jobs
    kprobe = out["other_styles"]["kprobe"]
    assert kprobe["info"]["style"] == "kprobe" and kprobe["trace"].endswith("kprobe-3000-1.txt")
    rows = {r["name"]: r for r in kprobe["results"]}
    assert set(rows) == {"baseline: bare regex scan"} | commands - {
        "poisoncheck validate -d HWPoison - (stdin)"}
    for name in set(rows) - {"baseline: bare regex scan"}:
        assert rows[name]["note"].split(";")[0] == "accepted" and rows[name]["lines"] == 3000


def test_the_bench_refuses_a_verdict_other_than_accepted(tmp_path):
    name = "poisoncheck validate -d HWPoison --jobs 1"
    accepted = bench.Result(name, 3000, 1.0, note="accepted; all processes 80 MB")
    bench.check_verdicts([accepted, bench.Result("baseline: bare regex scan", 3000, 0.1)],
                         tmp_path)
    refused = bench.Result(name, 3000, 1.0, note="violation at line 9: set_hwpoison ...")
    with pytest.raises(bench.BenchError, match="violation at line 9"):
        bench.check_verdicts([accepted, refused], tmp_path)


def test_the_trace_carries_what_a_real_capture_has_beside_the_probes(trace):
    path, _ = trace
    names = collections.Counter(summarise(read_file(path)).by_event)
    assert names["tracing_mark_write"] == 1                    # record's marker line
    assert names["mm_filemap_add_to_page_cache"] == names["gmem_alloc"] > 100
    assert 0 < names["mm_filemap_delete_from_page_cache"] <= names["gmem_alloc"]
    assert names["kvm_unmap_hva_range"] > 0
    engine = Replay("HWPoison")
    for item in iter_events(read_file(path)):
        engine.feed(item)
    # the page cache is observed: frees are judged without a hidden truncation
    assert engine.planner.gmem_dev == (0, 16) and engine.planner.cache_observed


def test_scenarios_help_writes_nothing(tmp_path):
    """`python -m validator.synth.scenarios --help` once wrote the traces into ./--help."""
    import subprocess
    done = subprocess.run([sys.executable, "-m", "validator.synth.scenarios", "--help"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and "usage:" in done.stdout
    assert list(tmp_path.iterdir()) == []


# ---- the kprobe-format trace: the same walk with record's kprobe events --------------------

@pytest.fixture(scope="module")
def kprobe_trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "kprobe.trace"
    info = benchgen.generate(path, 60_000, seed=5, design="HWPoison", failures=3, folios=300,
                             style="kprobe")
    return path, info


def test_the_kprobe_trace_is_the_same_walk_and_its_design_accepts_it(trace, kprobe_trace):
    (path, info), (kpath, kinfo) = trace, kprobe_trace
    assert {k: v for k, v in kinfo.items() if k != "style"} == \
        {k: v for k, v in info.items() if k != "style"}
    probes = {s.name for s in CATALOGUE.probes()}
    lines, klines = path.read_text().splitlines(), kpath.read_text().splitlines()
    assert len(klines) == len(lines) == 60_000
    changed = [(a, b) for a, b in zip(lines, klines) if a != b]
    # only probe lines differ, in their payload: the same walk, noise and clock
    assert changed and all(a.split(": ")[:2] == b.split(": ")[:2] for a, b in changed)
    assert {b.split(": ")[1].split()[-1] for _, b in changed} <= probes
    verdict = replay(iter_events(read_file(kpath)), "HWPoison")
    assert verdict.verdict == "accepted", verdict.to_json()
    assert verdict.events == replay(iter_events(read_file(path)), "HWPoison").events > 20_000
    nohold = replay(iter_events(read_file(kpath)), "NoHold")
    assert (nohold.verdict, nohold.protocol_event) == ("violation", "set_hwpoison")


def test_the_kprobe_trace_prints_the_catalogues_fetch_args(kprobe_trace):
    """Every probe line is a kprobe event as record sets it up: the decoder reads it as a
    probe of the catalogue's function, with the catalogue's fetch-args in their order."""
    path, _ = kprobe_trace
    specs = {s.name: s for s in CATALOGUE.probes()}
    counted = collections.Counter()
    for line in read_file(path):
        assert line.kind is not LineKind.UNPARSED, line.raw
        for event in line.events:
            spec = specs.get(event.name)
            if spec is None:
                continue
            assert event.probe is not None and event.probe.kind == spec.kind, line.raw
            assert event.probe.func in spec.symbols, line.raw
            assert list(event.fields) == [a.name for a in spec.args], line.raw
            counted[event.name] += 1
    # the lines without a pfn where the catalogue fetches none
    for name in ("gmem_alloc", "gmem_host_fault", "gmem_error_folio", "gmem_free", "tdx_reclaim"):
        assert "pfn" not in specs[name].fetched
    text = path.read_text()
    total = sum(text.count(f" {name}: (") for name in specs)
    assert sum(counted.values()) == total > 20_000
    assert {"gmem_alloc", "gmem_get_pfn", "tdx_aug", "tdx_remove", "gmem_convert",
            "gmem_host_fault", "gmem_punch_hole", "gmem_free", "tdx_reclaim"} <= set(counted)
    assert counted["gmem_alloc"] > 100 and counted["tdx_reclaim"] > 0
