"""An executable mirror of spec/Poison.tla's Next, one function per TLA+ action.

Each action function takes the constants, a state and its parameters and
returns the successor state, or None when a guard is false.  The functions
carry the TLA+ names on purpose: tests compare the reachable graph of this
module with the state graph TLC dumps for the spec (states and labelled
edges), so any drift between the two shows up as a failing test.

Pages are numbered 0..P-1, page i belonging to folio i // pages_per_folio;
folios are "f1", "f2", ... as in the generated TLC configurations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, NamedTuple

DESIGNS = ("NoHold", "FolioRef", "HWPoison", "BuggyCleanup", "NoMoreSeamcalls")

UPSTREAM_CHECKS = frozenset({
    "gmem_get_pfn.hwpoison", "gmem_fault.shared", "do_fault.hwpoison",
    "free_pages_prepare.hwpoison", "hugetlb_dequeue.hwpoison", "convert.safe_refcount",
    "restructure.safe_refcount"})
DESIGN_CHECKS = {
    "NoHold": frozenset(),
    "FolioRef": frozenset({"tdx_remove_failed.hold_ref", "convert_shared.safe_refcount",
                           "tdx_remove_ok.unpin", "tdx_aug_busy.unpin",
                           "tdx_aug_busy.no_second_unpin", "tdx_premap_zap.unpin"}),
    "HWPoison": frozenset({"tdx_remove_failed.set_hwpoison", "gmem_fault.hwpoison",
                           "gmem_free.hwpoison"}),
    "BuggyCleanup": frozenset({"tdx_remove_failed.mark_fd_bugged", "convert.bugged_fd",
                               "punch_hole.bugged_fd", "gmem_free.bugged_fd"}),
    "NoMoreSeamcalls": frozenset({"tdx_remove_failed.buggy_shutdown",
                                  "tdx_buggy_shutdown.wbinvd"}),
}
PROPOSED_CHECKS = frozenset({"convert.hwpoison", "host_fault.bugged_fd", "merge.hwpoison",
                             "dissolve.hwpoison", "tdx_buggy_shutdown.flag_first"})
ALL_FEATURES = frozenset({"in_place_conversion", "dissolve", "cross_td", "pw_erratum"})
DEFAULT_FEATURES = frozenset({"in_place_conversion"})
ALL_CHECKS = UPSTREAM_CHECKS | PROPOSED_CHECKS | frozenset().union(*DESIGN_CHECKS.values())


@dataclass(frozen=True)
class Config:
    """The spec's CONSTANTS."""
    design: str
    backing: str
    folios: int = 2
    pages_per_folio: int = 1
    max_remove_failures: int = 0
    max_mem_errors: int = 0
    disabled: frozenset = frozenset()
    added: frozenset = frozenset()
    features: frozenset = DEFAULT_FEATURES

    def __post_init__(self):
        if self.design not in DESIGNS:
            raise ValueError(f"unknown design {self.design!r}")
        if self.backing not in ("buddy", "hugetlb", "thp"):
            raise ValueError(f"unknown backing {self.backing!r}")
        unknown = (set(self.disabled) | set(self.added)) - ALL_CHECKS
        if unknown:
            raise ValueError(f"unknown check(s) {', '.join(sorted(unknown))}")
        if not set(self.features) <= ALL_FEATURES:
            raise ValueError(f"unknown feature(s) {sorted(set(self.features) - ALL_FEATURES)}")
        object.__setattr__(self, "active", frozenset(
            (UPSTREAM_CHECKS | DESIGN_CHECKS[self.design] | set(self.added)) - set(self.disabled)))

    def on(self, check: str) -> bool:
        return check in self.active  # type: ignore[attr-defined]

    @property
    def pages(self) -> int:
        return self.folios * self.pages_per_folio

    def folio_of(self, page: int) -> int:
        return page // self.pages_per_folio

    def pages_of(self, folio: int) -> range:
        return range(folio * self.pages_per_folio, (folio + 1) * self.pages_per_folio)


