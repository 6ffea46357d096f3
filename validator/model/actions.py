"""One function per action of spec/Poison.tla's Next, with the TLA+ names.

Each takes the constants, a state and the action's parameters and returns
the successor state, or None when a guard is false.  The names are the
spec's on purpose: tests compare the mirror's reachable graph with the one
TLC dumps for the spec, edge labels included.
"""

from __future__ import annotations

from validator.model.designs import Config
from validator.model.state import (State, add_refs, bug_vm, fd_refuses, flag_of,
                                   folio_count, folio_refs_safe, head, leaked_on_free,
                                   may_hand_out, merge_flags, merge_uptodate, merge_wait,
                                   page_refs_safe, prepare, quiet, set_at, set_flag, split,
                                   split_flags, split_uptodate, truncate, unpin, whole)

# Each guard goes through _ok(), which notes the first false one in `why`
# (when given): the replay reports it as the guard that failed.

def _ok(why: list | None, holds: bool, guard: str) -> bool:
    if not holds and why is not None:
        why.append(guard)
    return holds


def KvmGmemAllocFolio(cfg: Config, s: State, f: int, why=None) -> State | None:
    if not (_ok(why, s.vm != "destroyed", "vm # destroyed")
            and _ok(why, quiet(s), "no buggy shutdown in progress (it holds the locks)")
            and _ok(why, s.folioLoc[f] == "pool", f"folio is {s.folioLoc[f]}, not in the pool")
            and _ok(why, may_hand_out(cfg, s, f),
                    "hugetlb_dequeue.hwpoison: the pool skips a poisoned folio")):
        return None
    flags = (split_flags(cfg, s, f) if cfg.backing == "hugetlb" and not whole(cfg, s, f)
             else s.hwpoison)
    fresh = tuple(False if cfg.folio_of(q) == f else s.uptodate[q] for q in range(cfg.pages))
    return s._replace(folioLoc=set_at(s.folioLoc, f, "gmem"), hwpoison=flags, uptodate=fresh)


def _can_map_private(cfg: Config, s: State, p: int, why) -> bool:
    f = cfg.folio_of(p)
    return (_ok(why, s.vm == "running", f"vm = running (it is {s.vm})")
            and _ok(why, s.tdx == "on", "tdx = on (no SEAMCALL after a buggy shutdown)")
            and _ok(why, s.folioLoc[f] == "gmem", f"folio in guest_memfd (it is {s.folioLoc[f]})")
            and _ok(why, s.attr[p] == "private", "the page is private")
            and _ok(why, not s.mirror[p], "no mirror SPTE yet")
            and _ok(why, s.sept[p] == "unmapped", "no S-EPT entry yet")
            and _ok(why, not (flag_of(cfg, s, p) and cfg.on("gmem_get_pfn.hwpoison")),
                    "gmem_get_pfn.hwpoison: the folio is poisoned (-EHWPOISON)"))


_REF_RANGE_GUARD = "TDX's references stay in the model's range"


def KvmTdpMapPrivate(cfg: Config, s: State, p: int, why=None) -> State | None:
    if not _can_map_private(cfg, s, p, why):
        return None
    refs = add_refs(s, p, 1) if cfg.design == "FolioRef" else s.tdxRefs
    if not _ok(why, refs is not None, _REF_RANGE_GUARD):
        return None
    unreset = set_at(s.unreset, p, True) if "pw_erratum" in cfg.features else s.unreset
    return s._replace(mirror=set_at(s.mirror, p, True), sept=set_at(s.sept, p, "mapped"),
                      tdxRefs=refs, unreset=unreset, uptodate=prepare(cfg, s, p))


def _folioref_fault(cfg: Config, s: State, p: int, delta: int, why) -> tuple | None:
    """tdxRefs after a FolioRef guest fault on p that changes them by delta, or None."""
    if not (_ok(why, cfg.design == "FolioRef", "FolioRef") and _can_map_private(cfg, s, p, why)):
        return None
    refs = add_refs(s, p, delta)
    return refs if _ok(why, refs is not None, _REF_RANGE_GUARD) else None


def TdxAugBusy(cfg: Config, s: State, p: int, why=None) -> State | None:
    delta = (1 - unpin(cfg, "tdx_aug_busy.unpin")
             - (1 - unpin(cfg, "tdx_aug_busy.no_second_unpin")))
    refs = _folioref_fault(cfg, s, p, delta, why)
    return None if refs is None else s._replace(tdxRefs=refs, uptodate=prepare(cfg, s, p))


