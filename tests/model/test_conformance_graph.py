"""The Python mirror of Next has exactly TLC's state graph (states and labelled edges)."""

import shutil
import subprocess
from pathlib import Path

import pytest

from validator import model
from validator.model import mirror
from validator.tlc.graph import canonical, read_dot
from validator.tlc.setup import default_jar, find_java

from conftest import ROOT

CASES = [(design, "buddy", 1) for design in model.DESIGNS] + \
        [(design, "hugetlb", 2) for design in model.DESIGNS]
MUTANTS = [("HWPoison", "hugetlb", 2, ("do_fault.hwpoison", "gmem_fault.hwpoison")),
           ("FolioRef", "buddy", 1, ("tdx_remove_failed.hold_ref",)),
           ("NoMoreSeamcalls", "buddy", 1, ("tdx_buggy_shutdown.wbinvd",)),
           ("BuggyCleanup", "buddy", 1, ("punch_hole.bugged_fd",))]


def tlc_graph(tmp_path: Path, cfg: model.Config):
    spec = tmp_path / "spec"
    spec.mkdir()
    for name in ("Poison.tla", "MCPoison.tla"):
        shutil.copy(ROOT / "spec" / name, spec / name)
    quoted = lambda names: "{" + ", ".join(f'"{n}"' for n in sorted(names)) + "}"  # noqa: E731
    folios = [f"f{i}" for i in range(1, cfg.folios + 1)]
    (spec / "g.cfg").write_text("\n".join(
        ["CONSTANTS"] + [f"    {f} = {f}" for f in folios] + [
            f"    Folios = {{{', '.join(folios)}}}",
            f"    PagesPerFolio = {cfg.pages_per_folio}",
            f'    Backing = "{cfg.backing}"', f'    Design = "{cfg.design}"',
            f"    MaxRemoveFailures = {cfg.max_remove_failures}",
            f"    MaxMemErrors = {cfg.max_mem_errors}",
            f"    Disabled = {quoted(cfg.disabled)}", f"    Added = {quoted(cfg.added)}",
            f"    Features = {quoted(cfg.features)}",
            "SPECIFICATION Spec"]) + "\n")
    done = subprocess.run(
        [find_java(), f"-Djava.io.tmpdir={tmp_path}", "-cp", str(default_jar()), "tlc2.TLC",
         "-deadlock", "-dump", "dot,actionlabels", "graph", "-metadir", "states",
         "-config", "g.cfg", "MCPoison.tla"],
        cwd=spec, capture_output=True, text=True, timeout=300)
    assert "No error has been found" in done.stdout, done.stdout[-2000:]
    return read_dot(spec / "graph.dot")


def python_graph(cfg: model.Config):
    states, edges = model.reachable(cfg)
    text = {s: canonical(model.to_tla(cfg, s)) for s in states}
    return set(text.values()), {(text[a], name, text[b]) for a, name, b in edges}


def assert_same_graph(tmp_path, cfg):
    tlc_states, tlc_edges = tlc_graph(tmp_path, cfg)
    py_states, py_edges = python_graph(cfg)
    assert len(tlc_states) > 50
    assert py_states == tlc_states, (len(py_states - tlc_states), len(tlc_states - py_states))
    missing, extra = tlc_edges - py_edges, py_edges - tlc_edges
    assert not missing and not extra, (sorted({e[1] for e in missing}),
                                       sorted({e[1] for e in extra}))


@pytest.mark.parametrize("design, backing, pages", CASES)
def test_same_graph_as_tlc(tlc_ready, tmp_path, design, backing, pages):
    cfg = model.Config(design, backing, folios=1, pages_per_folio=pages,
                       max_remove_failures=1, max_mem_errors=1)
    assert_same_graph(tmp_path, cfg)