class State(NamedTuple):
    folioLoc: tuple     # per folio: pool | gmem | detached | reused | leaked | buddy
    tdxRefs: tuple      # per page: int
    attr: tuple         # per page: private | shared
    sept: tuple         # per page: unmapped | mapped
    mirror: tuple       # per page: bool
    hostMap: tuple      # per page: bool
    hostPin: tuple      # per page: bool
    hwpoison: tuple     # per page: PG_hwpoison as stored (a whole HugeTLB folio: its head's)
    bad: tuple          # per page: poisoned (memory error, TDX): what the properties judge
    vm: str             # running | bugged | destroyed
    tdx: str            # TDX_STATES
    otherTds: str       # alive | dead | dead_unsafe
    fd: str             # ok | bugged | cleaned
    convReq: tuple | None   # None (NoReq) or (page, "private" | "shared")
    removeFailures: int
    memErrors: int
    unreset: tuple      # per page: "pw_erratum" only: TD-private lines never reset


REF_RANGE = range(-1, 3)    # the spec's RefRange
TDX_STATES = ("on", "flushing", "flushing_dirty", "off", "off_dirty")


def init(cfg: Config) -> State:
    n = cfg.pages
    return State(("pool",) * cfg.folios, (0,) * n, ("private",) * n, ("unmapped",) * n,
                 (False,) * n, (False,) * n, (False,) * n, (False,) * n, (False,) * n,
                 "running", "on", "alive", "ok", None, 0, 0, (False,) * n)


def _set(values: tuple, index: int, value) -> tuple:
    return values[:index] + (value,) + values[index + 1:]


# ---- helpers (same names as the spec's operators, in Python case) ----------

def whole(cfg: Config, s: State, f: int) -> bool:
    return all(s.attr[p] == "private" for p in cfg.pages_of(f))


# PG_hwpoison as the kernel stores it (the spec's section of the same name).
def head(cfg: Config, f: int) -> int:
    return f * cfg.pages_per_folio


def split(cfg: Config, s: State, f: int) -> bool:
    return cfg.backing == "hugetlb" and s.folioLoc[f] == "gmem" and not whole(cfg, s, f)


def flag_of(cfg: Config, s: State, p: int) -> bool:
    f = cfg.folio_of(p)
    return s.hwpoison[p] if split(cfg, s, f) else s.hwpoison[head(cfg, f)]


def is_bad(cfg: Config, s: State, f: int) -> bool:
    return any(s.bad[p] for p in cfg.pages_of(f))


def set_flag(cfg: Config, s: State, p: int) -> tuple:
    f = cfg.folio_of(p)
    target = head(cfg, f) if cfg.backing == "hugetlb" and not split(cfg, s, f) else p
    return _set(s.hwpoison, target, True)


def split_flags(cfg: Config, s: State, f: int) -> tuple:
    h = s.hwpoison[head(cfg, f)]
    return tuple(h if cfg.folio_of(q) == f else s.hwpoison[q] for q in range(cfg.pages))


def merge_flags(cfg: Config, s: State, f: int) -> tuple:
    if cfg.on("merge.hwpoison"):
        return _set(s.hwpoison, head(cfg, f), any(s.hwpoison[p] for p in cfg.pages_of(f)))
    return s.hwpoison


def page_refs_safe(s: State, p: int) -> bool:
    return s.tdxRefs[p] == 0 and not s.hostPin[p]


def folio_refs_safe(cfg: Config, s: State, f: int) -> bool:
    return all(page_refs_safe(s, p) for p in cfg.pages_of(f))


def folio_count(cfg: Config, s: State, f: int) -> int:
    """TDX's references and host pins on the folio (beyond the page cache's)."""
    return sum(s.tdxRefs[p] + s.hostPin[p] for p in cfg.pages_of(f))


def tdx_holds(cfg: Config, s: State, p: int) -> bool:
    return cfg.design == "FolioRef" and (s.sept[p] == "mapped" or s.mirror[p])