def KvmTdpPremap(cfg: Config, s: State, p: int, why=None) -> State | None:
    refs = _folioref_fault(cfg, s, p, 1, why)
    return None if refs is None else s._replace(
        mirror=set_at(s.mirror, p, True), tdxRefs=refs, uptodate=prepare(cfg, s, p))


def TdxZapPremapped(cfg: Config, s: State, p: int, why=None) -> State | None:
    if not (_ok(why, s.mirror[p], "KVM maps the page (mirror SPTE)")
            and _ok(why, s.sept[p] == "unmapped", "premapped: no S-EPT entry")
            and _ok(why, quiet(s), "no buggy shutdown in progress (it holds the locks)")):
        return None
    refs = add_refs(s, p, -unpin(cfg, "tdx_premap_zap.unpin"))
    if not _ok(why, refs is not None, _REF_RANGE_GUARD):
        return None
    return s._replace(mirror=set_at(s.mirror, p, False), tdxRefs=refs)


def TdxSeptRemoveOk(cfg: Config, s: State, p: int, why=None) -> State | None:
    if not (_ok(why, s.mirror[p], "KVM maps the page (mirror SPTE)")
            and _ok(why, s.sept[p] == "mapped", "the S-EPT maps the page")
            and _ok(why, s.tdx == "on", "tdx = on")):
        return None
    refs = (add_refs(s, p, -unpin(cfg, "tdx_remove_ok.unpin")) if cfg.design == "FolioRef"
            else s.tdxRefs)
    if not _ok(why, refs is not None, _REF_RANGE_GUARD):
        return None
    return s._replace(mirror=set_at(s.mirror, p, False), sept=set_at(s.sept, p, "unmapped"),
                      tdxRefs=refs, unreset=set_at(s.unreset, p, False))


def _removal_fails(cfg: Config, s: State, p: int, why, flagged: tuple | None = None
                   ) -> State | None:
    """The spec's RemovalFailsFlagging: the SEAMCALL fails, KVM_BUG_ON(), the design reacts;
    TDX's PG_hwpoison goes to `flagged` (default: where SetFlag puts it)."""
    if not (_ok(why, s.mirror[p], "KVM maps the page (mirror SPTE)")
            and _ok(why, s.sept[p] == "mapped", "the S-EPT maps the page")
            and _ok(why, s.tdx == "on", "tdx = on")
            and _ok(why, s.removeFailures < cfg.max_remove_failures, "removal-failure budget")):
        return None
    refs = s.tdxRefs
    if cfg.design == "FolioRef" and not cfg.on("tdx_remove_failed.hold_ref"):
        refs = add_refs(s, p, -1)
        if not _ok(why, refs is not None, _REF_RANGE_GUARD):
            return None
    poisons = cfg.on("tdx_remove_failed.set_hwpoison")
    poison = (set_flag(cfg, s, p) if flagged is None else flagged) if poisons else s.hwpoison
    bad = set_at(s.bad, p, True) if poisons else s.bad
    fd = "bugged" if cfg.on("tdx_remove_failed.mark_fd_bugged") and s.fd == "ok" else s.fd
    tdx, others = s.tdx, s.otherTds
    if cfg.on("tdx_remove_failed.buggy_shutdown"):
        if cfg.on("tdx_buggy_shutdown.wbinvd"):
            tdx = "flushing"            # the flag follows (TdxShutdownFlag)
        else:
            tdx, others = "off_dirty", "dead_unsafe"
    return s._replace(removeFailures=s.removeFailures + 1, mirror=set_at(s.mirror, p, False),
                      vm=bug_vm(s.vm), tdxRefs=refs, hwpoison=poison, bad=bad, fd=fd, tdx=tdx,
                      otherTds=others)


def TdxSeptRemoveFailed(cfg: Config, s: State, p: int, why=None) -> State | None:
    return _removal_fails(cfg, s, p, why)


def TdxSeptRemoveWbinvdFailed(cfg: Config, s: State, p: int, why=None) -> State | None:
    if not _ok(why, "wbinvd_fails" in cfg.features, "no WBINVD failure after PAGE.REMOVE"):
        return None
    t = _removal_fails(cfg, s, p, why)
    if t is None:
        return None
    return t._replace(sept=set_at(s.sept, p, "unmapped"), unreset=set_at(s.unreset, p, True))