@pytest.mark.parametrize("design, backing, pages, disabled", MUTANTS)
def test_same_graph_as_tlc_for_mutants(tlc_ready, tmp_path, design, backing, pages, disabled):
    cfg = model.Config(design, backing, folios=1, pages_per_folio=pages,
                       max_remove_failures=1, max_mem_errors=1, disabled=frozenset(disabled))
    assert_same_graph(tmp_path, cfg)


def test_same_graph_with_two_folios_and_added_checks(tlc_ready, tmp_path):
    cfg = model.Config("BuggyCleanup", "buddy", folios=2, max_remove_failures=1,
                       added=frozenset({"convert.hwpoison"}))
    assert_same_graph(tmp_path, cfg)


# PG_hwpoison as stored (split copies, merge keeps the head's, the fold), the dissolve path
# with and without Jiaqi Yan's check, and upstream (no in-place conversion).
FEATURE_CASES = [
    ("HWPoison", "hugetlb", 1, (), (), ("in_place_conversion", "dissolve")),
    ("HWPoison", "hugetlb", 1, (), ("merge.hwpoison", "dissolve.hwpoison"),
     ("in_place_conversion", "dissolve")),
    ("NoHold", "hugetlb", 1, ("gmem_free.hwpoison",), (), ("dissolve",)),
    ("NoHold", "buddy", 2, (), (), ()),          # upstream: no in-place conversion
    ("HWPoison", "thp", 1, (), (), ("in_place_conversion",)),
    # refcounts as numbers: AUG -EBUSY, premap, a missed put and a double put
    ("FolioRef", "buddy", 1, ("tdx_remove_ok.unpin",), (), ("in_place_conversion",)),
    ("FolioRef", "hugetlb", 1, ("tdx_aug_busy.no_second_unpin",), (), ("in_place_conversion",)),
    ("FolioRef", "buddy", 1, ("tdx_aug_busy.unpin", "tdx_premap_zap.unpin"), (), ()),
    # the buggy shutdown's window, the erratum, another TD
    ("NoMoreSeamcalls", "buddy", 2, (), (), ("in_place_conversion", "pw_erratum", "cross_td")),
    ("NoMoreSeamcalls", "hugetlb", 1, (), ("tdx_buggy_shutdown.flag_first",),
     ("in_place_conversion", "cross_td")),
    ("NoHold", "buddy", 2, (), (), ("cross_td", "pw_erratum")),
    ("BuggyCleanup", "hugetlb", 1, ("gmem_free.bugged_fd",), (), ("in_place_conversion", "cross_td")),
    # the fidelity reading: where the flag is checked and how long it lives, memory_failure()
    # ignoring the 1G series' folios, zeroing with PG_uptodate per page, a failed WBINVD
    ("BuggyCleanup", "buddy", 1, ("host_fault.bugged_fd", "gmem_release.keeps_bugged_flag"),
     ("convert.bugged_fd_after_zap",), ("in_place_conversion",)),
    ("BuggyCleanup", "hugetlb", 1, ("gmem_release.keeps_bugged_flag",),
     ("buggy_cleanup.pins_file",), ("in_place_conversion", "wbinvd_fails")),
    ("HWPoison", "hugetlb", 1, (), ("merge.hwpoison", "prepare.per_page"),
     ("in_place_conversion", "mf_ignored")),
    ("FolioRef", "buddy", 1, (), (), ("in_place_conversion", "wbinvd_fails", "pw_erratum")),
    ("NoMoreSeamcalls", "buddy", 1, (), (), ("in_place_conversion", "wbinvd_fails")),
    # a removal that fails during a HugeTLB split, with the fold and with the lock it needs
    ("HWPoison", "hugetlb", 1, (), ("merge.hwpoison",), ("in_place_conversion", "split_race")),
    ("HWPoison", "hugetlb", 1, (), ("merge.hwpoison", "split.excludes_zap"),
     ("in_place_conversion", "split_race")),
]


