"""The properties of protocol.md section 4, as the checker runs them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Property:
    key: str          # the name used in matrix.toml, JSON and tables
    number: int       # its number in protocol.md section 4
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
)

BY_KEY = {p.key: p for p in PROPERTIES}
SAFETY = tuple(p for p in PROPERTIES if p.kind in ("invariant", "action"))
LIVENESS = tuple(p for p in PROPERTIES if p.kind == "liveness")
DERIVED_FROM = ("NoHostAccessToTdPage", "NoPrivateHostMapping", "PoisonContained", "RefcountSound")

# Verdicts a matrix entry may expect.
HOLDS, VIOLATED, NOT_APPLICABLE = "holds", "violated", "-"
VERDICTS = (HOLDS, VIOLATED, NOT_APPLICABLE)