def TdxSeptRemoveFailedInSplit(cfg: Config, s: State, p: int, why=None) -> State | None:
    """A removal fails during a HugeTLB split: TDX sets the old head's flag (spec comment)."""
    f = cfg.folio_of(p)
    if not (_ok(why, "split_race" in cfg.features, "no zap races a HugeTLB split")
            and _ok(why, not cfg.on("split.excludes_zap"),
                    "split.excludes_zap: a split excludes every zap")
            and _ok(why, split(cfg, s, f), "the folio is split")
            and _ok(why, p != head(cfg, f), "the page is not the folio's head")):
        return None
    return _removal_fails(cfg, s, p, why, set_at(s.hwpoison, head(cfg, f), True))


def TdxShutdownFlag(cfg: Config, s: State, why=None) -> State | None:
    if not _ok(why, s.tdx in ("flushing", "flushing_dirty"), "a buggy shutdown is flushing"):
        return None
    erratum = "pw_erratum" in cfg.features
    unsafe = s.tdx == "flushing_dirty" or erratum
    return s._replace(tdx="off", otherTds="dead_unsafe" if unsafe else "dead",
                      unreset=s.unreset if erratum else (False,) * cfg.pages)


def OtherTdSeamcall(cfg: Config, s: State, why=None) -> State | None:
    if not (_ok(why, s.tdx == "flushing", "a buggy shutdown is flushing")
            and _ok(why, s.otherTds == "alive", "other TDs run")
            and _ok(why, not cfg.on("tdx_buggy_shutdown.flag_first"),
                    "tdx_buggy_shutdown.flag_first: no SEAMCALL after the flag")):
        return None
    return s._replace(tdx="flushing_dirty")


def TdxSeptRemoveAfterShutdown(cfg: Config, s: State, p: int, why=None) -> State | None:
    if not (_ok(why, s.mirror[p], "KVM maps the page (mirror SPTE)")
            and _ok(why, s.sept[p] == "mapped", "the S-EPT maps the page")
            and _ok(why, s.tdx in ("off", "off_dirty"), "the TDX module is shut down")):
        return None
    return s._replace(mirror=set_at(s.mirror, p, False))


def VmmConvertRequest(cfg: Config, s: State, p: int, to: str, why=None) -> State | None:
    f = cfg.folio_of(p)
    if not (_ok(why, "in_place_conversion" in cfg.features, "no in-place conversion")
            and _ok(why, s.convReq is None, "no other conversion pending")
            and _ok(why, s.folioLoc[f] == "gmem", f"folio in guest_memfd (it is {s.folioLoc[f]})")
            and _ok(why, s.attr[p] != to, f"the page is not already {to}")
            and _ok(why, not fd_refuses(cfg, s, "convert.bugged_fd"),
                    "convert.bugged_fd: the fd is bugged (the ioctl's entry check)")):
        return None
    return s._replace(convReq=(p, to))


def KvmGmemConvertShared(cfg: Config, s: State, why=None) -> State | None:
    if not _ok(why, s.convReq is not None and s.convReq[1] == "shared",
               "a to-shared conversion is pending"):
        return None
    if not _ok(why, quiet(s), "no buggy shutdown in progress (it holds the locks)"):
        return None
    p = s.convReq[0]
    f = cfg.folio_of(p)
    if s.folioLoc[f] != "gmem":
        return s._replace(convReq=None)
    if not (_ok(why, not s.mirror[p], "the private mapping was zapped first")
            and _ok(why, not fd_refuses(cfg, s, "convert.bugged_fd_after_zap"),
                    "convert.bugged_fd_after_zap: the fd is bugged")
            and _ok(why, not (flag_of(cfg, s, p) and cfg.on("convert.hwpoison")),
                    "convert.hwpoison: the page is poisoned")
            and _ok(why, not cfg.on("convert_shared.safe_refcount") or page_refs_safe(s, p),
                    "convert_shared.safe_refcount: extra references on the page")
            and _ok(why, not (cfg.backing == "hugetlb" and whole(cfg, s, f)
                              and cfg.on("restructure.safe_refcount"))
                    or folio_refs_safe(cfg, s, f),
                    "restructure.safe_refcount: extra references block the HugeTLB split")):
        return None
    splits = cfg.backing == "hugetlb" and whole(cfg, s, f)   # the first shared page
    return s._replace(attr=set_at(s.attr, p, "shared"), convReq=None,
                      hwpoison=split_flags(cfg, s, f) if splits else s.hwpoison,
                      uptodate=split_uptodate(cfg, s, f) if splits else s.uptodate)