def _add_refs(s: State, p: int, delta: int) -> tuple | None:
    """tdxRefs with delta added to page p, or None when that leaves REF_RANGE."""
    value = s.tdxRefs[p] + delta
    return _set(s.tdxRefs, p, value) if value in REF_RANGE else None


def _unpin(cfg: Config, check: str) -> int:
    return 1 if cfg.on(check) else 0


def quiet(s: State) -> bool:
    """No buggy shutdown in progress (it holds mmu_lock and the invalidate lock)."""
    return s.tdx not in ("flushing", "flushing_dirty")


def may_hand_out(cfg: Config, s: State, f: int) -> bool:
    if s.folioLoc[f] == "buddy":
        return True
    if s.folioLoc[f] != "pool":
        return False
    return not (cfg.backing == "hugetlb" and s.hwpoison[head(cfg, f)]
                and cfg.on("hugetlb_dequeue.hwpoison"))


def leaked_on_free(cfg: Config, s: State, f: int) -> bool:
    poisoned = s.hwpoison[head(cfg, f)]
    return ((cfg.backing == "buddy" and poisoned and cfg.on("free_pages_prepare.hwpoison"))
            or (cfg.backing == "hugetlb" and poisoned and cfg.on("gmem_free.hwpoison"))
            or (s.fd != "ok" and cfg.on("gmem_free.bugged_fd")))


def fd_refuses(cfg: Config, s: State, check: str) -> bool:
    return s.fd != "ok" and cfg.on(check)


def _bug_vm(vm: str) -> str:
    return "bugged" if vm == "running" else vm


def _truncate(cfg: Config, s: State, f: int) -> State:
    host_map = list(s.hostMap)
    for p in cfg.pages_of(f):
        host_map[p] = False
    flags = merge_flags(cfg, s, f) if split(cfg, s, f) else s.hwpoison
    return s._replace(folioLoc=_set(s.folioLoc, f, "detached"), hostMap=tuple(host_map),
                      hwpoison=flags)


# ---- actions -----------------------------------------------------------------
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
    return s._replace(folioLoc=_set(s.folioLoc, f, "gmem"), hwpoison=flags)


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
    refs = _add_refs(s, p, 1) if cfg.design == "FolioRef" else s.tdxRefs
    if not _ok(why, refs is not None, _REF_RANGE_GUARD):
        return None
    unreset = _set(s.unreset, p, True) if "pw_erratum" in cfg.features else s.unreset
    return s._replace(mirror=_set(s.mirror, p, True), sept=_set(s.sept, p, "mapped"),
                      tdxRefs=refs, unreset=unreset)


def _folioref_fault(cfg: Config, s: State, p: int, delta: int, why) -> tuple | None:
    """tdxRefs after a FolioRef guest fault on p that changes them by delta, or None."""
    if not (_ok(why, cfg.design == "FolioRef", "FolioRef") and _can_map_private(cfg, s, p, why)):
        return None
    refs = _add_refs(s, p, delta)
    return refs if _ok(why, refs is not None, _REF_RANGE_GUARD) else None


def TdxAugBusy(cfg: Config, s: State, p: int, why=None) -> State | None:
    delta = (1 - _unpin(cfg, "tdx_aug_busy.unpin")
             - (1 - _unpin(cfg, "tdx_aug_busy.no_second_unpin")))
    refs = _folioref_fault(cfg, s, p, delta, why)
    return None if refs is None else s._replace(tdxRefs=refs)


def KvmTdpPremap(cfg: Config, s: State, p: int, why=None) -> State | None:
    refs = _folioref_fault(cfg, s, p, 1, why)
    return None if refs is None else s._replace(mirror=_set(s.mirror, p, True), tdxRefs=refs)


