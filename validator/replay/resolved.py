"""A protocol event with its identities resolved: what the planner hands to the meaning.

The planner (validator/replay/planner.py) knows *which* page or folio of the model an event is
about; it does not decide what the event does to the model.  That is the meaning's job,
written twice on purpose: validator/replay/meaning.py for the Python engine and the IsX
operators of spec/PoisonTrace.tla for the TLC engine, both reading these fields.  So a
wrong mapping of events to actions in one engine shows as a disagreement between them.
"""

from __future__ import annotations

from typing import NamedTuple

# The kinds a Resolved can have: the protocol events of the probe catalogue that the
# planner resolves (validator/data/probes.toml), by their protocol names, grouped by what
# names the folio or page they are about.
PAGE_KINDS = frozenset({"aug", "remove", "reclaim", "host_fault", "guest_get_pfn",
                        "set_hwpoison", "memory_failure"})      # a pfn: that page
PFN_FOLIO_KINDS = frozenset({"error_folio", "gmem_free", "hugetlb_free"})   # a pfn: its folio
BLOCK_KINDS = frozenset({"page_alloc", "hugetlb_alloc", "page_free"})   # 2^order pages at a pfn
GMEM_FREE_KINDS = frozenset({"gmem_free", "hugetlb_free"})  # guest_memfd's own free-path hooks
FOLIO_KINDS = PFN_FOLIO_KINDS | BLOCK_KINDS | frozenset({"alloc", "cache_add", "cache_delete",
                                                         "convert"})
VM_KINDS = frozenset({"punch_hole", "vm_bugged", "buggy_cleanup", "tdx_shutdown",
                      "hkid_release"})
KINDS = PAGE_KINDS | FOLIO_KINDS | VM_KINDS

# A return value that is not a small number (unread, or beyond TLC's 32-bit integers): the
# events' meanings only tell 0 and a few -errno apart, so it stands for "some other error".
RET_OTHER = -(1 << 31) + 1
RET_MIN, RET_LIMIT = -(1 << 31), 1 << 31        # the small numbers: RET_MIN < ret < RET_LIMIT


def small_ret(value) -> int:
    """A printed return value as the meanings read it: itself when it is a 32-bit number
    (TLC's integers), else RET_OTHER."""
    if type(value) is int and RET_MIN < value < RET_LIMIT:
        return value
    return RET_OTHER


class Resolved(NamedTuple):
    """One protocol event on the model's numbers.  Only numbers and fixed words: the TLC
    engine writes these fields into TLA+ (see tlc_engine.write_data).  A tuple: cheap to
    build, and equal events hash alike, so the replay remembers each meaning once."""

    kind: str                       # the protocol event (one of KINDS)
    folio: int | None = None        # the model's folio (0-based); None: about the VM
    page: int | None = None         # the model's page (0-based, folio * pages + i): PAGE_KINDS
    ret: int = 0                    # the return value the probe printed (0: none printed),
                                    # as small_ret() gives it
    to: str | None = None           # convert: "private" or "shared"
    pages: tuple[int, ...] = ()     # convert: the pages of the range the trace knows, in order
    exact: bool = False             # page/hugetlb_alloc: the block is exactly this folio
    cached: bool = False            # page_free: guest_memfd's page cache is observed in
                                    # the capture (so far)
    after_gmem_free: bool = False   # page_free: the folio's previous event was guest_memfd's
                                    # own free hook
    lapsed: bool = False            # an exact allocation of this folio came before and no
                                    # page-cache add confirmed it (see Planner._on)