def KvmGmemConvertPrivate(cfg: Config, s: State, why=None) -> State | None:
    if not _ok(why, s.convReq is not None and s.convReq[1] == "private",
               "a to-private conversion is pending"):
        return None
    if not _ok(why, quiet(s), "no buggy shutdown in progress (it holds the locks)"):
        return None
    p = s.convReq[0]
    f = cfg.folio_of(p)
    if s.folioLoc[f] != "gmem":
        return s._replace(convReq=None)
    if not (_ok(why, not fd_refuses(cfg, s, "convert.bugged_fd"),
                "convert.bugged_fd: the fd is bugged")
            and _ok(why, not (flag_of(cfg, s, p) and cfg.on("convert.hwpoison")),
                    "convert.hwpoison: the page is poisoned")):
        return None
    merges = cfg.backing == "hugetlb" and all(
        s.attr[q] == "private" for q in cfg.pages_of(f) if q != p)
    safe = ((page_refs_safe(s, p) or not cfg.on("convert.safe_refcount"))
            and (not (merges and cfg.on("restructure.safe_refcount"))
                 or folio_refs_safe(cfg, s, f)))
    unmapped = s._replace(hostMap=set_at(s.hostMap, p, False))
    if not safe:
        return unmapped          # -EAGAIN, after unmap_mapping_pages()
    if not merges:
        return unmapped._replace(attr=set_at(s.attr, p, "private"), convReq=None)
    return unmapped._replace(attr=set_at(s.attr, p, "private"), convReq=None,   # merged back
                             hwpoison=merge_flags(cfg, s, f), uptodate=merge_uptodate(cfg, s, f))


def KvmGmemHostFault(cfg: Config, s: State, p: int, why=None) -> State | None:
    f = cfg.folio_of(p)
    if not (_ok(why, "in_place_conversion" in cfg.features,
                "no shared mmap of a TDX guest_memfd upstream (SIGBUS)")
            and _ok(why, quiet(s), "no buggy shutdown in progress (it holds the locks)")
            and _ok(why, s.folioLoc[f] == "gmem", f"folio in guest_memfd (it is {s.folioLoc[f]})")
            and _ok(why, not s.hostMap[p], "not mapped by the host yet")
            and _ok(why, not (s.attr[p] == "private" and cfg.on("gmem_fault.shared")),
                    "gmem_fault.shared: the page is private (SIGBUS)")
            and _ok(why, not (s.hwpoison[p] and cfg.on("do_fault.hwpoison")),
                    "do_fault.hwpoison: the page is poisoned (VM_FAULT_HWPOISON)")
            and _ok(why, not (flag_of(cfg, s, p) and cfg.on("gmem_fault.hwpoison")),
                    "gmem_fault.hwpoison: the folio is poisoned")
            and _ok(why, not fd_refuses(cfg, s, "host_fault.bugged_fd"),
                    "host_fault.bugged_fd: the fd is bugged")):
        return None
    return s._replace(hostMap=set_at(s.hostMap, p, True), uptodate=prepare(cfg, s, p))


def HostGup(cfg: Config, s: State, p: int, why=None) -> State | None:
    if not (_ok(why, s.hostMap[p], "the host maps the page")
            and _ok(why, not s.hostPin[p], "not pinned yet")):
        return None
    return s._replace(hostPin=set_at(s.hostPin, p, True))


def HostUnpin(cfg: Config, s: State, p: int, why=None) -> State | None:
    if not _ok(why, s.hostPin[p], "the host pins the page"):
        return None
    return s._replace(hostPin=set_at(s.hostPin, p, False))


def HostUnmap(cfg: Config, s: State, p: int, why=None) -> State | None:
    if not _ok(why, s.hostMap[p], "the host maps the page"):
        return None
    return s._replace(hostMap=set_at(s.hostMap, p, False))


