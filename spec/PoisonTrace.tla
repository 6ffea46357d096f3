---------------------------- MODULE PoisonTrace ----------------------------
(***************************************************************************)
(* Trace validation: does some behaviour of Poison explain a capture?     *)
(*                                                                         *)
(* The capture comes as data: PoisonTraceData.tla, written by              *)
(* `poisoncheck validate --engine tlc`, holds the per-trace constants and  *)
(* TraceEvents, a sequence of records made of numbers and fixed words      *)
(* only (never text from the trace).  Each record is one protocol event    *)
(* whose identities the planner (validator/replay/planner.py) has resolved: the   *)
(* model's folio and page, the return value, the flags its bookkeeping     *)
(* knows.  What the event means -- which action of Poison it is -- is      *)
(* decided here, by one IsX operator per kind of event, independently of   *)
(* the Python engine's validator/replay/meaning.py.                               *)
(*                                                                         *)
(* The cursor l is the next event to match; sub counts the steps taken of  *)
(* event l (a completed conversion converts its range one page at a time). *)
(* Before each event, steps no probe shows may happen on that event's      *)
(* folio (Hidden).  TLC explores every behaviour (breadth first); the      *)
(* furthest cursor any behaviour reaches is printed as it grows, and the   *)
(* invariants below judge each state right after an observed step.         *)
(*                                                                         *)
(* By hand: java -cp tla2tools.jar tlc2.TLC -deadlock -config              *)
(* PoisonTrace.cfg PoisonTrace.tla in a folder holding Poison.tla and the  *)
(* generated PoisonTraceData.tla (README, "Running TLC by hand").          *)
(***************************************************************************)
EXTENDS Poison, PoisonTraceData, Sequences, TLC

\* The values the constants of Poison take (see PoisonTrace.cfg).  Folios are numbered
\* 1..n in the order the capture shows them; page n of the trace (0-based, folio-major)
\* is Pg(n).
TraceFolios == 1..TraceFolioCount
Pg(n) == <<(n \div PagesPerFolio) + 1, (n % PagesPerFolio) + 1>>

\* The return values the meanings tell apart (the kernel's -errno).
EBUSY == -16            \* TDX_OPERAND_BUSY as tdx_mem_page_aug() returns it
EAGAIN == -11           \* kvm_gmem_is_safe_for_conversion() refused
EHWPOISON == -133       \* __kvm_gmem_get_pfn() refused a poisoned folio

RemoveFails(e) == e.k \in {"remove", "reclaim"} /\ e.ret # 0
IsMemoryError(e) == e.k = "memory_failure"
\* Fault budgets: every event that may be a fault may be one (the trace decides).  Written
\* with SelectSeq, which reads TraceEvents once: TLC computes these before it has cached
\* TraceEvents, and a set {i \in DOMAIN TraceEvents : ... TraceEvents[i] ...} rebuilt the
\* whole sequence for each i (34 of 58 seconds on the bench's 10k lines, before Init).
TraceRemoveBudget == Len(SelectSeq(TraceEvents, RemoveFails))
TraceMemErrorBudget == Len(SelectSeq(TraceEvents, IsMemoryError))

\* A conversion that completed converts each page of its range, one step per page.
ConvertDone(e) == e.k = "convert" /\ e.ret = 0
ConvertRefused(e) == e.k = "convert" /\ e.ret = EAGAIN
StepsOf(e) == IF ConvertDone(e) THEN Len(e.ps) ELSE 1
\* A refused conversion is refused on the first page of its range not yet converted.
Todo(e) == SelectSeq(e.ps, LAMBDA n : attr[Pg(n)] # e.to)

\* Once guest_memfd's page cache is observed, a truncation shows before the free as its
\* own event (no hidden one), unless the free follows guest_memfd's own free hook.
StrictFree(e) == e.cached /\ ~e.afterFree

-----------------------------------------------------------------------------
VARIABLES
    l,      \* the next event of TraceEvents to match
    sub,    \* steps of event l taken so far (only a completed conversion takes several)
    obs,    \* the last step was an observed one (the invariants judge only those states)
    pcOk,   \* PoisonContainedStep held on every observed step so far
    hwOk    \* NoHostWriteToTdPageStep held on the last observed step

traceVars == <<vars, l, sub, obs, pcOk, hwOk>>

\* How each file starts (the capture's files, numbered 1..TraceFileCount): "private",
\* "shared" (GUEST_MEMFD_FLAG_INIT_SHARED), or "any" where the capture does not say; a
\* reading picks one for every file, and the pages of a folio start as its file does.
TraceChoices(i) == IF TraceFileInit[i] = "any" THEN {"private", "shared"}
                   ELSE {TraceFileInit[i]}
RECURSIVE TraceReadings(_)
TraceReadings(k) == IF k = 0 THEN {<<>>}
                    ELSE {Append(r, v) : r \in TraceReadings(k - 1), v \in TraceChoices(k)}
TraceInitAttrs == {[p \in Pages |-> c[TraceFileOf[p[1]]]] : c \in TraceReadings(TraceFileCount)}

TraceInit == Init /\ l = 1 /\ sub = 0 /\ obs = FALSE /\ pcOk = TRUE /\ hwOk = TRUE

-----------------------------------------------------------------------------
(***************************************************************************)
(* One operator per kind of event: the action(s) of Poison it stands for.  *)
(* n is the step within the event (1 unless a conversion).                 *)
(***************************************************************************)
\* A folio enters guest_memfd's page cache (filemap add, or the gmem_alloc probe).
IsAlloc(e) == e.k \in {"alloc", "cache_add"} /\ KvmGmemAllocFolio(e.fo)

\* It leaves the page cache: punch hole or, after the VM, inode eviction.
IsCacheDelete(e) == e.k = "cache_delete" /\ (KvmGmemPunchHole(e.fo) \/ KvmGmemEvictInode(e.fo))

\* TDH.MEM.PAGE.AUG: -EBUSY is FolioRef's busy AUG (its reference is put again; without
\* the reference it changes nothing); other failures are not modelled.
IsAug(e) ==
    /\ e.k = "aug"
    /\ CASE e.ret = 0 -> KvmTdpMapPrivate(Pg(e.pg))
         [] e.ret = EBUSY -> TdxAugBusy(Pg(e.pg)) \/ (Design # "FolioRef" /\ UNCHANGED vars)
         [] OTHER -> UNCHANGED vars

\* tdx_sept_remove_leaf_spte() (or the reclaim after the HKID is gone): a failure is the
\* KVM_BUG_ON (also one racing a HugeTLB split), or a SEAMCALL refused after a buggy
\* shutdown.
IsRemove(e) ==
    /\ e.k \in {"remove", "reclaim"}
    /\ IF e.ret = 0 THEN TdxSeptRemoveOk(Pg(e.pg))
       ELSE \/ TdxSeptRemoveFailed(Pg(e.pg)) \/ TdxSeptRemoveFailedInSplit(Pg(e.pg))
            \/ TdxSeptRemoveAfterShutdown(Pg(e.pg))

\* A host fault on guest_memfd's mmap: mapped, or refused (nothing changes).
IsHostFault(e) ==
    /\ e.k = "host_fault"
    /\ IF e.ret = 0 THEN KvmGmemHostFault(Pg(e.pg)) ELSE UNCHANGED vars

\* kvm_gmem_get_pfn() for a guest fault: refused with -EHWPOISON, or the AUG follows as its
\* own event; either way nothing changes here.
IsGuestGetPfn(e) == e.k = "guest_get_pfn" /\ UNCHANGED vars

\* The designs' hooks: only a design that has the check runs it.
DesignHook(e, kind, check) == e.k = kind /\ On(check) /\ UNCHANGED vars
IsSetHwpoison(e) == DesignHook(e, "set_hwpoison", "tdx_remove_failed.set_hwpoison")
IsBuggyCleanup(e) == DesignHook(e, "buggy_cleanup", "tdx_remove_failed.mark_fd_bugged")
IsTdxShutdown(e) == DesignHook(e, "tdx_shutdown", "tdx_remove_failed.buggy_shutdown")

\* memory_failure() reached guest_memfd's error handler: the folio is in its page cache.
IsErrorFolio(e) == e.k = "error_folio" /\ folioLoc[e.fo] = "gmem" /\ UNCHANGED vars

\* ras:memory_failure_event: a new error, BuggyCleanup's memory_failure() of the bugged
\* fd, or a repeated report of a page already poisoned (bad: PG_hwpoison may sit on the
\* head of a whole HugeTLB folio only).
IsMemoryFailure(e) ==
    /\ e.k = "memory_failure"
    /\ \/ MemoryFailure(Pg(e.pg))
       \/ KvmGmemBuggyCleanup
       \/ bad[Pg(e.pg)] /\ UNCHANGED vars

\* guest_memfd's free hook: the last folio_put (a truncation may hide before it).
IsGmemFree(e) == e.k = "gmem_free" /\ FreeFolio(e.fo)

\* free_huge_folio(): guest_memfd's folio back to the pool, another user's free, or the
\* pool's own view of a folio already freed.
IsHugetlbFree(e) ==
    /\ e.k = "hugetlb_free"
    /\ \/ FreeFolio(e.fo) /\ folioLoc'[e.fo] = "pool"
       \/ HostUserFree(e.fo)
       \/ folioLoc[e.fo] = "pool" /\ UNCHANGED vars

\* mm_page_free of a block covering the folio.
IsPageFree(e) ==
    /\ e.k = "page_free"
    /\ IF StrictFree(e)
       THEN FreeFolio(e.fo) \/ HostUserFree(e.fo)
       ELSE \/ FreeFolio(e.fo)
            \/ HostUserFree(e.fo)
            \/ folioLoc[e.fo] \in {"pool", "leaked"} /\ UNCHANGED vars

\* mm_page_alloc / HugeTLB allocation of a block covering the folio: another user's, or,
\* for a block that is exactly the folio, perhaps guest_memfd's own (then its page-cache
\* add must come next: see ClaimHolds).
IsPageAlloc(e) ==
    /\ e.k \in {"page_alloc", "hugetlb_alloc"}
    /\ \/ AllocatorReuse(e.fo)
       \/ e.exact /\ MayHandOut(e.fo) /\ UNCHANGED vars

\* The guest_memfd conversion ioctl on a range: done page by page, refused with -EAGAIN
\* on the first page not yet converted (the request stays), or failing otherwise.
IsConvert(e, n) ==
    /\ e.k = "convert"
    /\ CASE ConvertDone(e) ->
              LET p == Pg(e.ps[n]) IN
              \/ attr[p] = e.to /\ convReq = NoReq /\ UNCHANGED vars
              \/ /\ convReq = [page |-> p, to |-> e.to]
                 /\ KvmGmemConvertShared \/ KvmGmemConvertPrivate
                 /\ convReq' = NoReq
         [] ConvertRefused(e) ->
              /\ Todo(e) # <<>>
              /\ convReq = [page |-> Pg(Head(Todo(e))), to |-> e.to]
              /\ IF e.to = "private"
                 THEN KvmGmemConvertPrivate /\ convReq' # NoReq
                 ELSE ~ENABLED KvmGmemConvertShared /\ UNCHANGED vars
         [] OTHER -> UNCHANGED vars

\* Events about the VM.  punch_hole fires on entry, before its zaps (the truncation is
\* taken when the delete or the free shows); kvm_vm_bugged() runs inside KVM_BUG_ON,
\* before the failing removal's probe; a failed HKID release is not modelled.
IsPunchHole(e) == e.k \in {"punch_hole", "vm_bugged"} /\ UNCHANGED vars
IsHkidRelease(e) == e.k = "hkid_release" /\ IF e.ret = 0 THEN TdxReleaseHkid ELSE UNCHANGED vars

IsEvent(e, n) ==
    \/ IsAlloc(e) \/ IsCacheDelete(e) \/ IsAug(e) \/ IsRemove(e) \/ IsHostFault(e)
    \/ IsGuestGetPfn(e) \/ IsSetHwpoison(e) \/ IsBuggyCleanup(e) \/ IsTdxShutdown(e)
    \/ IsErrorFolio(e) \/ IsMemoryFailure(e) \/ IsGmemFree(e) \/ IsHugetlbFree(e)
    \/ IsPageFree(e) \/ IsPageAlloc(e) \/ IsConvert(e, n) \/ IsPunchHole(e)
    \/ IsHkidRelease(e)

\* An exact allocation of the folio came before this event with no page-cache add after
\* it (e.lapsed): it was another user's, who still holds the folio.
ClaimHolds(e) == e.lapsed => folioLoc[e.fo] # "pool"

-----------------------------------------------------------------------------
(***************************************************************************)
(* Steps no probe shows, taken only on the folio of the next event: the    *)
(* host's unmaps, pins and unpins, the conversion request (the guest's     *)
(* MapGPA or the VMM's), and the truncation before a free (punch hole or   *)
(* eviction) when the capture does not show it.                            *)
(***************************************************************************)
Unobserved ==
    /\ l <= Len(TraceEvents)
    /\ LET e == TraceEvents[l] IN
       /\ e.fo > 0
       /\ \/ \E p \in PagesOf(e.fo) : HostUnmap(p) \/ HostGup(p) \/ HostUnpin(p)
          \/ ConvertDone(e) /\ VmmConvertRequest(Pg(e.ps[sub + 1]), e.to)
          \/ ConvertRefused(e) /\ Todo(e) # <<>> /\ VmmConvertRequest(Pg(Head(Todo(e))), e.to)
          \/ /\ e.k \in {"gmem_free", "hugetlb_free"} \/ (e.k = "page_free" /\ ~StrictFree(e))
             /\ KvmGmemPunchHole(e.fo) \/ KvmGmemEvictInode(e.fo)
    /\ obs' = FALSE
    /\ UNCHANGED <<l, sub, pcOk, hwOk>>

\* The rest of a buggy shutdown a failed removal started (no probe shows it): it belongs
\* to that observed step, so the invariants judge the states after it too (obs is kept).
ShutdownRest ==
    /\ TdxShutdownFlag \/ OtherTdSeamcall
    /\ UNCHANGED <<l, sub, obs, pcOk, hwOk>>

\* Print the cursor each time it gets further than ever (TLC register 1).
ASSUME TLCSet(1, 1)
ASSUME PrintT(<<"poisoncheck-events", Len(TraceEvents)>>)
Reached(n) == IF n > TLCGet(1) THEN TLCSet(1, n) /\ PrintT(<<"poisoncheck-reached", n>>)
              ELSE TRUE

\* The next step of event l.
Observed ==
    /\ l <= Len(TraceEvents)
    /\ LET e == TraceEvents[l]
           last == sub + 1 = StepsOf(e)
       IN /\ sub = 0 => ClaimHolds(e)
          /\ IsEvent(e, sub + 1)
          /\ l' = IF last THEN l + 1 ELSE l
          /\ sub' = IF last THEN 0 ELSE sub + 1
          /\ Reached(IF last THEN l + 1 ELSE l)
    /\ obs' = TRUE
    /\ pcOk' = PoisonContainedStep
    /\ hwOk' = NoHostWriteToTdPageStep

TraceNext == Unobserved \/ ShutdownRest \/ Observed
TraceSpec == TraceInit /\ [][TraceNext]_traceVars

\* The properties, judged right after each observed step (docs/protocol.md section 4).
TraceNoHostAccess == obs => NoHostAccessToTdPageInv
TraceNoPrivateHostMapping == obs => NoPrivateHostMappingInv
TraceRefcount == obs => RefcountSoundInv
TracePoisonContained == pcOk
TraceNoHostWrite == hwOk
=============================================================================