def TdxZapPremapped(cfg: Config, s: State, p: int, why=None) -> State | None:
    if not (_ok(why, s.mirror[p], "KVM maps the page (mirror SPTE)")
            and _ok(why, s.sept[p] == "unmapped", "premapped: no S-EPT entry")
            and _ok(why, quiet(s), "no buggy shutdown in progress (it holds the locks)")):
        return None
    refs = _add_refs(s, p, -_unpin(cfg, "tdx_premap_zap.unpin"))
    if not _ok(why, refs is not None, _REF_RANGE_GUARD):
        return None
    return s._replace(mirror=_set(s.mirror, p, False), tdxRefs=refs)


def TdxSeptRemoveOk(cfg: Config, s: State, p: int, why=None) -> State | None:
    if not (_ok(why, s.mirror[p], "KVM maps the page (mirror SPTE)")
            and _ok(why, s.sept[p] == "mapped", "the S-EPT maps the page")
            and _ok(why, s.tdx == "on", "tdx = on")):
        return None
    refs = (_add_refs(s, p, -_unpin(cfg, "tdx_remove_ok.unpin")) if cfg.design == "FolioRef"
            else s.tdxRefs)
    if not _ok(why, refs is not None, _REF_RANGE_GUARD):
        return None
    return s._replace(mirror=_set(s.mirror, p, False), sept=_set(s.sept, p, "unmapped"),
                      tdxRefs=refs, unreset=_set(s.unreset, p, False))


def TdxSeptRemoveFailed(cfg: Config, s: State, p: int, why=None) -> State | None:
    if not (_ok(why, s.mirror[p], "KVM maps the page (mirror SPTE)")
            and _ok(why, s.sept[p] == "mapped", "the S-EPT maps the page")
            and _ok(why, s.tdx == "on", "tdx = on")
            and _ok(why, s.removeFailures < cfg.max_remove_failures, "removal-failure budget")):
        return None
    refs = s.tdxRefs
    if cfg.design == "FolioRef" and not cfg.on("tdx_remove_failed.hold_ref"):
        refs = _add_refs(s, p, -1)
        if not _ok(why, refs is not None, _REF_RANGE_GUARD):
            return None
    poisons = cfg.on("tdx_remove_failed.set_hwpoison")
    poison = set_flag(cfg, s, p) if poisons else s.hwpoison
    bad = _set(s.bad, p, True) if poisons else s.bad
    fd = "bugged" if cfg.on("tdx_remove_failed.mark_fd_bugged") and s.fd == "ok" else s.fd
    tdx, others = s.tdx, s.otherTds
    if cfg.on("tdx_remove_failed.buggy_shutdown"):
        if cfg.on("tdx_buggy_shutdown.wbinvd"):
            tdx = "flushing"            # the flag follows (TdxShutdownFlag)
        else:
            tdx, others = "off_dirty", "dead_unsafe"
    return s._replace(removeFailures=s.removeFailures + 1, mirror=_set(s.mirror, p, False),
                      vm=_bug_vm(s.vm), tdxRefs=refs, hwpoison=poison, bad=bad, fd=fd, tdx=tdx,
                      otherTds=others)


def TdxShutdownFlag(cfg: Config, s: State, why=None) -> State | None:
    if not _ok(why, s.tdx in ("flushing", "flushing_dirty"), "a buggy shutdown is flushing"):
        return None
    unsafe = s.tdx == "flushing_dirty" or "pw_erratum" in cfg.features
    return s._replace(tdx="off", otherTds="dead_unsafe" if unsafe else "dead")


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
    return s._replace(mirror=_set(s.mirror, p, False))