def KvmGmemPunchHole(cfg: Config, s: State, f: int, why=None) -> State | None:
    if not (_ok(why, s.folioLoc[f] == "gmem", f"folio in guest_memfd (it is {s.folioLoc[f]})")
            and _ok(why, quiet(s), "no buggy shutdown in progress (it holds the locks)")
            and _ok(why, not any(s.mirror[p] for p in cfg.pages_of(f)),
                    "KVM no longer maps any page of the folio (zapped first)")
            and _ok(why, not fd_refuses(cfg, s, "punch_hole.bugged_fd"),
                    "punch_hole.bugged_fd: the fd is bugged")
            and _ok(why, merge_wait(cfg, s, f), _MERGE_WAIT)):
        return None
    return truncate(cfg, s, f)


_MERGE_WAIT = "restructure.safe_refcount: the merge waits for TDX's references to go"


def KvmGmemEvictInode(cfg: Config, s: State, f: int, why=None) -> State | None:
    if not (_ok(why, s.vm == "destroyed", f"vm = destroyed (it is {s.vm})")
            and _ok(why, not (s.fd == "bugged" and cfg.on("buggy_cleanup.pins_file")),
                    "buggy_cleanup.pins_file: the queued cleanup keeps the file")
            and _ok(why, quiet(s), "no buggy shutdown in progress (it holds the locks)")
            and _ok(why, s.folioLoc[f] == "gmem", f"folio in guest_memfd (it is {s.folioLoc[f]})")
            and _ok(why, not any(s.mirror[p] for p in cfg.pages_of(f)),
                    "KVM no longer maps any page of the folio (zapped first)")
            and _ok(why, merge_wait(cfg, s, f), _MERGE_WAIT)):
        return None
    return truncate(cfg, s, f)


def FreeFolio(cfg: Config, s: State, f: int, why=None) -> State | None:
    if not (_ok(why, s.folioLoc[f] == "detached",
                f"folio truncated but referenced (it is {s.folioLoc[f]})")
            and _ok(why, folio_count(cfg, s, f) <= 0,
                    "no reference left but guest_memfd's (TDX or host still holds one)")):
        return None
    where = "leaked" if leaked_on_free(cfg, s, f) else "pool"
    return s._replace(folioLoc=set_at(s.folioLoc, f, where))


def AllocatorReuse(cfg: Config, s: State, f: int, why=None) -> State | None:
    if not (_ok(why, s.folioLoc[f] in ("pool", "buddy"),
                f"folio free in an allocator (it is {s.folioLoc[f]})")
            and _ok(why, may_hand_out(cfg, s, f),
                    "hugetlb_dequeue.hwpoison: the pool skips a poisoned folio")):
        return None
    return s._replace(folioLoc=set_at(s.folioLoc, f, "reused"))


def CrossTdReuse(cfg: Config, s: State, f: int, why=None) -> State | None:
    if not (_ok(why, "cross_td" in cfg.features, "no other TD takes freed folios")
            and _ok(why, s.otherTds == "alive", "other TDs run")
            and _ok(why, s.folioLoc[f] in ("pool", "buddy"),
                    f"folio free in an allocator (it is {s.folioLoc[f]})")
            and _ok(why, may_hand_out(cfg, s, f),
                    "hugetlb_dequeue.hwpoison: the pool skips a poisoned folio")):
        return None
    assigned = any(s.sept[p] == "mapped" for p in cfg.pages_of(f))    # PAMT: still this TD's
    return s._replace(folioLoc=set_at(s.folioLoc, f, "reused"),
                      otherTds="dead" if assigned else s.otherTds)


def HostUserFree(cfg: Config, s: State, f: int, why=None) -> State | None:
    if not _ok(why, s.folioLoc[f] == "reused", f"another user holds the folio (it is {s.folioLoc[f]})"):
        return None
    leaked = (cfg.backing == "buddy" and s.hwpoison[head(cfg, f)]
              and cfg.on("free_pages_prepare.hwpoison"))
    return s._replace(folioLoc=set_at(s.folioLoc, f, "leaked" if leaked else "pool"))


