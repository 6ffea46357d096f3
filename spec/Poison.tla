------------------------------- MODULE Poison -------------------------------
(***************************************************************************)
(* What happens to a TDX guest's private page when KVM or the TDX module   *)
(* hits a bug (KVM_BUG_ON) while the page is still mapped in the S-EPT.    *)
(*                                                                         *)
(* guest_memfd hands out folios (4K from the buddy allocator or huge ones  *)
(* from HugeTLB); KVM maps their pages into the TD (TDH.MEM.PAGE.AUG) and  *)
(* removes them again (BLOCK, TRACK, PAGE.REMOVE).  A removal can fail     *)
(* only through a bug; the page then stays owned by the TDX module while   *)
(* KVM's own mirror SPTE is already gone.  The five designs of the July    *)
(* 2025 LKML thread ("[RFC PATCH 08/21] KVM: TDX: Increase/decrease folio  *)
(* ref for huge pages") differ in what they do next; Design selects one.   *)
(*                                                                         *)
(* Every safety-relevant check in a guard has a stable name, tied to the   *)
(* kernel code that performs it.  A mutant is a set of disabled checks     *)
(* (Disabled); a check the thread proposed but the design lacks can be     *)
(* switched on (Added).  This module knows nothing about TLC: bounds,      *)
(* model values and symmetry live in MCPoison.tla and the generated cfgs.  *)
(***************************************************************************)
EXTENDS Integers, FiniteSets

CONSTANTS
    Folios,             \* folios the allocator can hand out (model values)
    PagesPerFolio,      \* 1 = an order-0 buddy folio; 2 = a HugeTLB folio (stands for 512 pages)
    Backing,            \* "buddy", "hugetlb" or "thp": where guest_memfd gets its folios
    Design,             \* what TDX / guest_memfd do after a failed removal
    MaxRemoveFailures,  \* how many S-EPT removals may fail (bugs in KVM or the TDX module)
    MaxMemErrors,       \* how many hardware memory errors may hit guest_memfd pages
    Disabled,           \* checks switched off (mutants)
    Added,              \* proposed checks switched on (see ProposedChecks)
    Features            \* optional kernel paths present (see AllFeatures)

Designs == {"NoHold", "FolioRef", "HWPoison", "BuggyCleanup", "NoMoreSeamcalls"}

(***************************************************************************)
(* The checks.  Upstream ones exist whatever the design.                   *)
(***************************************************************************)
UpstreamChecks ==
  { "gmem_get_pfn.hwpoison",      \* __kvm_gmem_get_pfn(): folio_test_hwpoison() -> -EHWPOISON
    "gmem_fault.shared",          \* kvm_gmem_fault_user_mapping(): SIGBUS unless the index is shared
    "do_fault.hwpoison",          \* __do_fault(): PageHWPoison(vmf->page) -> VM_FAULT_HWPOISON
    "free_pages_prepare.hwpoison",\* free_pages_prepare(): a poisoned order-0 page never reaches the buddy lists
    "hugetlb_dequeue.hwpoison",   \* dequeue_hugetlb_folio_node_exact(): skips folio_test_hwpoison() folios
    "convert.safe_refcount",      \* kvm_gmem_is_safe_for_conversion(): refcount == filemap refs + 1, else -EAGAIN
    "restructure.safe_refcount" } \* HugeTLB split/merge waits until only filemap refs remain

DesignChecks ==
  [ NoHold          |-> {},
    FolioRef        |-> { "tdx_remove_failed.hold_ref",       \* tdx_sept_remove_leaf_spte(): no tdx_unpin() on error
                          "convert_shared.safe_refcount",     \* Yan's POC: kvm_gmem_private_has_safe_refcount() before private -> shared
                          \* RFC patch 08's puts of the references AUG took (docs/kernel-facts.md 9.4);
                          \* a mutant that disables one misses a put, or puts twice:
                          "tdx_remove_ok.unpin",              \* tdx_unpin() after a successful removal
                          "tdx_aug_busy.unpin",               \* tdx_mem_page_aug(): tdx_unpin() on TDX_OPERAND_BUSY
                          "tdx_aug_busy.no_second_unpin",     \* ... and its caller does not put the page again
                          "tdx_premap_zap.unpin" },           \* zap of a page premapped before TD finalize: tdx_unpin()
    HWPoison        |-> { "tdx_remove_failed.set_hwpoison",   \* TDX sets PG_hwpoison on the page it could not remove
                          "gmem_fault.hwpoison",              \* guest_memfd refuses host faults on poisoned folios
                          "gmem_free.hwpoison" },             \* guest_memfd leaks poisoned HugeTLB folios on free
    BuggyCleanup    |-> { "tdx_remove_failed.mark_fd_bugged", \* kvm_gmem_buggy_cleanup(): fd->bugged = true, work queued
                          "convert.bugged_fd",                \* the conversion ioctl refuses a bugged fd on entry
                                                              \* (like vm_dead in kvm_vm_ioctl()), before its zap
                          "punch_hole.bugged_fd",             \* fallocate(PUNCH_HOLE) refuses a bugged fd
                          "gmem_free.bugged_fd",              \* the fd's folios go to memory_failure(), not back
                                                              \* (Rick: "instead of returning the pages")
                          "host_fault.bugged_fd",             \* host faults on a bugged fd get SIGBUS: the
                                                              \* conversion's own zap may bug the fd after its
                                                              \* entry check, and the flip is unconditional
                          "gmem_release.keeps_bugged_flag" }, \* the flag outlives kvm_gmem_release(): kept on
                                                              \* the inode, which lives until its folios are freed
    NoMoreSeamcalls |-> { "tdx_remove_failed.buggy_shutdown", \* tdx_buggy_shutdown(): no SEAMCALL succeeds again
                          "tdx_buggy_shutdown.wbinvd" } ]     \* ... after WBINVD on every CPU

\* Checks someone in the thread proposed that no design above performs.
ProposedChecks ==
  { "convert.hwpoison",           \* conversion refuses a poisoned range
    "convert.bugged_fd_after_zap",\* the conversion ioctl re-checks the flag after its own zap
    "buggy_cleanup.pins_file",    \* the queued cleanup holds a file reference until it ran
    "prepare.per_page",           \* PG_uptodate kept per page: zeroing skips pages up to date
    "merge.hwpoison",        \* a HugeTLB merge folds its pages' PG_hwpoison into the folio's flag
    "split.excludes_zap",         \* a HugeTLB split excludes every zap of the folio (mmu_lock held
                                  \* across the flag copy, or every zap under filemap_invalidate_lock)
    "dissolve.hwpoison",          \* Jiaqi Yan: a dissolved folio marked poisoned frees only healthy pages
    "tdx_buggy_shutdown.flag_first" } \* set "no more SEAMCALLs" before the WBINVD IPIs, not after

\* Kernel paths a configuration may have or lack.
AllFeatures ==
  { "in_place_conversion",        \* the guest_memfd conversion series: private <-> shared in place, mmap
    "dissolve",                   \* free HugeTLB folios dissolved to the buddy allocator (pool shrink,
                                  \* memory offline, alloc_contig_range())
    "cross_td",                   \* another TD's guest_memfd may get a freed folio and AUG it
    "pw_erratum",                 \* X86_BUG_TDX_PW_MCE (SPR/EMR): a host partial write to a TD
                                  \* page's lines poisons them; tdx_quirk_reset_paddr() resets a
                                  \* page after a successful removal
    "mf_ignored",                 \* the 1G series: guest_memfd's folios are off the LRU, so
                                  \* memory_failure() sets PG_hwpoison and stops (MF_IGNORED):
                                  \* no host unmap, no error_remove_folio, no KVM zap
    "wbinvd_fails",               \* TDH.PHYMEM.PAGE.WBINVD fails after a successful PAGE.REMOVE
                                  \* (LKML, April 2026): the page leaves the S-EPT, the TD's
                                  \* lines may stay dirty in a cache, and it is never reset
    "split_race" }                \* a zap without filemap_invalidate_lock (memslot deletion) may
                                  \* fail while a HugeTLB split copies the head's flags

Checks == UpstreamChecks \cup UNION {DesignChecks[d] : d \in Designs} \cup ProposedChecks

ASSUME DesignAssumption == Design \in Designs
\* "thp": a huge buddy folio (Michael Roth's THP-backed guest_memfd, under RFC v1 of the
\* TDX huge-page series): never split in place, poisoned per raw page (memory_failure()
\* sets the page's PG_hwpoison; folio_test_hwpoison() reads the head), freed at high
\* order, where free_pages_prepare() checks nothing (docs/kernel-facts.md 9.3).
ASSUME BackingAssumption == Backing \in {"buddy", "hugetlb", "thp"}
\* Upstream guest_memfd allocates order-0 folios only; huge folios come from HugeTLB.
ASSUME FolioSizeAssumption == PagesPerFolio \in Nat \ {0} /\ (Backing = "buddy" => PagesPerFolio = 1)
ASSUME BudgetAssumption == MaxRemoveFailures \in Nat /\ MaxMemErrors \in Nat
ASSUME CheckAssumption == Disabled \subseteq Checks /\ Added \subseteq Checks
ASSUME FeatureAssumption == Features \subseteq AllFeatures

\* Is the check performed in this configuration?
On(check) == check \in (UpstreamChecks \cup DesignChecks[Design] \cup Added) \ Disabled

Pages == Folios \X (1..PagesPerFolio)
FolioOf(p) == p[1]
PagesOf(f) == {f} \X (1..PagesPerFolio)

\* Where a folio is.  "detached": truncated out of the page cache while
\* somebody still holds a reference; "reused": handed to another host user;
\* "leaked": freed but deliberately kept out of every allocator; "buddy": a
\* dissolved HugeTLB folio's pages on the buddy allocator's free lists.
Locations == {"pool", "gmem", "detached", "reused", "leaked", "buddy"}

\* "flushing": tdx_buggy_shutdown() has started (IPIs, WBINVD per CPU) but not yet set its
\* flag; "flushing_dirty": meanwhile a CPU that had already written back its caches ran a
\* SEAMCALL for another TD, so that TD's private lines are dirty in a cache again.
TdxStates == {"on", "flushing", "flushing_dirty", "off", "off_dirty"}

\* TDX's references per page, as the model tracks them: a step that would leave this
\* range is not taken (RefcountSound is already broken one step earlier).
RefRange == -1..2
Erratum == "pw_erratum" \in Features

NoReq == [page |-> <<>>, to |-> "none"]

VARIABLES
    folioLoc,       \* [Folios -> Locations]
    tdxRefs,        \* [Pages -> RefRange]: folio references TDX took for the page (FolioRef: one
                    \* while it maps it); they count in the folio's refcount with host pins
    attr,           \* [Pages -> {"private","shared"}]: guest_memfd shareability of the index
    sept,           \* [Pages -> {"unmapped","mapped"}]: the TDX module's S-EPT leaf; PAMT owner is the TD while mapped
    mirror,         \* [Pages -> BOOLEAN]: KVM's mirror SPTE, the only view guest_memfd has
    hostMap,        \* [Pages -> BOOLEAN]: a host page-table mapping of the guest_memfd page (mmap)
    hostPin,        \* [Pages -> BOOLEAN]: a host reference beyond the mapping (GUP pin)
    hwpoison,       \* [Pages -> BOOLEAN]: each struct page's PG_hwpoison bit as stored; the checks
                    \* of a whole HugeTLB folio read its head's (page 1) only
    bad,            \* [Pages -> BOOLEAN]: the page was poisoned (memory error, TDX): what properties judge
    vm,             \* "running" | "bugged" (KVM_BUG_ON: no vCPU runs again) | "destroyed" (HKID released)
    tdx,            \* TdxStates: "off" (buggy shutdown after WBINVD), "off_dirty" (dirty lines remain)
    otherTds,       \* "alive" | "dead" | "dead_unsafe": the other TDs on the host (blast radius);
                    \* "dead_unsafe": killed by a buggy shutdown that leaves their pages unsafe for
                    \* the host that gets them back (dirty private lines, or never reset with the
                    \* erratum: no reclaim succeeds after the shutdown)
    fd,             \* BuggyCleanup: "ok" | "bugged" (cleanup queued) | "cleaned" (cleanup ran)
    convReq,        \* the conversion the guest asked for, not yet done: NoReq or [page, to]
    removeFailures, \* removals that failed so far
    memErrors,      \* memory errors so far
    unreset,        \* [Pages -> BOOLEAN]: the page may hold TD-private lines the host must not
                    \* meet: "pw_erratum": never reset (only a successful removal resets it);
                    \* "wbinvd_fails": maybe dirty in a cache (a buggy shutdown writes them back)
    uptodate        \* [Pages -> BOOLEAN]: PG_uptodate as stored (a whole HugeTLB folio: its
                    \* head's): guest_memfd zeroes a folio that is not up to date before use

\* Variable groups, so that an action's UNCHANGED names what it leaves alone by concern.
gmemVars == << folioLoc, attr, convReq >>           \* guest_memfd and the allocators
dataVars == << uptodate >>                          \* what the kernel wrote into the pages
tdVars == << sept, mirror, tdxRefs, unreset >>      \* the TD's hold on its pages
hostVars == << hostMap, hostPin >>                  \* the host's mappings and pins
poisonVars == << hwpoison, bad >>                   \* poison: as stored, and as judged
vmVars == << vm, tdx, otherTds, fd >>               \* the VM, the TDX module, the others, the fd
countVars == << removeFailures, memErrors >>        \* bounds on the failures injected

vars == << gmemVars, tdVars, hostVars, poisonVars, vmVars, countVars, dataVars >>

TypeOK ==
    /\ folioLoc \in [Folios -> Locations]
    /\ tdxRefs \in [Pages -> RefRange]
    /\ attr \in [Pages -> {"private", "shared"}]
    /\ sept \in [Pages -> {"unmapped", "mapped"}]
    /\ mirror \in [Pages -> BOOLEAN]
    /\ hostMap \in [Pages -> BOOLEAN]
    /\ hostPin \in [Pages -> BOOLEAN]
    /\ hwpoison \in [Pages -> BOOLEAN]
    /\ bad \in [Pages -> BOOLEAN]
    /\ vm \in {"running", "bugged", "destroyed"}
    /\ tdx \in TdxStates
    /\ otherTds \in {"alive", "dead", "dead_unsafe"}
    /\ fd \in {"ok", "bugged", "cleaned"}
    /\ convReq \in {NoReq} \cup [page : Pages, to : {"private", "shared"}]
    /\ removeFailures \in 0..MaxRemoveFailures
    /\ memErrors \in 0..MaxMemErrors
    /\ unreset \in [Pages -> BOOLEAN]
    /\ uptodate \in [Pages -> BOOLEAN]

-----------------------------------------------------------------------------
(***************************************************************************)
(* Helpers                                                                 *)
(***************************************************************************)
\* HugeTLB: the folio is whole (not split for shared use) iff all its pages are private.
Whole(f) == \A p \in PagesOf(f) : attr[p] = "private"

(***************************************************************************)
(* PG_hwpoison as the kernel stores it (docs/kernel-facts.md 9.1).  A split     *)
(* HugeTLB folio's pages are folios of their own; a whole one is checked   *)
(* through its head.  guest_memfd merges a split folio before it leaves    *)
(* (punch hole merges before truncating, release merges in the last put). *)
(***************************************************************************)
HeadPage(f) == <<f, 1>>
Split(f) == Backing = "hugetlb" /\ folioLoc[f] = "gmem" /\ ~Whole(f)
\* folio_test_hwpoison() of the folio page p belongs to.
FlagOf(p) == IF Split(FolioOf(p)) THEN hwpoison[p] ELSE hwpoison[HeadPage(FolioOf(p))]
HasFlag(f) == \E p \in PagesOf(f) : hwpoison[p]
IsBad(f) == \E p \in PagesOf(f) : bad[p]
\* Poisoning page p: on a whole HugeTLB folio memory_failure() and TDX set the folio's flag
\* (folio_set_hugetlb_hwpoison(); p goes on the folio's raw-error list), else p's own.
SetFlag(p) == IF Backing = "hugetlb" /\ ~Split(FolioOf(p))
              THEN [hwpoison EXCEPT ![HeadPage(FolioOf(p))] = TRUE]
              ELSE [hwpoison EXCEPT ![p] = TRUE]
\* guestmem_hugetlb_split_folio(): each tail's flags become a copy of the head's.
SplitFlags(f) == [q \in Pages |-> IF FolioOf(q) = f THEN hwpoison[HeadPage(f)] ELSE hwpoison[q]]
\* guestmem_hugetlb_merge_folio(): prep_compound_page() leaves the folio page 0's flags, a
\* tail's PG_hwpoison is not folded in; the proposed check folds it.
MergeFlags(f) == IF On("merge.hwpoison") THEN [hwpoison EXCEPT ![HeadPage(f)] = HasFlag(f)]
                 ELSE hwpoison

(***************************************************************************)
(* Writes into pages (the 1G series; 7.2 for order-0 folios).  Before a    *)
(* folio is used, guest_memfd zeroes it unless it is up to date: the whole *)
(* folio as the fault sees it (kvm_gmem_prepare_folio(): folio_zero_user() *)
(* on the guest path, clear_highpage() on a host fault), then marks it up   *)
(* to date.  PG_uptodate is a folio flag: split copies the head's to the   *)
(* tails, merge keeps page 0's (docs/kernel-facts-fidelity.md 4).          *)
(***************************************************************************)
\* The TDX module may still own the page: it is in the S-EPT, and the module has not been
\* shut down with its caches written back; or it may hold TD-private lines the host must
\* not meet (never reset with the erratum, dirty after a failed WBINVD).
TdMayOwn(p) == (sept[p] = "mapped" /\ tdx # "off") \/ unreset[p]
UptodateOf(p) == IF Split(FolioOf(p)) THEN uptodate[p] ELSE uptodate[HeadPage(FolioOf(p))]
\* The pages a zeroing of p's folio writes: a split HugeTLB folio's pages are folios of
\* their own.
FolioPagesOf(p) == IF Split(FolioOf(p)) THEN {p} ELSE PagesOf(FolioOf(p))
\* Zero p's folio unless it is up to date (property 8 reads the write off the flag).  The
\* proposed "prepare.per_page" keeps the flag per page and zeroes only the pages of the
\* folio not yet up to date.
Prepare(p) ==
    uptodate' = IF On("prepare.per_page")
                THEN [q \in Pages |-> uptodate[q] \/ q \in FolioPagesOf(p)]
                ELSE IF UptodateOf(p) THEN uptodate
                ELSE [uptodate EXCEPT ![IF Split(FolioOf(p)) THEN p ELSE HeadPage(FolioOf(p))] = TRUE]
\* guestmem_hugetlb_merge_folio(): page 0's flag is the folio's; the tails' stored bits mean
\* nothing until a split copies the head's over them, so the model clears them (fewer states).
MergeUptodate(f) ==
    IF On("prepare.per_page") THEN uptodate
    ELSE [q \in Pages |-> IF FolioOf(q) = f /\ q # HeadPage(f) THEN FALSE ELSE uptodate[q]]
\* guestmem_hugetlb_split_folio() copies the head's PG_uptodate to the tails too.
SplitUptodate(f) ==
    IF On("prepare.per_page") THEN uptodate
    ELSE [q \in Pages |-> IF FolioOf(q) = f THEN uptodate[HeadPage(f)] ELSE uptodate[q]]

\* Only guest_memfd's page-cache references remain on the page (on the small
\* folio it is once a HugeTLB folio is split) or on the whole folio.
PageRefsSafe(p) == tdxRefs[p] = 0 /\ ~hostPin[p]
FolioRefsSafe(f) == \A p \in PagesOf(f) : PageRefsSafe(p)

\* The folio's refcount beyond guest_memfd's page-cache references: TDX's references and
\* host pins, summed over its pages (folio_ref_add() and folio_put_refs() act on the folio).
RECURSIVE SumRefs(_)
SumRefs(S) == IF S = {} THEN 0
              ELSE LET p == CHOOSE q \in S : TRUE
                   IN tdxRefs[p] + (IF hostPin[p] THEN 1 ELSE 0) + SumRefs(S \ {p})
FolioCount(f) == SumRefs(PagesOf(f))

\* FolioRef: TDX holds a reference for each page it maps (S-EPT, or premapped in the mirror).
\* A page whose WBINVD failed is held too: the failure path keeps the reference.
TdxHolds(p) == Design = "FolioRef" /\ (sept[p] = "mapped" \/ mirror[p] \/ unreset[p])
\* tdxRefs after adding d, or no step if that leaves RefRange.
AddRefs(p, d) == /\ tdxRefs[p] + d \in RefRange
                 /\ tdxRefs' = [tdxRefs EXCEPT ![p] = @ + d]
Unpin(check) == IF On(check) THEN 1 ELSE 0

\* While tdx_buggy_shutdown() runs, the failing zap still holds mmu_lock and the file's
\* invalidate lock: guest_memfd and KVM paths of this VM wait for it.
Quiet == tdx \notin {"flushing", "flushing_dirty"}

\* An allocator hands out a free folio.  The buddy allocator checks nothing
\* here in production: check_new_pages() runs only with debug options.
MayHandOut(f) ==
    \/ folioLoc[f] = "buddy"
    \/ /\ folioLoc[f] = "pool"
       /\ (Backing = "hugetlb" /\ hwpoison[HeadPage(f)]) => ~On("hugetlb_dequeue.hwpoison")

\* The free path decides whether a freed folio is kept out of circulation.
LeakedOnFree(f) ==
    \/ Backing = "buddy" /\ hwpoison[HeadPage(f)] /\ On("free_pages_prepare.hwpoison")
    \/ Backing = "hugetlb" /\ hwpoison[HeadPage(f)] /\ On("gmem_free.hwpoison")
    \/ fd # "ok" /\ On("gmem_free.bugged_fd")

FdRefuses(check) == fd # "ok" /\ On(check)

\* KVM_BUG_ON(): the VM is marked bugged and dead; no vCPU runs again.
BugVm == vm' = IF vm = "running" THEN "bugged" ELSE vm

\* How the file's pages start: private.  A TD's guest_memfd cannot be made with
\* GUEST_MEMFD_FLAG_INIT_SHARED (kvm_gmem_create() refuses it for a VM with private memory);
\* trace validation overrides this with what the capture shows of each file
\* (PoisonTrace.cfg: InitAttrs <- TraceInitAttrs), a non-TD's file may start shared.
InitAttrs == {[p \in Pages |-> "private"]}

-----------------------------------------------------------------------------
Init ==
    /\ folioLoc = [f \in Folios |-> "pool"]
    /\ tdxRefs = [p \in Pages |-> 0]
    /\ attr \in InitAttrs
    /\ sept = [p \in Pages |-> "unmapped"]
    /\ mirror = [p \in Pages |-> FALSE]
    /\ hostMap = [p \in Pages |-> FALSE]
    /\ hostPin = [p \in Pages |-> FALSE]
    /\ hwpoison = [p \in Pages |-> FALSE]
    /\ bad = [p \in Pages |-> FALSE]
    /\ vm = "running"
    /\ tdx = "on"
    /\ otherTds = "alive"
    /\ fd = "ok"
    /\ convReq = NoReq
    /\ removeFailures = 0
    /\ memErrors = 0
    /\ unreset = [p \in Pages |-> FALSE]
    /\ uptodate = [p \in Pages |-> FALSE]

-----------------------------------------------------------------------------
(***************************************************************************)
(* guest_memfd and KVM                                                     *)
(***************************************************************************)

\* kvm_gmem_get_folio() -> __filemap_get_folio(FGP_CREAT): a folio from the
\* buddy allocator or the HugeTLB pool enters guest_memfd's page cache.  A
\* folio always fills the same file range, and the range keeps its
\* shareability (per-inode metadata) across punch hole and refill.
KvmGmemAllocFolio(f) ==
    /\ vm # "destroyed"
    /\ Quiet
    /\ folioLoc[f] = "pool"
    /\ MayHandOut(f)
    /\ folioLoc' = [folioLoc EXCEPT ![f] = "gmem"]
    \* a range with shared indices gets a split folio
    /\ hwpoison' = IF Backing = "hugetlb" /\ ~Whole(f) THEN SplitFlags(f) ELSE hwpoison
    \* a folio fresh from an allocator is not up to date
    /\ uptodate' = [q \in Pages |-> IF FolioOf(q) = f THEN FALSE ELSE uptodate[q]]
    /\ UNCHANGED << tdVars, hostVars, vmVars, countVars, attr, bad, convReq >>

\* A guest EPT violation on a private GPA: kvm_mmu_faultin_pfn_gmem() ->
\* kvm_gmem_get_pfn() -> tdx_sept_set_private_spte() -> tdx_mem_page_aug().
\* FolioRef also takes a folio reference (folio_ref_add(), RFC patch 08).  Before the TD
\* is finalized the same fault premaps and TDH.MEM.PAGE.ADD follows: this step is
\* both together (KvmTdpPremap is a premap not yet added).
CanMapPrivate(p) ==
    /\ vm = "running"
    /\ tdx = "on"
    /\ folioLoc[FolioOf(p)] = "gmem"
    /\ attr[p] = "private"
    /\ ~mirror[p]
    /\ sept[p] = "unmapped"
    /\ FlagOf(p) => ~On("gmem_get_pfn.hwpoison")

KvmTdpMapPrivate(p) ==
    /\ CanMapPrivate(p)
    /\ mirror' = [mirror EXCEPT ![p] = TRUE]
    /\ sept' = [sept EXCEPT ![p] = "mapped"]
    /\ IF Design = "FolioRef" THEN AddRefs(p, 1) ELSE UNCHANGED tdxRefs
    \* the page now holds lines in the TD's private key
    /\ unreset' = IF Erratum THEN [unreset EXCEPT ![p] = TRUE] ELSE unreset
    /\ Prepare(p)        \* kvm_gmem_get_pfn() zeroes the folio first
    /\ UNCHANGED << hostVars, poisonVars, vmVars, countVars, gmemVars >>

\* FolioRef: TDH.MEM.PAGE.AUG returns TDX_OPERAND_BUSY; tdx_mem_page_aug() puts the
\* reference it took and KVM retries the fault later.
TdxAugBusy(p) ==
    /\ Design = "FolioRef"
    /\ CanMapPrivate(p)
    /\ AddRefs(p, 1 - Unpin("tdx_aug_busy.unpin") - (1 - Unpin("tdx_aug_busy.no_second_unpin")))
    /\ Prepare(p)
    /\ UNCHANGED << hostVars, poisonVars, vmVars, countVars, gmemVars, sept, mirror, unreset >>

\* FolioRef: a fault before the TD is finalized (KVM_TDX_INIT_MEM_REGION) premaps the
\* page in the mirror and takes the reference; TDH.MEM.PAGE.ADD has not run yet.  Only
\* FolioRef's reference tells a premap from a mapping, so other designs skip it.
KvmTdpPremap(p) ==
    /\ Design = "FolioRef"
    /\ CanMapPrivate(p)
    /\ mirror' = [mirror EXCEPT ![p] = TRUE]
    /\ AddRefs(p, 1)
    /\ Prepare(p)
    /\ UNCHANGED << hostVars, poisonVars, vmVars, countVars, gmemVars, sept, unreset >>

\* The zap of a premapped page: no SEAMCALL, so it cannot fail; tdx_unpin().
TdxZapPremapped(p) ==
    /\ mirror[p]
    /\ sept[p] = "unmapped"
    /\ Quiet
    /\ mirror' = [mirror EXCEPT ![p] = FALSE]
    /\ AddRefs(p, -Unpin("tdx_premap_zap.unpin"))
    /\ UNCHANGED << dataVars, hostVars, poisonVars, vmVars, countVars, gmemVars, sept, unreset >>

\* KVM zaps a private SPTE (punch hole, conversion, memory error, teardown):
\* tdp_mmu_set_spte() -> remove_external_spte() -> tdx_sept_remove_leaf_spte():
\* BLOCK, TRACK, PAGE.REMOVE (PHYMEM.PAGE.RECLAIM once the HKID is released)
\* all succeed.  FolioRef drops its reference (tdx_unpin()).  With the erratum the page
\* is reset (tdx_quirk_reset_paddr(): MOVDIR64B), only here.
TdxSeptRemoveOk(p) ==
    /\ mirror[p]
    /\ sept[p] = "mapped"
    /\ tdx = "on"
    /\ mirror' = [mirror EXCEPT ![p] = FALSE]
    /\ sept' = [sept EXCEPT ![p] = "unmapped"]
    /\ IF Design = "FolioRef" THEN AddRefs(p, -Unpin("tdx_remove_ok.unpin"))
                              ELSE UNCHANGED tdxRefs
    /\ unreset' = [unreset EXCEPT ![p] = FALSE]
    /\ UNCHANGED << dataVars, hostVars, poisonVars, vmVars, countVars, gmemVars >>

\* A removal's SEAMCALL fails: KVM_BUG_ON().  The mirror SPTE was already
\* written non-present and nothing restores it.  Then the design reacts, all
\* under mmu_lock in the same step (every error path of
\* tdx_sept_remove_leaf_spte() returns the same -EIO).
RemovalFailsFlagging(p, flagged) ==
    /\ mirror[p]
    /\ sept[p] = "mapped"
    /\ tdx = "on"
    /\ removeFailures < MaxRemoveFailures
    /\ removeFailures' = removeFailures + 1
    /\ mirror' = [mirror EXCEPT ![p] = FALSE]
    /\ BugVm
    \* FolioRef: the reference is kept; the mutant drops it as on success.
    /\ IF Design = "FolioRef" /\ ~On("tdx_remove_failed.hold_ref")
       THEN AddRefs(p, -1) ELSE UNCHANGED tdxRefs
    \* HWPoison: TDX sets PG_hwpoison (HugeTLB: folio_set_hugetlb_hwpoison()).
    /\ hwpoison' = IF On("tdx_remove_failed.set_hwpoison") THEN flagged ELSE hwpoison
    /\ bad' = IF On("tdx_remove_failed.set_hwpoison") THEN [bad EXCEPT ![p] = TRUE] ELSE bad
    \* BuggyCleanup: the fd is marked bugged; memory_failure() sleeps, so the
    \* cleanup is deferred to process context (KvmGmemBuggyCleanup).
    /\ fd' = IF On("tdx_remove_failed.mark_fd_bugged") /\ fd = "ok" THEN "bugged" ELSE fd
    \* NoMoreSeamcalls: tdx_buggy_shutdown() starts: IPI every CPU to WBINVD, then set
    \* the flag (TdxShutdownFlag).  The mutant without WBINVD just stops SEAMCALLs.
    /\ tdx' = IF On("tdx_remove_failed.buggy_shutdown")
              THEN IF On("tdx_buggy_shutdown.wbinvd") THEN "flushing" ELSE "off_dirty"
              ELSE tdx
    /\ otherTds' = IF On("tdx_remove_failed.buggy_shutdown") /\ ~On("tdx_buggy_shutdown.wbinvd")
                   THEN "dead_unsafe" ELSE otherTds
    /\ UNCHANGED << dataVars, hostVars, gmemVars, memErrors >>
RemovalFails(p) == RemovalFailsFlagging(p, SetFlag(p))

\* BLOCK or PAGE.REMOVE fails: the S-EPT entry stays.
TdxSeptRemoveFailed(p) ==
    /\ RemovalFails(p)
    /\ UNCHANGED << sept, unreset >>

\* PAGE.REMOVE succeeds, then TDH.PHYMEM.PAGE.WBINVD fails (TDX_BUG_ON, return before
\* tdx_quirk_reset_paddr()): the page left the S-EPT and the PAMT, but the TD's lines
\* may still be dirty in a cache, and the page is never reset.
TdxSeptRemoveWbinvdFailed(p) ==
    /\ "wbinvd_fails" \in Features
    /\ RemovalFails(p)
    /\ sept' = [sept EXCEPT ![p] = "unmapped"]
    /\ unreset' = [unreset EXCEPT ![p] = TRUE]

\* A removal fails while a HugeTLB split of its folio runs (the split holds only
\* filemap_invalidate_lock; a memslot deletion zaps under mmu_lock alone): the split
\* copied the head's flags to the tails, TDX's folio_set_hugetlb_hwpoison() then sets the
\* old head's, and page p's own flag stays clean.  The model lets the stale head's flag
\* land in one step after the split; in the kernel it lands inside it.
TdxSeptRemoveFailedInSplit(p) ==
    /\ "split_race" \in Features
    /\ ~On("split.excludes_zap")
    /\ Split(FolioOf(p))
    /\ p # HeadPage(FolioOf(p))
    /\ RemovalFailsFlagging(p, [hwpoison EXCEPT ![HeadPage(FolioOf(p))] = TRUE])
    /\ UNCHANGED << sept, unreset >>

\* The other CPUs' WBINVD are done: the "no more SEAMCALLs" flag is set, SEAMCALLs
\* fail with TDX_BUGGY_SHUTDOWN and every TD dies.  This TD's lines were written back
\* (its vCPUs no longer run); the others' are dirty again after the window, and with the
\* erratum their pages, never reclaimed, are never reset.
TdxShutdownFlag ==
    /\ tdx \in {"flushing", "flushing_dirty"}
    /\ tdx' = "off"
    /\ otherTds' = IF tdx = "flushing_dirty" \/ Erratum THEN "dead_unsafe" ELSE "dead"
    \* the WBINVDs wrote back what a failed TDH.PHYMEM.PAGE.WBINVD left dirty
    /\ unreset' = IF Erratum THEN unreset ELSE [p \in Pages |-> FALSE]
    /\ UNCHANGED << dataVars, sept, mirror, tdxRefs, hostVars, poisonVars, countVars, gmemVars,
                    vm, fd >>

\* Between a CPU's WBINVD and the flag that CPU enters another TD (a SEAMCALL still
\* succeeds there): its cache holds private lines again.  Setting the flag before the
\* IPIs ("tdx_buggy_shutdown.flag_first") closes the window.
OtherTdSeamcall ==
    /\ tdx = "flushing"
    /\ otherTds = "alive"
    /\ ~On("tdx_buggy_shutdown.flag_first")
    /\ tdx' = "flushing_dirty"
    /\ UNCHANGED << dataVars, tdVars, hostVars, poisonVars, countVars, gmemVars, vm, otherTds, fd >>

\* After a buggy shutdown every SEAMCALL fails with TDX_BUGGY_SHUTDOWN; KVM
\* drops its mirror SPTE and the module, switched off, never touches the page.
TdxSeptRemoveAfterShutdown(p) ==
    /\ mirror[p]
    /\ sept[p] = "mapped"
    /\ tdx \in {"off", "off_dirty"}
    /\ mirror' = [mirror EXCEPT ![p] = FALSE]
    /\ UNCHANGED << dataVars, hostVars, poisonVars, vmVars, countVars, gmemVars, tdxRefs, sept,
                    unreset >>

\* A conversion is asked for: by the guest (TDG.VP.VMCALL<MapGPA>) or by the
\* VMM on its own, also after the VM died, since the guest_memfd conversion
\* ioctl has no VM-state check.  This step is the ioctl's entry, where a check of
\* the fd sits (BuggyCleanup: like vm_dead in kvm_vm_ioctl()); the conversion
\* follows (below).  One request at a time.
VmmConvertRequest(p, to) ==
    /\ convReq = NoReq
    /\ folioLoc[FolioOf(p)] = "gmem"
    /\ attr[p] # to
    /\ "in_place_conversion" \in Features
    /\ ~FdRefuses("convert.bugged_fd")
    /\ convReq' = [page |-> p, to |-> to]
    /\ UNCHANGED << dataVars, tdVars, hostVars, poisonVars, vmVars, countVars, folioLoc, attr >>

\* The guest_memfd conversion ioctl, private -> shared: kvm_gmem_ioctl() ->
\* __kvm_gmem_set_attributes().  It zaps the private mapping first (the
\* TdxSeptRemove* steps; a failed zap cannot abort it) and then flips the
\* attribute unconditionally.  There is no refcount check for private ->
\* shared upstream (FolioRef adds one), but splitting a whole HugeTLB folio
\* needs only filemap refs.
\* No VM-state check: this is not a VM ioctl.  A hole just changes metadata.
KvmGmemConvertShared ==
    LET p == convReq.page
        f == FolioOf(p)
    IN
    /\ convReq.to = "shared"
    /\ Quiet
    /\ folioLoc[f] = "gmem" =>
         /\ ~mirror[p]
         /\ ~FdRefuses("convert.bugged_fd_after_zap")
         /\ FlagOf(p) => ~On("convert.hwpoison")
         /\ On("convert_shared.safe_refcount") => PageRefsSafe(p)
         /\ (Backing = "hugetlb" /\ Whole(f) /\ On("restructure.safe_refcount")) => FolioRefsSafe(f)
    /\ attr' = IF folioLoc[f] = "gmem" THEN [attr EXCEPT ![p] = "shared"] ELSE attr
    \* the first shared page splits a whole HugeTLB folio
    /\ hwpoison' = IF Backing = "hugetlb" /\ folioLoc[f] = "gmem" /\ Whole(f)
                   THEN SplitFlags(f) ELSE hwpoison
    /\ uptodate' = IF Backing = "hugetlb" /\ folioLoc[f] = "gmem" /\ Whole(f)
                   THEN SplitUptodate(f) ELSE uptodate
    /\ convReq' = NoReq
    /\ UNCHANGED << tdVars, hostVars, vmVars, countVars, folioLoc, bad >>

\* Shared -> private: unmap_mapping_pages() of the range, then
\* kvm_gmem_is_safe_for_conversion() (else -EAGAIN, the request stays and the
\* VMM retries); merging a HugeTLB folio back needs only filemap refs on it.
\* Each try is a whole ioctl, so its entry check runs here too.  Merge keeps
\* page 0's PG_uptodate: the stored head flag is the folio's again.
KvmGmemConvertPrivate ==
    LET p == convReq.page
        f == FolioOf(p)
        merges == Backing = "hugetlb" /\ \A q \in PagesOf(f) \ {p} : attr[q] = "private"
        safe == /\ PageRefsSafe(p) \/ ~On("convert.safe_refcount")
                /\ (merges /\ On("restructure.safe_refcount")) => FolioRefsSafe(f)
    IN
    /\ convReq.to = "private"
    /\ Quiet
    /\ IF folioLoc[f] = "gmem"
       THEN /\ ~FdRefuses("convert.bugged_fd")
            /\ FlagOf(p) => ~On("convert.hwpoison")
            /\ hostMap' = [hostMap EXCEPT ![p] = FALSE]
            /\ attr' = IF safe THEN [attr EXCEPT ![p] = "private"] ELSE attr
            /\ convReq' = IF safe THEN NoReq ELSE convReq
            \* the last private page merges the HugeTLB folio back
            /\ hwpoison' = IF safe /\ merges THEN MergeFlags(f) ELSE hwpoison
            /\ uptodate' = IF safe /\ merges THEN MergeUptodate(f) ELSE uptodate
       ELSE /\ convReq' = NoReq
            /\ UNCHANGED << uptodate, attr, hostMap, hwpoison >>
    /\ UNCHANGED << tdVars, vmVars, countVars, folioLoc, hostPin, bad >>

\* A host fault on an mmap'd guest_memfd page: kvm_gmem_fault_user_mapping()
\* then the generic __do_fault().  Not a VM path: no VM-state check.
KvmGmemHostFault(p) ==
    LET f == FolioOf(p) IN
    /\ "in_place_conversion" \in Features     \* upstream TDX: no shared mmap of guest_memfd
    /\ Quiet
    /\ folioLoc[f] = "gmem"
    /\ ~hostMap[p]
    /\ attr[p] = "private" => ~On("gmem_fault.shared")
    /\ hwpoison[p] => ~On("do_fault.hwpoison")
    /\ FlagOf(p) => ~On("gmem_fault.hwpoison")
    /\ ~FdRefuses("host_fault.bugged_fd")
    /\ hostMap' = [hostMap EXCEPT ![p] = TRUE]
    /\ Prepare(p)        \* clear_highpage() unless up to date
    /\ UNCHANGED << tdVars, poisonVars, vmVars, countVars, gmemVars, hostPin >>

\* get_user_pages() on the host mapping (O_DIRECT, vhost): a reference that
\* outlives the mapping.
HostGup(p) ==
    /\ hostMap[p]
    /\ ~hostPin[p]
    /\ hostPin' = [hostPin EXCEPT ![p] = TRUE]
    /\ UNCHANGED << dataVars, tdVars, poisonVars, vmVars, countVars, gmemVars, hostMap >>

\* unpin_user_page(): the host drops its extra reference.
HostUnpin(p) ==
    /\ hostPin[p]
    /\ hostPin' = [hostPin EXCEPT ![p] = FALSE]
    /\ UNCHANGED << dataVars, tdVars, poisonVars, vmVars, countVars, gmemVars, hostMap >>

\* munmap() of the host mapping.
HostUnmap(p) ==
    /\ hostMap[p]
    /\ hostMap' = [hostMap EXCEPT ![p] = FALSE]
    /\ UNCHANGED << dataVars, tdVars, poisonVars, vmVars, countVars, gmemVars, hostPin >>

\* Truncate the folio out of the page cache: truncate_inode_pages_range()
\* unmaps host mappings and drops the page-cache references.  Whoever else
\* holds a reference keeps the folio alive ("detached").
Truncate(f) ==
    /\ folioLoc' = [folioLoc EXCEPT ![f] = "detached"]
    \* PG_uptodate is read only in the page cache, and allocation clears it: forget it here
    /\ uptodate' = [q \in Pages |-> IF FolioOf(q) = f THEN FALSE ELSE uptodate[q]]
    /\ hostMap' = [p \in Pages |-> IF FolioOf(p) = f THEN FALSE ELSE hostMap[p]]
    /\ hwpoison' = IF Split(f) THEN MergeFlags(f) ELSE hwpoison   \* merged before it leaves

\* A split HugeTLB folio is merged before it leaves: filemap_remove_folio_for_restructuring()
\* spins (WARN_ONCE) under filemap_invalidate_lock until only filemap refs remain.  Host
\* pins make it wait too, but the lock it holds stops new host faults and the host drops
\* its pins (fair), so only TDX's references can make it wait forever: the model waits
\* for those.
MergeWait(f) == (Split(f) /\ On("restructure.safe_refcount")) => \A p \in PagesOf(f) : tdxRefs[p] = 0

\* fallocate(PUNCH_HOLE): kvm_gmem_punch_hole() -> kvm_gmem_invalidate_begin()
\* (the zap: TdxSeptRemove* steps before this one) -> truncate.
\* No VM-state check: the guest_memfd file pins KVM, not the other way round.
KvmGmemPunchHole(f) ==
    /\ folioLoc[f] = "gmem"
    /\ Quiet
    /\ \A p \in PagesOf(f) : ~mirror[p]
    /\ ~FdRefuses("punch_hole.bugged_fd")
    /\ MergeWait(f)
    /\ Truncate(f)
    /\ UNCHANGED << tdVars, vmVars, countVars, attr, hostPin, bad, convReq >>

\* The VMM exits after the VM is gone: kvm_gmem_release() zaps,
\* kvm_gmem_evict_inode() truncates.  Not an ioctl, so no fd check applies; but
\* a queued cleanup that pins the file keeps the inode until it ran.
KvmGmemEvictInode(f) ==
    /\ vm = "destroyed"
    /\ ~(fd = "bugged" /\ On("buggy_cleanup.pins_file"))
    /\ Quiet
    /\ folioLoc[f] = "gmem"
    /\ \A p \in PagesOf(f) : ~mirror[p]
    /\ MergeWait(f)
    /\ Truncate(f)
    /\ UNCHANGED << tdVars, vmVars, countVars, attr, hostPin, bad, convReq >>

\* The last folio_put() of a detached folio: __folio_put() ->
\* free_huge_folio() (HugeTLB: back to the pool, no poison check upstream)
\* or free_frozen_pages() -> free_pages_prepare() (buddy).
FreeFolio(f) ==
    /\ folioLoc[f] = "detached"
    /\ FolioCount(f) <= 0       \* below zero only after a double put
    /\ folioLoc' = [folioLoc EXCEPT ![f] = IF LeakedOnFree(f) THEN "leaked" ELSE "pool"]
    /\ UNCHANGED << dataVars, tdVars, hostVars, poisonVars, vmVars, countVars, attr, convReq >>

\* Another host user gets a free folio: alloc_pages() / the HugeTLB pool.
AllocatorReuse(f) ==
    /\ MayHandOut(f)
    /\ folioLoc' = [folioLoc EXCEPT ![f] = "reused"]
    /\ UNCHANGED << dataVars, tdVars, hostVars, poisonVars, vmVars, countVars, attr, convReq >>

\* Another TD's guest_memfd gets a free folio and AUGs its pages.  (It zeroes the folio
\* first: a host write, so the folio counts as another user's.)  TDH.MEM.PAGE.AUG fails
\* for a page the PAMT still assigns to this TD, and TDX_BUG_ON() kills that TD too.
CrossTdReuse(f) ==
    /\ "cross_td" \in Features
    /\ otherTds = "alive"
    /\ folioLoc[f] \in {"pool", "buddy"}
    /\ MayHandOut(f)
    /\ folioLoc' = [folioLoc EXCEPT ![f] = "reused"]
    /\ otherTds' = IF \E p \in PagesOf(f) : sept[p] = "mapped" THEN "dead" ELSE otherTds
    /\ UNCHANGED << dataVars, tdVars, hostVars, poisonVars, countVars, attr, vm, tdx, fd, convReq >>

\* That user frees it again: __free_pages() -> free_pages_prepare() (buddy)
\* or free_huge_folio() (HugeTLB).  A physical page is not a file slot: on a
\* real kernel guest_memfd's freed pages go to other users at once and come
\* back later, at any index (see validator/replay/engine.py).
HostUserFree(f) ==
    /\ folioLoc[f] = "reused"
    /\ folioLoc' = [folioLoc EXCEPT ![f] =
                       IF Backing = "buddy" /\ hwpoison[HeadPage(f)] /\ On("free_pages_prepare.hwpoison")
                       THEN "leaked" ELSE "pool"]
    /\ UNCHANGED << dataVars, tdVars, hostVars, poisonVars, vmVars, countVars, attr, convReq >>

\* Pool shrink (nr_hugepages), memory offline and alloc_contig_range() dissolve
\* free HugeTLB folios (remove_pool_hugetlb_folio(), dissolve_free_hugetlb_folio(),
\* no poison check): __update_and_free_hugetlb_folio() moves the folio's flag to
\* the raw pages of its raw-error list and frees the folio at high order, and
\* free_pages_prepare() checks PG_hwpoison only at order 0.  Jiaqi Yan's series
\* ("dissolve.hwpoison") frees only the healthy pages of a folio marked poisoned:
\* here the folio is kept out.  (Demotion skips folios marked poisoned.)
HugetlbDissolve(f) ==
    /\ "dissolve" \in Features
    /\ Backing = "hugetlb"
    /\ folioLoc[f] = "pool"
    /\ folioLoc' = [folioLoc EXCEPT ![f] =
                       IF hwpoison[HeadPage(f)] /\ On("dissolve.hwpoison") THEN "leaked" ELSE "buddy"]
    /\ UNCHANGED << dataVars, tdVars, hostVars, poisonVars, vmVars, countVars, attr, convReq >>

\* A hardware memory error on a guest_memfd page: memory_failure() sets
\* PG_hwpoison, hwpoison_user_mappings() unmaps the host, and
\* kvm_gmem_error_folio() zaps KVM's mappings (TdxSeptRemove* steps) but does
\* not truncate the folio (MF_DELAYED).  With "mf_ignored" (the 1G series: no
\* LRU, so HWPoisonHandlable() fails) only the flag is set: the host keeps its
\* mapping and nothing zaps.
MemoryFailure(p) ==
    /\ memErrors < MaxMemErrors
    /\ Quiet
    /\ folioLoc[FolioOf(p)] = "gmem"
    /\ ~bad[p]
    /\ memErrors' = memErrors + 1
    /\ hwpoison' = SetFlag(p)
    /\ bad' = [bad EXCEPT ![p] = TRUE]
    /\ hostMap' = IF "mf_ignored" \in Features THEN hostMap ELSE [hostMap EXCEPT ![p] = FALSE]
    /\ UNCHANGED << dataVars, tdVars, vmVars, gmemVars, hostPin, removeFailures >>

\* BuggyCleanup: the deferred kvm_gmem_buggy_cleanup() runs in process
\* context and sends every folio of the bugged fd through memory_failure().
KvmGmemBuggyCleanup ==
    LET inFd(p) == folioLoc[FolioOf(p)] = "gmem" IN
    /\ fd = "bugged"
    /\ fd' = "cleaned"
    /\ bad' = [p \in Pages |-> bad[p] \/ inFd(p)]
    \* memory_failure() of each page: a whole HugeTLB folio's flag is its head's
    /\ hwpoison' = [p \in Pages |-> hwpoison[p] \/ (inFd(p) /\ (Backing # "hugetlb"
                        \/ Split(FolioOf(p)) \/ p = HeadPage(FolioOf(p))))]
    /\ hostMap' = [p \in Pages |-> hostMap[p] /\ ~inFd(p)]
    /\ UNCHANGED << dataVars, tdVars, countVars, gmemVars, hostPin, vm, tdx, otherTds >>

\* kvm_gmem_release(): the VMM closes the file when it exits (with the VM, as
\* KvmGmemEvictInode).  A bugged flag kept in the per-fd struct (struct kvm_gmem,
\* gmem_file) is freed with it before the inode's folios are, unless the flag
\* lives on the inode, or the queued cleanup holds a file reference until it ran.
KvmGmemRelease ==
    /\ vm = "destroyed"
    /\ fd # "ok"
    /\ ~On("gmem_release.keeps_bugged_flag")
    /\ On("buggy_cleanup.pins_file") => fd = "cleaned"
    /\ fd' = "ok"
    /\ UNCHANGED << dataVars, tdVars, hostVars, poisonVars, countVars, gmemVars, vm, tdx,
                    otherTds >>

\* VM teardown: tdx_mmu_release_hkid().  Pages KVM still maps are then
\* reclaimed by the TdxSeptRemove* steps (TDH.PHYMEM.PAGE.RECLAIM).  A page
\* whose removal failed has no mirror SPTE left, so nothing reclaims it.
TdxReleaseHkid ==
    /\ vm # "destroyed"
    /\ Quiet
    /\ vm' = "destroyed"
    /\ UNCHANGED << dataVars, tdVars, hostVars, poisonVars, countVars, gmemVars, tdx, otherTds, fd >>

-----------------------------------------------------------------------------
TdxSeptRemove(p) ==
    \/ TdxSeptRemoveOk(p) \/ TdxSeptRemoveFailed(p) \/ TdxSeptRemoveWbinvdFailed(p)
    \/ TdxSeptRemoveFailedInSplit(p)
    \/ TdxSeptRemoveAfterShutdown(p) \/ TdxZapPremapped(p)

Next ==
    \/ \E f \in Folios :
          \/ KvmGmemAllocFolio(f)
          \/ KvmGmemPunchHole(f)
          \/ KvmGmemEvictInode(f)
          \/ FreeFolio(f)
          \/ AllocatorReuse(f)
          \/ HostUserFree(f)
          \/ HugetlbDissolve(f)
          \/ CrossTdReuse(f)
    \/ \E p \in Pages :
          \/ KvmTdpMapPrivate(p)
          \/ TdxAugBusy(p)
          \/ KvmTdpPremap(p)
          \/ TdxSeptRemove(p)
          \/ KvmGmemHostFault(p)
          \/ HostGup(p)
          \/ HostUnpin(p)
          \/ HostUnmap(p)
          \/ MemoryFailure(p)
          \/ \E to \in {"private", "shared"} : VmmConvertRequest(p, to)
    \/ KvmGmemConvertShared
    \/ KvmGmemConvertPrivate
    \/ KvmGmemBuggyCleanup
    \/ KvmGmemRelease
    \/ TdxReleaseHkid
    \/ TdxShutdownFlag
    \/ OtherTdSeamcall

Spec == Init /\ [][Next]_vars

(***************************************************************************)
(* Fairness: only the kernel's own steps, a host that drops its pins, and *)
(* a VMM that retries a conversion until the ioctl succeeds (strong        *)
(* fairness: the ioctl may be refused and then possible again) and closes  *)
(* guest_memfd when it exits.  Guest faults, other host steps, zaps of a   *)
(* running VM and teardown itself are never forced.                        *)
(***************************************************************************)
TeardownZap == vm = "destroyed" /\ \E p \in Pages : TdxSeptRemove(p)
ConversionZap == convReq.to = "shared" /\ TdxSeptRemove(convReq.page)
\* Only a successful ioctl counts: a refused one may still unmap the host.
ConversionDone == (KvmGmemConvertShared \/ KvmGmemConvertPrivate) /\ convReq' = NoReq

Fairness ==
    /\ WF_vars(TeardownZap)
    /\ WF_vars(\E f \in Folios : KvmGmemEvictInode(f))
    /\ WF_vars(\E f \in Folios : FreeFolio(f))
    /\ \A p \in Pages : WF_vars(HostUnpin(p))
    /\ WF_vars(ConversionZap)
    /\ SF_vars(ConversionDone)
    /\ WF_vars(KvmGmemBuggyCleanup)
    /\ WF_vars(TdxShutdownFlag)

FairSpec == Spec /\ Fairness

-----------------------------------------------------------------------------
(***************************************************************************)
(* Properties (docs/protocol.md section 4)                                      *)
(***************************************************************************)

\* TdMayOwn (above): with the erratum a page whose private lines were never reset is as
\* unsafe to touch as a mapped one (a partial write poisons a line, a later read is a
\* machine check); after a failed WBINVD its lines may be written back over the host's.
HostCanTouch(p) == hostMap[p] \/ hostPin[p] \/ folioLoc[FolioOf(p)] = "reused"

\* 1. No page the TDX module may still own is mapped or held by the host, or
\*    belongs to a folio another host user got; and no other TD's pages go back
\*    to the host unsafe (see otherTds).
NoHostAccessToTdPageInv ==
    /\ \A p \in Pages : TdMayOwn(p) => ~HostCanTouch(p)
    /\ otherTds # "dead_unsafe"

\* 2. The host maps or pins only shared guest_memfd pages.
NoPrivateHostMappingInv ==
    \A p \in Pages : (folioLoc[FolioOf(p)] = "gmem" /\ (hostMap[p] \/ hostPin[p]))
                        => attr[p] = "shared"

\* 3. A poisoned page is never newly mapped, by the guest or the host, and a
\*    folio with a poisoned page is never handed out again.  (Sitting on the
\*    HugeTLB free list is allowed: dequeue skips it; see the README.)
PoisonContainedStep ==
    /\ \A p \in Pages : bad[p] =>
          /\ mirror'[p] => mirror[p]
          /\ hostMap'[p] => hostMap[p]
          /\ hostPin'[p] => hostPin[p]
    /\ \A f \in Folios : IsBad(f) =>
          (folioLoc[f] \in {"pool", "detached", "leaked", "buddy"} => folioLoc'[f] \notin {"gmem", "reused"})
PoisonContainedProp == [][PoisonContainedStep]_vars

\* 4. TDX holds exactly one reference for each page it maps (FolioRef) and none
\*    otherwise: no missed put, no double put; a free or reused folio carries none.
RefcountSoundInv ==
    /\ \A p \in Pages : tdxRefs[p] = IF TdxHolds(p) THEN 1 ELSE 0
    /\ \A f \in Folios : folioLoc[f] \in {"pool", "reused", "buddy"} => FolioRefsSafe(f)

\* 8. The kernel never writes into a page the TDX module may own (zeroing on prepare, on a
\*    host fault).  Only a zeroing sets PG_uptodate without an allocation, split or merge
\*    in the same step (those change folioLoc or attr), so the write is read off the flag:
\*    a whole folio's head flag set writes every page of it, a split page's its own.
Zeroed(q) ==
    LET f == FolioOf(q)
        flag == IF On("prepare.per_page") \/ Split(f) THEN q ELSE HeadPage(f)
    IN /\ folioLoc[f] = "gmem" /\ folioLoc'[f] = "gmem"
       /\ \A r \in PagesOf(f) : attr'[r] = attr[r]
       /\ ~uptodate[flag] /\ uptodate'[flag]
NoHostWriteToTdPageStep == \A q \in Pages : Zeroed(q) => ~TdMayOwn(q)
NoHostWriteToTdPageProp == [][NoHostWriteToTdPageStep]_vars

\* 6. With no injected faults, every folio eventually returns to an allocator
\*    after the VM is destroyed.
AllReturned == \A f \in Folios : folioLoc[f] \in {"pool", "reused", "buddy"}
NoLeakWithoutFaultsProp == vm = "destroyed" ~> AllReturned

\* 7. A requested conversion eventually succeeds, or the VM is dead.
ConversionCompletesProp == convReq # NoReq ~> (convReq = NoReq \/ vm # "running")

\* 9. After the VM is destroyed every folio eventually leaves guest_memfd's page cache,
\*    faults or not: no truncation waits forever on the kernel's own references.  A folio
\*    the host still maps or pins may stay (the host decides when to let go).
HostHolds(f) == \E p \in PagesOf(f) : hostMap[p] \/ hostPin[p]
TeardownCompletesProp ==
    vm = "destroyed" ~> \A f \in Folios : folioLoc[f] # "gmem" \/ HostHolds(f)

(***************************************************************************)
(* Cost, computed over the reachable states by tools, not asserted here.   *)
(***************************************************************************)
\* Pages leaked although never poisoned (a HugeTLB folio for one bad page).
CollateralLeak == Cardinality({p \in Pages : folioLoc[FolioOf(p)] \in {"leaked", "detached"}
                                              /\ vm = "destroyed" /\ ~bad[p]})
=============================================================================