def VmmConvertRequest(cfg: Config, s: State, p: int, to: str, why=None) -> State | None:
    f = cfg.folio_of(p)
    if not (_ok(why, "in_place_conversion" in cfg.features, "no in-place conversion")
            and _ok(why, s.convReq is None, "no other conversion pending")
            and _ok(why, s.folioLoc[f] == "gmem", f"folio in guest_memfd (it is {s.folioLoc[f]})")
            and _ok(why, s.attr[p] != to, f"the page is not already {to}")):
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
            and _ok(why, not fd_refuses(cfg, s, "convert.bugged_fd"),
                    "convert.bugged_fd: the fd is bugged")
            and _ok(why, not (flag_of(cfg, s, p) and cfg.on("convert.hwpoison")),
                    "convert.hwpoison: the page is poisoned")
            and _ok(why, not cfg.on("convert_shared.safe_refcount") or page_refs_safe(s, p),
                    "convert_shared.safe_refcount: extra references on the page")
            and _ok(why, not (cfg.backing == "hugetlb" and whole(cfg, s, f)
                              and cfg.on("restructure.safe_refcount"))
                    or folio_refs_safe(cfg, s, f),
                    "restructure.safe_refcount: extra references block the HugeTLB split")):
        return None
    flags = (split_flags(cfg, s, f) if cfg.backing == "hugetlb" and whole(cfg, s, f)
             else s.hwpoison)          # the first shared page splits a whole folio
    return s._replace(attr=_set(s.attr, p, "shared"), convReq=None, hwpoison=flags)


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
    unmapped = s._replace(hostMap=_set(s.hostMap, p, False))
    if not safe:
        return unmapped          # -EAGAIN, after unmap_mapping_pages()
    flags = merge_flags(cfg, s, f) if merges else s.hwpoison    # the last one merges it back
    return unmapped._replace(attr=_set(s.attr, p, "private"), convReq=None, hwpoison=flags)


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
    return s._replace(hostMap=_set(s.hostMap, p, True))


def HostGup(cfg: Config, s: State, p: int, why=None) -> State | None:
    if not (_ok(why, s.hostMap[p], "the host maps the page")
            and _ok(why, not s.hostPin[p], "not pinned yet")):
        return None
    return s._replace(hostPin=_set(s.hostPin, p, True))


def HostUnpin(cfg: Config, s: State, p: int, why=None) -> State | None:
    if not _ok(why, s.hostPin[p], "the host pins the page"):
        return None
    return s._replace(hostPin=_set(s.hostPin, p, False))


def HostUnmap(cfg: Config, s: State, p: int, why=None) -> State | None:
    if not _ok(why, s.hostMap[p], "the host maps the page"):
        return None
    return s._replace(hostMap=_set(s.hostMap, p, False))


def KvmGmemPunchHole(cfg: Config, s: State, f: int, why=None) -> State | None:
    if not (_ok(why, s.folioLoc[f] == "gmem", f"folio in guest_memfd (it is {s.folioLoc[f]})")
            and _ok(why, quiet(s), "no buggy shutdown in progress (it holds the locks)")
            and _ok(why, not any(s.mirror[p] for p in cfg.pages_of(f)),
                    "KVM no longer maps any page of the folio (zapped first)")
            and _ok(why, not fd_refuses(cfg, s, "punch_hole.bugged_fd"),
                    "punch_hole.bugged_fd: the fd is bugged")):
        return None
    return _truncate(cfg, s, f)


def KvmGmemEvictInode(cfg: Config, s: State, f: int, why=None) -> State | None:
    if not (_ok(why, s.vm == "destroyed", f"vm = destroyed (it is {s.vm})")
            and _ok(why, quiet(s), "no buggy shutdown in progress (it holds the locks)")
            and _ok(why, s.folioLoc[f] == "gmem", f"folio in guest_memfd (it is {s.folioLoc[f]})")
            and _ok(why, not any(s.mirror[p] for p in cfg.pages_of(f)),
                    "KVM no longer maps any page of the folio (zapped first)")):
        return None
    return _truncate(cfg, s, f)


def FreeFolio(cfg: Config, s: State, f: int, why=None) -> State | None:
    if not (_ok(why, s.folioLoc[f] == "detached",
                f"folio truncated but referenced (it is {s.folioLoc[f]})")
            and _ok(why, folio_count(cfg, s, f) <= 0,
                    "no reference left but guest_memfd's (TDX or host still holds one)")):
        return None
    where = "leaked" if leaked_on_free(cfg, s, f) else "pool"
    return s._replace(folioLoc=_set(s.folioLoc, f, where))


