"""A protocol event with its identities resolved: what the planner hands to the meaning.

The planner (validator/replay/planner.py) knows *which* page or folio of the model an event is
about; it does not decide what the event does to the model.  That is the meaning's job,
written twice on purpose: validator/replay/meaning.py for the Python engine and the IsX
operators of spec/PoisonTrace.tla for the TLC engine, both reading these fields.  So a
wrong mapping of events to actions in one engine shows as a disagreement between them.
"""

from __future__ import annotations

from dataclasses import dataclass

# The kinds a Resolved can have: the protocol events of the probe catalogue that the
# planner resolves (validator/data/probes.toml), by their protocol names.
PAGE_KINDS = frozenset({"aug", "remove", "reclaim", "host_fault", "guest_get_pfn",
                        "set_hwpoison", "memory_failure"})
FOLIO_KINDS = frozenset({"alloc", "cache_add", "cache_delete", "error_folio", "gmem_free",
                         "hugetlb_free", "page_alloc", "hugetlb_alloc", "page_free", "convert"})
VM_KINDS = frozenset({"punch_hole", "vm_bugged", "buggy_cleanup", "tdx_shutdown",
                      "hkid_release"})
KINDS = PAGE_KINDS | FOLIO_KINDS | VM_KINDS


@dataclass(frozen=True, slots=True)
class Resolved:
    """One protocol event on the model's numbers.  Only numbers and fixed words: the TLC
    engine writes these fields into TLA+ (see tlc_engine.write_data)."""

    kind: str                       # the protocol event (one of KINDS)
    folio: int | None = None        # the model's folio (0-based); None: about the VM
    page: int | None = None         # the model's page (0-based, folio * pages + i): PAGE_KINDS
    ret: int = 0                    # the return value the probe printed (0: none printed)
    to: str | None = None           # convert: "private" or "shared"
    pages: tuple[int, ...] = ()     # convert: the pages of the range the trace knows, in order
    exact: bool = False             # page/hugetlb_alloc: the block is exactly this folio
    cached: bool = False            # page_free: guest_memfd's page cache is observed in
                                    # the capture (so far)
    after_gmem_free: bool = False   # page_free: the folio's previous event was guest_memfd's
                                    # own free hook
    lapsed: bool = False            # an exact allocation of this folio came before and no
                                    # page-cache add confirmed it (see Planner._on)