@pytest.mark.parametrize("design, backing, folios, disabled, added, features", FEATURE_CASES)
def test_same_graph_with_features(tlc_ready, tmp_path, design, backing, folios, disabled, added,
                                  features):
    pages = 1 if backing == "buddy" else 2
    cfg = model.Config(design, backing, folios=folios, pages_per_folio=pages, max_remove_failures=1,
                       max_mem_errors=1, disabled=frozenset(disabled), added=frozenset(added),
                       features=frozenset(features))
    assert_same_graph(tmp_path, cfg)


def test_the_comparison_can_fail(tlc_ready, tmp_path, monkeypatch):
    """A mirror that forgets one guard must not pass."""
    original = model.KvmGmemHostFault

    def no_poison_check(cfg, s, p):
        return original(model.Config(cfg.design, cfg.backing, cfg.folios, cfg.pages_per_folio,
                                     cfg.max_remove_failures, cfg.max_mem_errors,
                                     cfg.disabled | {"do_fault.hwpoison"}, cfg.added), s, p)

    no_poison_check.__name__ = "KvmGmemHostFault"  # same edge labels: only the guard differs
    # successors() takes its actions from the mirror module's own names.
    monkeypatch.setattr(mirror, "PAGE_ACTIONS", tuple(
        no_poison_check if a is original else a for a in model.PAGE_ACTIONS))
    cfg = model.Config("NoHold", "buddy", folios=1, max_mem_errors=1)
    with pytest.raises(AssertionError):
        assert_same_graph(tmp_path, cfg)


def python_safety_verdicts(cfg: model.Config) -> dict[str, str]:
    """Properties 1-4 and 8 over the mirror's reachable graph (what TLC checks)."""
    states, edges = model.reachable(cfg)
    verdicts = {}
    for name, holds in model.STATE_PROPERTIES:
        verdicts[name] = "holds" if all(holds(cfg, s) for s in states) else "violated"
    for name, holds in model.STEP_PROPERTIES:
        verdicts[name] = "holds" if all(holds(cfg, s, t) for s, _, t in edges) else "violated"
    return verdicts


def test_python_properties_agree_with_the_matrix_on_buddy_runs():
    """The replay's property functions give TLC's verdicts on every buddy run of make check
    (the deep profile's, with 3 folios and 2+2 faults, took five minutes here)."""
    from validator.check.matrix import load_matrix
    runs = [r for r in load_matrix(ROOT / "spec" / "matrix.toml")
            if r.backing == "buddy" and not r.deep]
    assert len(runs) > 15
    for run in runs:
        cfg = model.Config(run.design, run.backing, folios=run.folios,
                           pages_per_folio=run.pages_per_folio,
                           max_remove_failures=run.remove_failures,
                           max_mem_errors=run.mem_errors, disabled=frozenset(run.disabled),
                           added=frozenset(run.added), features=frozenset(run.features))
        got = python_safety_verdicts(cfg)
        assert got == {k: run.expect[k] for k in got}, run.name


def test_the_compared_graphs_take_every_action():
    """Every action of Next labels some edge in the graphs compared with TLC's above."""
    configs = [model.Config(d, b, folios=1, pages_per_folio=n, max_remove_failures=1,
                            max_mem_errors=1) for d, b, n in CASES]
    configs += [model.Config(d, b, folios=1, pages_per_folio=n, max_remove_failures=1,
                             max_mem_errors=1, disabled=frozenset(off)) for d, b, n, off in MUTANTS]
    configs += [model.Config(d, b, folios=f, pages_per_folio=1 if b == "buddy" else 2,
                             max_remove_failures=1, max_mem_errors=1, disabled=frozenset(off),
                             added=frozenset(on), features=frozenset(feat))
                for d, b, f, off, on, feat in FEATURE_CASES]
    taken = {name for cfg in configs for _, name, _ in model.reachable(cfg)[1]}
    assert taken == set(model.ACTION_NAMES)