def AllocatorReuse(cfg: Config, s: State, f: int, why=None) -> State | None:
    if not (_ok(why, s.folioLoc[f] in ("pool", "buddy"),
                f"folio free in an allocator (it is {s.folioLoc[f]})")
            and _ok(why, may_hand_out(cfg, s, f),
                    "hugetlb_dequeue.hwpoison: the pool skips a poisoned folio")):
        return None
    return s._replace(folioLoc=_set(s.folioLoc, f, "reused"))


def CrossTdReuse(cfg: Config, s: State, f: int, why=None) -> State | None:
    if not (_ok(why, "cross_td" in cfg.features, "no other TD takes freed folios")
            and _ok(why, s.otherTds == "alive", "other TDs run")
            and _ok(why, s.folioLoc[f] in ("pool", "buddy"),
                    f"folio free in an allocator (it is {s.folioLoc[f]})")
            and _ok(why, may_hand_out(cfg, s, f),
                    "hugetlb_dequeue.hwpoison: the pool skips a poisoned folio")):
        return None
    assigned = any(s.sept[p] == "mapped" for p in cfg.pages_of(f))    # PAMT: still this TD's
    return s._replace(folioLoc=_set(s.folioLoc, f, "reused"),
                      otherTds="dead" if assigned else s.otherTds)


def HostUserFree(cfg: Config, s: State, f: int, why=None) -> State | None:
    if not _ok(why, s.folioLoc[f] == "reused", f"another user holds the folio (it is {s.folioLoc[f]})"):
        return None
    leaked = (cfg.backing == "buddy" and s.hwpoison[head(cfg, f)]
              and cfg.on("free_pages_prepare.hwpoison"))
    return s._replace(folioLoc=_set(s.folioLoc, f, "leaked" if leaked else "pool"))


def MemoryFailure(cfg: Config, s: State, p: int, why=None) -> State | None:
    f = cfg.folio_of(p)
    if not (_ok(why, s.memErrors < cfg.max_mem_errors, "memory-error budget")
            and _ok(why, quiet(s), "no buggy shutdown in progress (it holds the locks)")
            and _ok(why, s.folioLoc[f] == "gmem", f"folio in guest_memfd (it is {s.folioLoc[f]})")
            and _ok(why, not s.bad[p], "the page is not poisoned yet")):
        return None
    return s._replace(memErrors=s.memErrors + 1, hwpoison=set_flag(cfg, s, p),
                      bad=_set(s.bad, p, True), hostMap=_set(s.hostMap, p, False))


def HugetlbDissolve(cfg: Config, s: State, f: int, why=None) -> State | None:
    if not (_ok(why, "dissolve" in cfg.features, "no dissolve path")
            and _ok(why, cfg.backing == "hugetlb", "a HugeTLB folio")
            and _ok(why, s.folioLoc[f] == "pool", f"folio in the pool (it is {s.folioLoc[f]})")):
        return None
    kept = s.hwpoison[head(cfg, f)] and cfg.on("dissolve.hwpoison")
    return s._replace(folioLoc=_set(s.folioLoc, f, "leaked" if kept else "buddy"))


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


def TdxReleaseHkid(cfg: Config, s: State, why=None) -> State | None:
    if not (_ok(why, s.vm != "destroyed", "vm # destroyed")
            and _ok(why, quiet(s), "no buggy shutdown in progress (it holds the locks)")):
        return None
    return s._replace(vm="destroyed")


FOLIO_ACTIONS = (KvmGmemAllocFolio, KvmGmemPunchHole, KvmGmemEvictInode, FreeFolio,
                 AllocatorReuse, HostUserFree, HugetlbDissolve, CrossTdReuse)
PAGE_ACTIONS = (KvmTdpMapPrivate, TdxAugBusy, KvmTdpPremap, TdxSeptRemoveOk,
                TdxSeptRemoveFailed, TdxSeptRemoveAfterShutdown, TdxZapPremapped,
                KvmGmemHostFault, HostGup, HostUnpin, HostUnmap, MemoryFailure)
