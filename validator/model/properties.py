"""The properties of docs/protocol.md section 4: how the checker names and runs them,
and the safety properties as predicates over the mirror's states."""

from __future__ import annotations

from dataclasses import dataclass

from validator.model.designs import Config
from validator.model.state import (State, folio_refs_safe, head, is_bad, split, td_may_own,
                                   tdx_holds)


@dataclass(frozen=True)
class Property:
    key: str          # the name used in matrix.toml, JSON and tables
    number: int       # its number in docs/protocol.md section 4
    short: str        # table column header
    tla: str | None   # the definition in spec/Poison.tla (None: derived by poisoncheck)
    kind: str         # "invariant" | "action" | "liveness" | "derived"
    summary: str


PROPERTIES: tuple[Property, ...] = (
    Property("NoHostAccessToTdPage", 1, "1 NoHostAccess", "NoHostAccessToTdPageInv", "invariant",
             "no page the TDX module may own (or, with the erratum, never reset) is mapped, "
             "pinned or reused by the host, and a buggy shutdown hands no TD page back unsafe"),
    Property("NoPrivateHostMapping", 2, "2 NoPrivMap", "NoPrivateHostMappingInv", "invariant",
             "the host maps or pins only shared guest_memfd pages"),
    Property("PoisonContained", 3, "3 PoisonCont", "PoisonContainedProp", "action",
             "a poisoned page is never newly mapped; a poisoned folio is never handed out again"),
    Property("RefcountSound", 4, "4 Refcount", "RefcountSoundInv", "invariant",
             "TDX holds one reference per page it maps, none otherwise; a free folio holds none"),
    Property("ConversionNeedsNoPoisonCheck", 5, "5 ConvNoPoisonChk", None, "derived",
             "HWPoison only: 1-4 hold although conversion does not check poison"),
    Property("NoLeakWithoutFaults", 6, "6 NoLeak", "NoLeakWithoutFaultsProp", "liveness",
             "with no injected faults, every folio returns to an allocator after VM teardown"),
    Property("ConversionCompletes", 7, "7 ConvCompletes", "ConversionCompletesProp", "liveness",
             "a requested conversion eventually succeeds, or the VM is dead"),
    Property("NoHostWriteToTdPage", 8, "8 NoHostWrite", "NoHostWriteToTdPageProp", "action",
             "the kernel never writes (zeroes) a page the TDX module may own"),
    Property("TeardownCompletes", 9, "9 Teardown", "TeardownCompletesProp", "liveness",
             "after the VM is destroyed every folio eventually leaves guest_memfd "
             "(no truncation waits forever)"),
)

BY_KEY = {p.key: p for p in PROPERTIES}
SAFETY = tuple(p for p in PROPERTIES if p.kind in ("invariant", "action"))
LIVENESS = tuple(p for p in PROPERTIES if p.kind == "liveness")
DERIVED_FROM = ("NoHostAccessToTdPage", "NoPrivateHostMapping", "PoisonContained", "RefcountSound")

# Verdicts a matrix entry may expect.  NOT_ESTABLISHED: a deep run that TLC does not finish
# on the reference machine (2 cores, make check-deep's budget): no verdict either way; the
# matrix says at how many states it stopped.
HOLDS, VIOLATED, NOT_APPLICABLE, NOT_ESTABLISHED = "holds", "violated", "-", "not established"
VERDICTS = (HOLDS, VIOLATED, NOT_APPLICABLE, NOT_ESTABLISHED)


# ---- safety properties (spec section "Properties") ---------------------------

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


def no_host_write_step(cfg: Config, s: State, t: State) -> bool:
    """The spec's NoHostWriteToTdPageStep: a zeroing, read off PG_uptodate, writes no page
    the TDX module may own."""
    for q in range(cfg.pages):
        f = cfg.folio_of(q)
        if s.folioLoc[f] != "gmem" or t.folioLoc[f] != "gmem" or any(
                s.attr[r] != t.attr[r] for r in cfg.pages_of(f)):
            continue
        flag = q if cfg.on("prepare.per_page") or split(cfg, s, f) else head(cfg, f)
        if not s.uptodate[flag] and t.uptodate[flag] and td_may_own(s, q):
            return False
    return True


STATE_PROPERTIES = (("NoHostAccessToTdPage", no_host_access_to_td_page),
                    ("NoPrivateHostMapping", no_private_host_mapping),
                    ("RefcountSound", refcount_sound))
# Action properties: (name, holds(cfg, pre, post)).
STEP_PROPERTIES = (("PoisonContained", poison_contained_step),
                   ("NoHostWriteToTdPage", no_host_write_step))
