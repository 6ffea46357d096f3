"""The protocol as Python, tested against spec/Poison.tla and TLC's own state graph.

    designs     the designs, checks (with their sites) and features, written once; Config
    state       State, Init and the spec's helper operators
    actions     one function per action of Next
    mirror      successors, the reachable graph, a state as TLC prints it
    properties  docs/protocol.md's properties: names, kinds, and the safety predicates

Use it as `from validator import model`; the names below are its API.
"""

from validator.model.actions import (ACTION_NAMES, FOLIO_ACTIONS, GLOBAL_ACTIONS, PAGE_ACTIONS,
                                     AllocatorReuse, CrossTdReuse, FreeFolio, HostGup,
                                     HostUnmap, HostUnpin, HostUserFree, HugetlbDissolve,
                                     KvmGmemAllocFolio, KvmGmemBuggyCleanup, KvmGmemRelease,
                                     KvmGmemConvertPrivate, KvmGmemConvertShared,
                                     KvmGmemEvictInode, KvmGmemHostFault, KvmGmemPunchHole,
                                     KvmTdpMapPrivate, KvmTdpPremap, MemoryFailure,
                                     OtherTdSeamcall, TdxAugBusy, TdxReleaseHkid,
                                     TdxSeptRemoveAfterShutdown, TdxSeptRemoveFailed,
                                     TdxSeptRemoveWbinvdFailed, TdxSeptRemoveFailedInSplit,
                                     TdxSeptRemoveOk, TdxShutdownFlag, TdxZapPremapped,
                                     VmmConvertRequest)
from validator.model.designs import (ALL_CHECKS, ALL_FEATURES, BACKINGS, CHECKS, DEFAULT_FEATURES,
                                     DESIGN_CHECKS, DESIGNS, PROPOSED_CHECKS, UPSTREAM_CHECKS,
                                     CheckSets, Config)
from validator.model.mirror import (KERNEL_FUNCTION, Edge, Transition, folio_name, page_name,
                                    reachable, successors, to_tla)
from validator.model.properties import (STATE_PROPERTIES, STEP_PROPERTIES,
                                        no_host_access_to_td_page, no_host_write_step,
                                        no_private_host_mapping, poison_contained_step,
                                        refcount_sound)
from validator.model.state import (REF_RANGE, TDX_STATES, State, fd_refuses, flag_of,
                                   folio_count, folio_refs_safe, init, is_bad, leaked_on_free,
                                   may_hand_out, page_refs_safe, quiet, tdx_holds, whole)

__all__ = [
    # designs
    "DESIGNS", "BACKINGS", "CheckSets", "CHECKS", "UPSTREAM_CHECKS", "DESIGN_CHECKS",
    "PROPOSED_CHECKS", "ALL_CHECKS", "ALL_FEATURES", "DEFAULT_FEATURES", "Config",
    # state
    "State", "init", "REF_RANGE", "TDX_STATES", "whole", "flag_of", "is_bad", "page_refs_safe",
    "folio_refs_safe", "folio_count", "tdx_holds", "quiet", "may_hand_out", "leaked_on_free",
    "fd_refuses",
    # actions
    "KvmGmemAllocFolio", "KvmTdpMapPrivate", "TdxAugBusy", "KvmTdpPremap", "TdxZapPremapped",
    "TdxSeptRemoveOk", "TdxSeptRemoveFailed", "TdxShutdownFlag", "OtherTdSeamcall",
    "TdxSeptRemoveAfterShutdown", "VmmConvertRequest", "KvmGmemConvertShared",
    "KvmGmemConvertPrivate", "KvmGmemHostFault", "HostGup", "HostUnpin", "HostUnmap",
    "KvmGmemPunchHole", "KvmGmemEvictInode", "FreeFolio", "AllocatorReuse", "CrossTdReuse",
    "HostUserFree", "MemoryFailure", "HugetlbDissolve", "KvmGmemBuggyCleanup", "KvmGmemRelease",
    "TdxReleaseHkid", "TdxSeptRemoveWbinvdFailed", "TdxSeptRemoveFailedInSplit",
    "FOLIO_ACTIONS", "PAGE_ACTIONS", "GLOBAL_ACTIONS", "ACTION_NAMES",
    # mirror
    "Transition", "Edge", "successors", "reachable", "folio_name", "page_name", "to_tla", "KERNEL_FUNCTION",
    # properties
    "STATE_PROPERTIES", "no_host_access_to_td_page", "no_private_host_mapping",
    "no_host_write_step", "STEP_PROPERTIES",
    "refcount_sound", "poison_contained_step",
]