GLOBAL_ACTIONS = (KvmGmemConvertShared, KvmGmemConvertPrivate, KvmGmemBuggyCleanup,
                  TdxReleaseHkid, TdxShutdownFlag, OtherTdSeamcall)
ACTION_NAMES = tuple(a.__name__ for a in FOLIO_ACTIONS + PAGE_ACTIONS + GLOBAL_ACTIONS) + (
    "VmmConvertRequest",)


def successors(cfg: Config, s: State) -> Iterator[tuple[str, tuple, State]]:
    """Every step Next allows from s: (action name, parameters, successor).

    A step may leave the state unchanged (a refused conversion that had
    nothing to unmap); TLC's state graph has these self-loops too.
    """
    for f in range(cfg.folios):
        for action in FOLIO_ACTIONS:
            t = action(cfg, s, f)
            if t is not None:
                yield action.__name__, (f,), t
    for p in range(cfg.pages):
        for action in PAGE_ACTIONS:
            t = action(cfg, s, p)
            if t is not None:
                yield action.__name__, (p,), t
        for to in ("private", "shared"):
            t = VmmConvertRequest(cfg, s, p, to)
            if t is not None:
                yield "VmmConvertRequest", (p, to), t
    for action in GLOBAL_ACTIONS:
        t = action(cfg, s)
        if t is not None:
            yield action.__name__, (), t


def reachable(cfg: Config) -> tuple[set[State], set[tuple[State, str, State]]]:
    """The whole reachable graph from Init (for small constants only)."""
    start = init(cfg)
    seen, edges, todo = {start}, set(), [start]
    while todo:
        s = todo.pop()
        for name, _, t in successors(cfg, s):
            edges.add((s, name, t))
            if t not in seen:
                seen.add(t)
                todo.append(t)
    return seen, edges


# ---- the spec's view of a state, for comparison with TLC ----------------------

def folio_name(f: int) -> str:
    return f"f{f + 1}"


def page_name(cfg: Config, p: int) -> str:
    """The TLA+ text of page p: <<f1, 1>>."""
    return f"<<{folio_name(cfg.folio_of(p))}, {p % cfg.pages_per_folio + 1}>>"


def to_tla(cfg: Config, s: State) -> dict:
    """The state as validator.tla_values parses TLC's printout of it."""
    per_page = lambda values: {page_name(cfg, p): v for p, v in enumerate(values)}  # noqa: E731
    if s.convReq is None:
        req = {"page": [], "to": "none"}
    else:
        p = s.convReq[0]
        req = {"page": [folio_name(cfg.folio_of(p)), p % cfg.pages_per_folio + 1],
               "to": s.convReq[1]}
    return {
        "folioLoc": {folio_name(f): v for f, v in enumerate(s.folioLoc)},
        "tdxRefs": per_page(s.tdxRefs), "attr": per_page(s.attr), "sept": per_page(s.sept),
        "mirror": per_page(s.mirror), "hostMap": per_page(s.hostMap),
        "hostPin": per_page(s.hostPin), "hwpoison": per_page(s.hwpoison), "bad": per_page(s.bad),
        "vm": s.vm, "tdx": s.tdx, "otherTds": s.otherTds, "fd": s.fd, "convReq": req,
        "removeFailures": s.removeFailures, "memErrors": s.memErrors,
        "unreset": per_page(s.unreset),
    }


# ---- safety properties (spec section "Properties") ---------------------------

def td_may_own(s: State, p: int) -> bool:
    return (s.sept[p] == "mapped" and s.tdx != "off") or s.unreset[p]


def host_can_touch(cfg: Config, s: State, p: int) -> bool:
    return s.hostMap[p] or s.hostPin[p] or s.folioLoc[cfg.folio_of(p)] == "reused"


def no_host_access_to_td_page(cfg: Config, s: State) -> bool:
    return s.otherTds != "dead_unsafe" and not any(
        td_may_own(s, p) and host_can_touch(cfg, s, p) for p in range(cfg.pages))


