"""The spec's variables as one State, Init, and the spec's helper operators.

The helpers carry the names of Poison.tla's operators in Python case (Whole,
HeadPage, Split, FlagOf, ...), so that an action here reads like its TLA+.
Pages are numbered 0..P-1, page i belonging to folio i // pages_per_folio.
"""

from __future__ import annotations

from typing import NamedTuple

from validator.model.designs import Config


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
    unreset: tuple      # per page: TD-private lines never reset (erratum) or dirty (WBINVD failed)
    uptodate: tuple     # per page: PG_uptodate as stored (a whole HugeTLB folio: its head's)


REF_RANGE = range(-1, 3)    # the spec's RefRange
TDX_STATES = ("on", "flushing", "flushing_dirty", "off", "off_dirty")


def init(cfg: Config) -> State:
    n = cfg.pages
    return State(("pool",) * cfg.folios, (0,) * n, ("private",) * n, ("unmapped",) * n,
                 (False,) * n, (False,) * n, (False,) * n, (False,) * n, (False,) * n,
                 "running", "on", "alive", "ok", None, 0, 0, (False,) * n, (False,) * n)


def set_at(values: tuple, index: int, value) -> tuple:
    """The tuple with one item replaced (TLA+'s [f EXCEPT ![i] = v])."""
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
    return set_at(s.hwpoison, target, True)


def split_flags(cfg: Config, s: State, f: int) -> tuple:
    h = s.hwpoison[head(cfg, f)]
    return tuple(h if cfg.folio_of(q) == f else s.hwpoison[q] for q in range(cfg.pages))


def merge_flags(cfg: Config, s: State, f: int) -> tuple:
    if cfg.on("merge.hwpoison"):
        return set_at(s.hwpoison, head(cfg, f), any(s.hwpoison[p] for p in cfg.pages_of(f)))
    return s.hwpoison


# Writes into pages (the spec's section of the same name).
def td_may_own(s: State, p: int) -> bool:
    return (s.sept[p] == "mapped" and s.tdx != "off") or s.unreset[p]


def uptodate_of(cfg: Config, s: State, p: int) -> bool:
    f = cfg.folio_of(p)
    return s.uptodate[p] if split(cfg, s, f) else s.uptodate[head(cfg, f)]


def prepare(cfg: Config, s: State, p: int) -> tuple:
    """PG_uptodate after zeroing p's folio unless it is up to date ("prepare.per_page": the
    pages of it not up to date)."""
    f = cfg.folio_of(p)
    if cfg.on("prepare.per_page"):
        pages = (p,) if split(cfg, s, f) else tuple(cfg.pages_of(f))
        return tuple(s.uptodate[q] or q in pages for q in range(cfg.pages))
    if uptodate_of(cfg, s, p):
        return s.uptodate
    return set_at(s.uptodate, p if split(cfg, s, f) else head(cfg, f), True)


def split_uptodate(cfg: Config, s: State, f: int) -> tuple:
    if cfg.on("prepare.per_page"):
        return s.uptodate
    h = s.uptodate[head(cfg, f)]
    return tuple(h if cfg.folio_of(q) == f else s.uptodate[q] for q in range(cfg.pages))


def merge_uptodate(cfg: Config, s: State, f: int) -> tuple:
    """Merge: the head's flag is the folio's; the tails' stored bits are cleared."""
    if cfg.on("prepare.per_page"):
        return s.uptodate
    h = head(cfg, f)
    return tuple(False if cfg.folio_of(q) == f and q != h else s.uptodate[q]
                 for q in range(cfg.pages))


def merge_wait(cfg: Config, s: State, f: int) -> bool:
    """A split folio merges before it leaves, once TDX holds no reference on it (the
    spec's MergeWait says why host pins are left out)."""
    return not (split(cfg, s, f) and cfg.on("restructure.safe_refcount")) or \
        all(s.tdxRefs[p] == 0 for p in cfg.pages_of(f))


def page_refs_safe(s: State, p: int) -> bool:
    return s.tdxRefs[p] == 0 and not s.hostPin[p]


def folio_refs_safe(cfg: Config, s: State, f: int) -> bool:
    return all(page_refs_safe(s, p) for p in cfg.pages_of(f))


def folio_count(cfg: Config, s: State, f: int) -> int:
    """TDX's references and host pins on the folio (beyond the page cache's)."""
    return sum(s.tdxRefs[p] + s.hostPin[p] for p in cfg.pages_of(f))


def tdx_holds(cfg: Config, s: State, p: int) -> bool:
    return cfg.design == "FolioRef" and (s.sept[p] == "mapped" or s.mirror[p] or s.unreset[p])


def add_refs(s: State, p: int, delta: int) -> tuple | None:
    """tdxRefs with delta added to page p, or None when that leaves REF_RANGE."""
    value = s.tdxRefs[p] + delta
    return set_at(s.tdxRefs, p, value) if value in REF_RANGE else None


def unpin(cfg: Config, check: str) -> int:
    """The reference a tdx_unpin() guarded by `check` puts: 1 if performed, else 0."""
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


def bug_vm(vm: str) -> str:
    return "bugged" if vm == "running" else vm


def truncate(cfg: Config, s: State, f: int) -> State:
    """The folio leaves the page cache (punch hole, evict): unmapped from the host,
    a split HugeTLB folio merged back."""
    host_map = list(s.hostMap)
    for p in cfg.pages_of(f):
        host_map[p] = False
    flags = merge_flags(cfg, s, f) if split(cfg, s, f) else s.hwpoison
    forgotten = tuple(False if cfg.folio_of(q) == f else s.uptodate[q] for q in range(cfg.pages))
    return s._replace(folioLoc=set_at(s.folioLoc, f, "detached"), hostMap=tuple(host_map),
                      hwpoison=flags, uptodate=forgotten)
