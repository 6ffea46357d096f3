"""The designs, the named checks and the features of spec/Poison.tla, written once.

Everything in poisoncheck that needs them imports them from here (the mirror,
the matrix, the ablation, validate's options); nothing reads them out of
Poison.tla at run time.  tests/model/test_designs_match_spec.py parses the
spec and fails when this module and the spec disagree.

The checks keep the spec's order (upstream, then each design's, then the
proposed ones): the ablation's rows follow it.
"""

from __future__ import annotations

from dataclasses import dataclass

DESIGNS = ("NoHold", "FolioRef", "HWPoison", "BuggyCleanup", "NoMoreSeamcalls")
BACKINGS = ("buddy", "hugetlb", "thp")


@dataclass(frozen=True)
class CheckSets:
    """The spec's check sets, in its order, and where each check is used."""

    upstream: tuple[str, ...]                # UpstreamChecks: performed whatever the design
    by_design: dict[str, tuple[str, ...]]    # DesignChecks: the design's own, beyond upstream
    proposed: tuple[str, ...]                # ProposedChecks: switched on only by Added
    sites: dict[str, frozenset[str]]         # check -> the actions of Next whose guards use it
    conversion: frozenset[str]               # the checks ConversionZap / ConversionDone use

    def present(self, design: str) -> tuple[str, ...]:
        """The checks the design performs."""
        return self.upstream + self.by_design[design]

    def rows(self) -> tuple[str, ...]:
        """Every check once, in the spec's order: upstream, per design, proposed."""
        seen = dict.fromkeys(self.upstream)
        for design in DESIGNS:
            seen.update(dict.fromkeys(self.by_design[design]))
        seen.update(dict.fromkeys(self.proposed))
        return tuple(seen)


def _sites(**by_action: str) -> dict[str, frozenset[str]]:
    """check -> actions, from action -> its checks (space-separated), which reads like
    the spec: each action with the checks its guards call On() or FdRefuses() with."""
    out: dict[str, set[str]] = {}
    for action, checks in by_action.items():
        for check in checks.split():
            out.setdefault(check, set()).add(action)
    return {check: frozenset(actions) for check, actions in out.items()}