def MemoryFailure(cfg: Config, s: State, p: int, why=None) -> State | None:
    f = cfg.folio_of(p)
    if not (_ok(why, s.memErrors < cfg.max_mem_errors, "memory-error budget")
            and _ok(why, quiet(s), "no buggy shutdown in progress (it holds the locks)")
            and _ok(why, s.folioLoc[f] == "gmem", f"folio in guest_memfd (it is {s.folioLoc[f]})")
            and _ok(why, not s.bad[p], "the page is not poisoned yet")):
        return None
    host_map = s.hostMap if "mf_ignored" in cfg.features else set_at(s.hostMap, p, False)
    return s._replace(memErrors=s.memErrors + 1, hwpoison=set_flag(cfg, s, p),
                      bad=set_at(s.bad, p, True), hostMap=host_map)


def HugetlbDissolve(cfg: Config, s: State, f: int, why=None) -> State | None:
    if not (_ok(why, "dissolve" in cfg.features, "no dissolve path")
            and _ok(why, cfg.backing == "hugetlb", "a HugeTLB folio")
            and _ok(why, s.folioLoc[f] == "pool", f"folio in the pool (it is {s.folioLoc[f]})")):
        return None
    kept = s.hwpoison[head(cfg, f)] and cfg.on("dissolve.hwpoison")
    return s._replace(folioLoc=set_at(s.folioLoc, f, "leaked" if kept else "buddy"))


def KvmGmemBuggyCleanup(cfg: Config, s: State, why=None) -> State | None:
    if not _ok(why, s.fd == "bugged", f"the fd is bugged, cleanup pending (fd is {s.fd})"):
        return None
    in_fd = [s.folioLoc[cfg.folio_of(p)] == "gmem" for p in range(cfg.pages)]
    # memory_failure() of each page: a whole HugeTLB folio's flag is its head's
    flagged = [in_fd[p] and (cfg.backing != "hugetlb" or split(cfg, s, cfg.folio_of(p))
                             or p == head(cfg, cfg.folio_of(p))) for p in range(cfg.pages)]
    return s._replace(fd="cleaned",
                      hwpoison=tuple(s.hwpoison[p] or flagged[p] for p in range(cfg.pages)),
                      bad=tuple(s.bad[p] or in_fd[p] for p in range(cfg.pages)),
                      hostMap=tuple(s.hostMap[p] and not in_fd[p] for p in range(cfg.pages)))


def KvmGmemRelease(cfg: Config, s: State, why=None) -> State | None:
    if not (_ok(why, s.vm == "destroyed", f"vm = destroyed (it is {s.vm})")
            and _ok(why, s.fd != "ok", "the fd carries a bugged flag")
            and _ok(why, not cfg.on("gmem_release.keeps_bugged_flag"),
                    "gmem_release.keeps_bugged_flag: the flag lives on the inode")
            and _ok(why, not cfg.on("buggy_cleanup.pins_file") or s.fd == "cleaned",
                    "buggy_cleanup.pins_file: the queued cleanup keeps the file")):
        return None
    return s._replace(fd="ok")


def TdxReleaseHkid(cfg: Config, s: State, why=None) -> State | None:
    if not (_ok(why, s.vm != "destroyed", "vm # destroyed")
            and _ok(why, quiet(s), "no buggy shutdown in progress (it holds the locks)")):
        return None
    return s._replace(vm="destroyed")


FOLIO_ACTIONS = (KvmGmemAllocFolio, KvmGmemPunchHole, KvmGmemEvictInode, FreeFolio,
                 AllocatorReuse, HostUserFree, HugetlbDissolve, CrossTdReuse)
PAGE_ACTIONS = (KvmTdpMapPrivate, TdxAugBusy, KvmTdpPremap, TdxSeptRemoveOk,
                TdxSeptRemoveFailed, TdxSeptRemoveWbinvdFailed, TdxSeptRemoveFailedInSplit,
                TdxSeptRemoveAfterShutdown,
                TdxZapPremapped,
                KvmGmemHostFault, HostGup, HostUnpin, HostUnmap, MemoryFailure)
GLOBAL_ACTIONS = (KvmGmemConvertShared, KvmGmemConvertPrivate, KvmGmemBuggyCleanup,
                  KvmGmemRelease, TdxReleaseHkid, TdxShutdownFlag, OtherTdSeamcall)
ACTION_NAMES = tuple(a.__name__ for a in FOLIO_ACTIONS + PAGE_ACTIONS + GLOBAL_ACTIONS) + (
    "VmmConvertRequest",)