def no_private_host_mapping(cfg: Config, s: State) -> bool:
    return all(s.attr[p] == "shared" for p in range(cfg.pages)
               if s.folioLoc[cfg.folio_of(p)] == "gmem" and (s.hostMap[p] or s.hostPin[p]))


def refcount_sound(cfg: Config, s: State) -> bool:
    return all(s.tdxRefs[p] == int(tdx_holds(cfg, s, p)) for p in range(cfg.pages)) and all(
        folio_refs_safe(cfg, s, f) for f in range(cfg.folios)
        if s.folioLoc[f] in ("pool", "reused", "buddy"))


def poison_contained_step(cfg: Config, s: State, t: State) -> bool:
    for p in range(cfg.pages):
        if s.bad[p] and ((t.mirror[p] and not s.mirror[p]) or (t.hostMap[p] and not s.hostMap[p])
                              or (t.hostPin[p] and not s.hostPin[p])):
            return False
    for f in range(cfg.folios):
        if (is_bad(cfg, s, f) and s.folioLoc[f] in ("pool", "detached", "leaked", "buddy")
                and t.folioLoc[f] in ("gmem", "reused")):
            return False
    return True


STATE_PROPERTIES = (("NoHostAccessToTdPage", no_host_access_to_td_page),
                    ("NoPrivateHostMapping", no_private_host_mapping),
                    ("RefcountSound", refcount_sound))


# The kernel function each action stands for (the spec's comments, for reports).
KERNEL_FUNCTION = {
    "Init": "-",
    "KvmGmemAllocFolio": "kvm_gmem_get_folio()",
    "KvmTdpMapPrivate": "kvm_gmem_get_pfn() + tdx_mem_page_aug()",
    "TdxAugBusy": "tdx_mem_page_aug(): TDX_OPERAND_BUSY, tdx_unpin()",
    "KvmTdpPremap": "tdx_sept_set_private_spte() before TD finalize (premap)",
    "TdxZapPremapped": "zap of a premapped page: tdx_unpin()",
    "TdxShutdownFlag": "tdx_buggy_shutdown(): WBINVD done, no more SEAMCALLs",
    "OtherTdSeamcall": "another TD's SEAMCALL on a CPU already flushed",
    "CrossTdReuse": "another TD's kvm_gmem_get_folio() + TDH.MEM.PAGE.AUG",
    "TdxSeptRemoveOk": "tdx_sept_remove_leaf_spte()",
    "TdxSeptRemoveFailed": "tdx_sept_remove_leaf_spte() fails: KVM_BUG_ON()",
    "TdxSeptRemoveAfterShutdown": "tdx_sept_remove_leaf_spte() after buggy shutdown",
    "VmmConvertRequest": "TDG.VP.VMCALL<MapGPA> or the VMM",
    "KvmGmemConvertShared": "kvm_gmem_set_attributes(): to shared",
    "KvmGmemConvertPrivate": "kvm_gmem_set_attributes(): to private",
    "KvmGmemHostFault": "kvm_gmem_fault_user_mapping() + __do_fault()",
    "HostGup": "get_user_pages()",
    "HostUnpin": "unpin_user_page()",
    "HostUnmap": "munmap()",
    "KvmGmemPunchHole": "kvm_gmem_punch_hole()",
    "KvmGmemEvictInode": "kvm_gmem_evict_inode()",
    "FreeFolio": "folio_put(): free_huge_folio() / free_pages_prepare()",
    "AllocatorReuse": "alloc_pages() / alloc_hugetlb_folio()",
    "HostUserFree": "__free_pages() / free_huge_folio() by that user",
    "HugetlbDissolve": "__update_and_free_hugetlb_folio(): pool shrink, offline",
    "MemoryFailure": "memory_failure()",
    "KvmGmemBuggyCleanup": "kvm_gmem_buggy_cleanup()",
    "TdxReleaseHkid": "tdx_mmu_release_hkid()",
}