CHECKS = CheckSets(
    upstream=("gmem_get_pfn.hwpoison", "gmem_fault.shared", "do_fault.hwpoison",
              "free_pages_prepare.hwpoison", "hugetlb_dequeue.hwpoison",
              "convert.safe_refcount", "restructure.safe_refcount"),
    by_design={
        "NoHold": (),
        "FolioRef": ("tdx_remove_failed.hold_ref", "convert_shared.safe_refcount",
                     "tdx_remove_ok.unpin", "tdx_aug_busy.unpin",
                     "tdx_aug_busy.no_second_unpin", "tdx_premap_zap.unpin"),
        "HWPoison": ("tdx_remove_failed.set_hwpoison", "gmem_fault.hwpoison",
                     "gmem_free.hwpoison"),
        "BuggyCleanup": ("tdx_remove_failed.mark_fd_bugged", "convert.bugged_fd",
                         "punch_hole.bugged_fd", "gmem_free.bugged_fd", "host_fault.bugged_fd",
                         "gmem_release.keeps_bugged_flag"),
        "NoMoreSeamcalls": ("tdx_remove_failed.buggy_shutdown", "tdx_buggy_shutdown.wbinvd"),
    },
    proposed=("convert.hwpoison", "convert.bugged_fd_after_zap", "buggy_cleanup.pins_file",
              "prepare.per_page", "merge.hwpoison", "split.excludes_zap", "dissolve.hwpoison",
              "tdx_buggy_shutdown.flag_first"),
    # Through the helpers they call: MayHandOut, LeakedOnFree, MergeFlags (via Truncate).
    sites=_sites(
        KvmGmemAllocFolio="hugetlb_dequeue.hwpoison",
        KvmTdpMapPrivate="gmem_get_pfn.hwpoison prepare.per_page",
        TdxAugBusy="gmem_get_pfn.hwpoison tdx_aug_busy.unpin tdx_aug_busy.no_second_unpin "
                   "prepare.per_page",
        KvmTdpPremap="gmem_get_pfn.hwpoison prepare.per_page",
        TdxZapPremapped="tdx_premap_zap.unpin",
        TdxSeptRemoveOk="tdx_remove_ok.unpin",
        TdxSeptRemoveFailed="tdx_remove_failed.hold_ref tdx_remove_failed.set_hwpoison "
                            "tdx_remove_failed.mark_fd_bugged tdx_remove_failed.buggy_shutdown "
                            "tdx_buggy_shutdown.wbinvd",
        TdxSeptRemoveWbinvdFailed="tdx_remove_failed.hold_ref tdx_remove_failed.set_hwpoison "
                                  "tdx_remove_failed.mark_fd_bugged "
                                  "tdx_remove_failed.buggy_shutdown tdx_buggy_shutdown.wbinvd",
        TdxSeptRemoveFailedInSplit="tdx_remove_failed.hold_ref tdx_remove_failed.set_hwpoison "
                                   "tdx_remove_failed.mark_fd_bugged "
                                   "tdx_remove_failed.buggy_shutdown tdx_buggy_shutdown.wbinvd "
                                   "split.excludes_zap",
        OtherTdSeamcall="tdx_buggy_shutdown.flag_first",
        VmmConvertRequest="convert.bugged_fd",
        KvmGmemConvertShared="convert.bugged_fd_after_zap convert.hwpoison "
                             "convert_shared.safe_refcount restructure.safe_refcount "
                             "prepare.per_page",
        KvmGmemConvertPrivate="convert.bugged_fd convert.hwpoison convert.safe_refcount "
                              "restructure.safe_refcount merge.hwpoison prepare.per_page",
        KvmGmemHostFault="gmem_fault.shared do_fault.hwpoison gmem_fault.hwpoison "
                         "host_fault.bugged_fd prepare.per_page",
        KvmGmemPunchHole="punch_hole.bugged_fd merge.hwpoison restructure.safe_refcount",
        KvmGmemEvictInode="merge.hwpoison restructure.safe_refcount buggy_cleanup.pins_file",
        KvmGmemRelease="gmem_release.keeps_bugged_flag buggy_cleanup.pins_file",
        FreeFolio="free_pages_prepare.hwpoison gmem_free.hwpoison gmem_free.bugged_fd",
        AllocatorReuse="hugetlb_dequeue.hwpoison",
        CrossTdReuse="hugetlb_dequeue.hwpoison",
        HostUserFree="free_pages_prepare.hwpoison",
        HugetlbDissolve="dissolve.hwpoison",
    ),
    # ConversionCompletes rests on the fairness of ConversionZap (any TdxSeptRemove
    # case) and ConversionDone (either conversion ioctl).
    conversion=frozenset({
        "tdx_remove_ok.unpin", "tdx_remove_failed.hold_ref", "tdx_remove_failed.set_hwpoison",
        "tdx_remove_failed.mark_fd_bugged", "tdx_remove_failed.buggy_shutdown",
        "tdx_buggy_shutdown.wbinvd", "tdx_premap_zap.unpin", "convert.bugged_fd",
        "convert.bugged_fd_after_zap", "convert.hwpoison", "convert.safe_refcount", "convert_shared.safe_refcount",
        "restructure.safe_refcount", "merge.hwpoison", "prepare.per_page", "split.excludes_zap"}),
)

# The same checks as sets, for membership and set algebra.
UPSTREAM_CHECKS = frozenset(CHECKS.upstream)
DESIGN_CHECKS = {design: frozenset(checks) for design, checks in CHECKS.by_design.items()}
PROPOSED_CHECKS = frozenset(CHECKS.proposed)
ALL_CHECKS = frozenset(CHECKS.rows())

ALL_FEATURES = frozenset({"in_place_conversion", "dissolve", "cross_td", "pw_erratum",
                          "mf_ignored", "wbinvd_fails", "split_race"})
# What a run has unless it says otherwise (the matrix, validate): the conversion series.
DEFAULT_FEATURES = frozenset({"in_place_conversion"})


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
        if self.backing not in BACKINGS:
            raise ValueError(f"unknown backing {self.backing!r}")
        unknown = (set(self.disabled) | set(self.added)) - ALL_CHECKS
        if unknown:
            raise ValueError(f"unknown check(s) {', '.join(sorted(unknown))}")
        if not set(self.features) <= ALL_FEATURES:
            raise ValueError(f"unknown feature(s) {sorted(set(self.features) - ALL_FEATURES)}")
        # The spec's On(check): computed once, asked on every guard.
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
