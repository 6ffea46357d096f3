"""The mirror's answers on issue 12's new paths, each from a shortest path to a violation
(the graph tests prove the mirror equals TLC; these pin what the paths mean)."""

from collections import deque

from validator import model


def shortest_violation(cfg: model.Config, prop: str):
    """The actions of a shortest path to a state breaking `prop`, or None."""
    holds = dict(model.STATE_PROPERTIES)[prop]
    start = model.init(cfg)
    parent = {start: None}
    todo = deque([start])
    while todo:
        s = todo.popleft()
        for name, params, t in model.successors(cfg, s):
            if t in parent:
                continue
            parent[t] = (s, name)
            if not holds(cfg, t):
                path = []
                while parent[t] is not None:
                    t, name = parent[t]
                    path.append(name)
                return path[::-1]
            todo.append(t)
    return None


def folioref(backing="buddy", **kw):
    pages = 1 if backing == "buddy" else 2
    return model.Config("FolioRef", backing, folios=1, pages_per_folio=pages, **kw)


def test_folioref_counts_hold_without_a_bug():
    assert shortest_violation(folioref(max_remove_failures=1), "RefcountSound") is None
    assert shortest_violation(folioref("hugetlb", max_remove_failures=1), "RefcountSound") is None


def test_a_missed_put_breaks_refcount_sound():
    cfg = folioref(disabled=frozenset({"tdx_remove_ok.unpin"}))
    assert shortest_violation(cfg, "RefcountSound") == [
        "KvmGmemAllocFolio", "KvmTdpMapPrivate", "TdxSeptRemoveOk"]
    cfg = folioref(disabled=frozenset({"tdx_premap_zap.unpin"}))
    assert shortest_violation(cfg, "RefcountSound") == [
        "KvmGmemAllocFolio", "KvmTdpPremap", "TdxZapPremapped"]


def test_a_double_put_frees_a_folio_tdx_still_maps():
    cfg = folioref("hugetlb", max_remove_failures=1,
                   disabled=frozenset({"tdx_aug_busy.no_second_unpin"}))
    assert shortest_violation(cfg, "RefcountSound") == ["KvmGmemAllocFolio", "TdxAugBusy"]
    path = shortest_violation(cfg, "NoHostAccessToTdPage")
    assert path is not None and path[-3:] == ["KvmGmemPunchHole", "FreeFolio", "AllocatorReuse"]
    assert "TdxAugBusy" in path and "TdxSeptRemoveFailed" in path


def test_the_buggy_shutdown_window_and_the_flag_first():
    cfg = model.Config("NoMoreSeamcalls", "buddy", folios=1, max_remove_failures=1)
    assert shortest_violation(cfg, "NoHostAccessToTdPage") == [
        "KvmGmemAllocFolio", "KvmTdpMapPrivate", "TdxSeptRemoveFailed", "OtherTdSeamcall",
        "TdxShutdownFlag"]
    fixed = model.Config("NoMoreSeamcalls", "buddy", folios=1, max_remove_failures=1,
                         added=frozenset({"tdx_buggy_shutdown.flag_first"}))
    assert shortest_violation(fixed, "NoHostAccessToTdPage") is None


def test_the_erratum_leaves_pages_unreset_after_a_buggy_shutdown():
    features = model.DEFAULT_FEATURES | {"pw_erratum"}
    cfg = model.Config("NoMoreSeamcalls", "buddy", folios=1, max_remove_failures=1,
                       added=frozenset({"tdx_buggy_shutdown.flag_first"}), features=features)
    assert shortest_violation(cfg, "NoHostAccessToTdPage") == [
        "KvmGmemAllocFolio", "KvmTdpMapPrivate", "TdxSeptRemoveFailed", "TdxShutdownFlag"]
    # without faults every removal resets its page
    clean = model.Config("NoHold", "buddy", folios=1, features=features)
    assert shortest_violation(clean, "NoHostAccessToTdPage") is None


def test_another_td_dies_when_it_gets_a_page_still_assigned():
    cfg = model.Config("NoHold", "buddy", folios=1, max_remove_failures=1,
                       features=model.DEFAULT_FEATURES | {"cross_td"})
    _, edges = model.reachable(cfg)
    kills = [(name, t) for s, name, t in edges if s.otherTds == "alive" and t.otherTds != "alive"]
    assert kills and all(name == "CrossTdReuse" and t.sept == ("mapped",) and t.otherTds == "dead"
                         for name, t in kills)
    held = model.Config("FolioRef", "buddy", folios=1, max_remove_failures=1,
                        features=model.DEFAULT_FEATURES | {"cross_td"})
    assert all(s.otherTds == "alive" for s in model.reachable(held)[0])
