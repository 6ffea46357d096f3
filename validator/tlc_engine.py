"""The TLC engine of `poisoncheck validate`: the spec itself judges the trace.

The trace is first planned into protocol steps exactly as the Python engine
plans it (validator.replay.Replay with judge=False).  The steps go into a
generated module, PoisonTrace.tla, as a TLA+ sequence of records holding only
integers and words from a fixed vocabulary (never text from the trace, so a
trace cannot inject TLA+).  Its Next either takes a hidden step on the folio
of the next trace step (the host's unmaps and pins, the conversion request,
the truncation before a free), or takes the next trace step itself and moves
the cursor `l` on (the Pressler / Cirstea-Kuppe-Merz method).  TLC explores
the whole constrained state space with -continue:

* the furthest cursor any behaviour reaches tells the first step that fits
  no behaviour (TLC prints it with PrintT when it grows);
* each invariant `obs => Property` (obs: the last step was a trace step) that
  TLC reports violated tells a trace step after which a state breaks it.

The verdict is then built like the Python engine's: the earliest failure wins.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from . import model
from .ftrace import Event, LostMarker
from .replay import Replay, Verdict
from .tlc_output import INVARIANT_VIOLATED, TRACE_STATE, split_messages
from .tlc_runner import RunnerError, TlcSetup, run_tlc

TRACE_MODULE = "PoisonTrace"
_REACHED = re.compile(r'<<"poisoncheck-reached", (\d+)>>')
_WORDS = {"stay", "alloc", "map", "aug_busy", "remove_ok", "remove_failed", "host_fault", "hkid_release",
          "design", "in_gmem", "memory_failure", "gmem_free", "hugetlb_free", "page_free",
          "page_alloc", "convert", "convert_refused", "private", "shared", "none",
          "host_fault_refused", "guest_fault_refused", "free_observed", "truncate", "reuse",
          "claim_lapsed"}
PROPERTY_INVARIANTS = {
    "TvNoHostAccess": "NoHostAccessToTdPage", "TvNoPrivateHostMapping": "NoPrivateHostMapping",
    "TvRefcount": "RefcountSound", "TvPoisonContained": "PoisonContained"}

MODULE_BODY = r"""
VARIABLES l, obs, pcOk
tvVars == <<vars, l, obs, pcOk>>

Pg(n) == <<FolioSeq[(n \div PagesPerFolio) + 1], (n % PagesPerFolio) + 1>>
Fo(n) == FolioSeq[n + 1]
\* The first page of a refused conversion's range that is not yet converted.
Todo(e) == SelectSeq(e.ps, LAMBDA n : attr[Pg(n)] # e.to)

TvInit == Init /\ l = 1 /\ obs = FALSE /\ pcOk = TRUE

\* Steps no probe shows, on the folio of the next trace step only.
Hidden ==
    /\ l <= Len(Steps)
    /\ LET e == Steps[l] IN
       /\ e.fo > 0
       /\ \/ \E p \in PagesOf(Fo(e.fo - 1)) : HostUnmap(p) \/ HostGup(p) \/ HostUnpin(p)
          \/ /\ e.k = "convert"
             /\ VmmConvertRequest(Pg(e.a), e.to)
          \/ /\ e.k = "convert_refused" /\ Todo(e) # <<>>
             /\ VmmConvertRequest(Pg(Head(Todo(e))), e.to)
          \/ /\ e.k \in {"gmem_free", "hugetlb_free", "page_free"}
             /\ KvmGmemPunchHole(Fo(e.a)) \/ KvmGmemEvictInode(Fo(e.a))
    /\ obs' = FALSE
    /\ UNCHANGED <<l, pcOk>>

\* The rest of a buggy shutdown a failed removal started (no probe shows it): it belongs
\* to that trace step, so the properties are judged after it too (obs is kept).
ShutdownRest ==
    /\ TdxShutdownFlag \/ OtherTdSeamcall
    /\ UNCHANGED <<l, obs, pcOk>>

Observed(e) ==
    CASE e.k \in {"stay", "host_fault_refused", "guest_fault_refused"} -> UNCHANGED vars
      [] e.k = "alloc" -> KvmGmemAllocFolio(Fo(e.a))
      [] e.k = "map" -> KvmTdpMapPrivate(Pg(e.a))
      [] e.k = "aug_busy" -> TdxAugBusy(Pg(e.a)) \/ (Design # "FolioRef" /\ UNCHANGED vars)
      [] e.k = "remove_ok" -> TdxSeptRemoveOk(Pg(e.a))
      [] e.k = "remove_failed" -> TdxSeptRemoveFailed(Pg(e.a)) \/ TdxSeptRemoveAfterShutdown(Pg(e.a))
      [] e.k = "host_fault" -> KvmGmemHostFault(Pg(e.a))
      [] e.k = "hkid_release" -> TdxReleaseHkid
      [] e.k = "design" -> On(e.check) /\ UNCHANGED vars
      [] e.k = "in_gmem" -> folioLoc[Fo(e.a)] = "gmem" /\ UNCHANGED vars
      [] e.k = "memory_failure" ->
            \/ MemoryFailure(Pg(e.a))
            \/ KvmGmemBuggyCleanup
            \/ hwpoison[Pg(e.a)] /\ UNCHANGED vars
      [] e.k = "gmem_free" -> FreeFolio(Fo(e.a))
      [] e.k = "hugetlb_free" ->
            \/ FreeFolio(Fo(e.a)) /\ folioLoc'[Fo(e.a)] = "pool"
            \/ HostUserFree(Fo(e.a))
            \/ folioLoc[Fo(e.a)] = "pool" /\ UNCHANGED vars
      [] e.k = "page_free" ->
            \/ FreeFolio(Fo(e.a))
            \/ HostUserFree(Fo(e.a))
            \/ folioLoc[Fo(e.a)] \in {"pool", "leaked"} /\ UNCHANGED vars
      \* the page cache is observed: no hidden truncation before the free
      [] e.k = "free_observed" -> FreeFolio(Fo(e.a)) \/ HostUserFree(Fo(e.a))
      [] e.k = "truncate" -> KvmGmemPunchHole(Fo(e.a)) \/ KvmGmemEvictInode(Fo(e.a))
      \* another user's allocation, or guest_memfd's own (the planner holds the trace to
      \* a page-cache add; "claim_lapsed" drops the own branch otherwise)
      [] e.k = "page_alloc" -> AllocatorReuse(Fo(e.a)) \/ (MayHandOut(Fo(e.a)) /\ UNCHANGED vars)
      [] e.k = "reuse" -> AllocatorReuse(Fo(e.a))
      [] e.k = "claim_lapsed" -> folioLoc[Fo(e.a)] # "pool" /\ UNCHANGED vars
      [] e.k = "convert" ->
            \/ attr[Pg(e.a)] = e.to /\ convReq = NoReq /\ UNCHANGED vars
            \/ /\ convReq = [page |-> Pg(e.a), to |-> e.to]
               /\ KvmGmemConvertShared \/ KvmGmemConvertPrivate
               /\ convReq' = NoReq
      [] e.k = "convert_refused" ->
            /\ Todo(e) # <<>>
            /\ convReq = [page |-> Pg(Head(Todo(e))), to |-> e.to]
            /\ IF e.to = "private"
               THEN KvmGmemConvertPrivate /\ convReq' # NoReq
               ELSE ~ENABLED KvmGmemConvertShared /\ UNCHANGED vars

\* Print the cursor each time it gets further than ever (TLC register 1).
ASSUME TLCSet(1, 1)
Reached(n) == IF n > TLCGet(1) THEN TLCSet(1, n) /\ PrintT(<<"poisoncheck-reached", n>>)
              ELSE TRUE

TraceStep ==
    /\ l <= Len(Steps)
    /\ Observed(Steps[l])
    /\ l' = l + 1
    /\ obs' = TRUE
    /\ pcOk' = PoisonContainedStep
    /\ Reached(l + 1)

TvNext == Hidden \/ ShutdownRest \/ TraceStep
TvSpec == TvInit /\ [][TvNext]_tvVars

TvNoHostAccess == obs => NoHostAccessToTdPageInv
TvNoPrivateHostMapping == obs => NoPrivateHostMappingInv
TvRefcount == obs => RefcountSoundInv
TvPoisonContained == pcOk
=============================================================================
"""


def _record(desc: tuple, folio: int | None) -> str:
    kind, *args = desc
    fields = {"k": kind, "a": 0, "ps": (), "to": "none", "check": "none",
              "fo": 0 if folio is None else folio + 1}     # 0: no folio (no Integers)
    if kind in ("convert", "convert_refused"):
        if kind == "convert":
            fields["a"], fields["to"] = args
        else:
            fields["ps"], fields["to"] = args
    elif kind == "design":
        fields["check"] = args[0]
    elif args:
        fields["a"] = args[0]
    return "[" + ", ".join(f"{k} |-> {_tla(v)}" for k, v in fields.items()) + "]"


def _tla(value) -> str:
    """Encode a value the planner made: ints, tuples of ints, or fixed words."""
    if isinstance(value, bool):
        raise ValueError("unexpected boolean in a trace step")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, tuple):
        return "<<" + ", ".join(_tla(v) for v in value) + ">>"
    if isinstance(value, str) and (value in _WORDS or value in model.ALL_CHECKS):
        return f'"{value}"'
    raise ValueError(f"refusing to write {value!r} into TLA+")


def write_module(path: Path, engine: Replay) -> None:
    folios = [f"f{i}" for i in range(1, len(engine.folios) + 1)]
    steps = ",\n    ".join(_record(desc, folio) for desc, _, folio, _, _ in engine.steps)
    header = [
        f"---- MODULE {TRACE_MODULE} ----",
        "\\* Generated by poisoncheck validate --engine tlc; do not edit.",
        "EXTENDS Poison, Sequences, TLC",
    ]
    if folios:
        header.append(f"CONSTANTS {', '.join(folios)}")
    header.append(f"FolioSeq == <<{', '.join(folios)}>>")
    header.append(f"Steps == <<\n    {steps}\n>>" if engine.steps else "Steps == <<>>")
    path.write_text("\n".join(header) + "\n" + MODULE_BODY)


def write_cfg(path: Path, engine: Replay) -> None:
    cfg = engine.cfg
    folios = [f"f{i}" for i in range(1, len(engine.folios) + 1)]
    kinds = [step[0][0] for step in engine.steps]
    quoted = lambda names: "{" + ", ".join(f'"{n}"' for n in sorted(names)) + "}"  # noqa: E731
    lines = ["CONSTANTS"] + [f"    {f} = {f}" for f in folios] + [
        f"    Folios = {{{', '.join(folios)}}}",
        f"    PagesPerFolio = {cfg.pages_per_folio if cfg else 1}",
        f'    Backing = "{cfg.backing if cfg else "buddy"}"',
        f'    Design = "{engine.design}"',
        f"    MaxRemoveFailures = {kinds.count('remove_failed')}",
        f"    MaxMemErrors = {kinds.count('memory_failure')}",
        f"    Disabled = {quoted(engine.disabled)}",
        f"    Added = {quoted(engine.added)}",
        f"    Features = {quoted(cfg.features if cfg else model.DEFAULT_FEATURES)}",
        "SPECIFICATION TvSpec",
    ] + [f"INVARIANT {name}" for name in PROPERTY_INVARIANTS]
    path.write_text("\n".join(lines) + "\n")


def _violations(output: str) -> list[tuple[str, int]]:
    """(property, cursor) of every invariant violation TLC printed."""
    found, current = [], None
    for msg in split_messages(output):
        if msg.code == INVARIANT_VIOLATED:
            name = re.match(r"Invariant (\w+) is violated", msg.text)
            current = [PROPERTY_INVARIANTS.get(name.group(1)) if name else None, None]
            found.append(current)
        elif msg.code == TRACE_STATE and current is not None:
            cursor = re.search(r"^/\\ l = (\d+)$", msg.text, re.MULTILINE)
            if cursor:
                current[1] = int(cursor.group(1))
    return [(prop, cursor) for prop, cursor in found if prop and cursor]


def validate_tlc(items, design: str, setup: TlcSetup, workdir: Path,
                 added=(), disabled=(), gmem_dev: tuple[int, int] | None = None,
                 gmem_dev_from: str | None = None,
                 features: frozenset = model.DEFAULT_FEATURES) -> Verdict:
    """Judge a trace with TLC; returns a Verdict like the Python engine's."""
    engine = Replay(design, added, disabled, judge=False, gmem_dev=gmem_dev, features=features)
    if gmem_dev_from:
        engine.planner.gmem_dev_from = gmem_dev_from
    lost_lines: list[int] = []
    last_line = 0
    for item in items:
        if isinstance(item, LostMarker):
            lost_lines.append(last_line)
        elif isinstance(item, Event):
            last_line = item.line_no
        engine.feed(item)
    if not engine.steps:
        return engine.result()      # inconclusive: nothing to judge
    # VM-wide steps with no folio are judged too (a design's hook in another design is a
    # violation); if they fit, the verdict stays inconclusive: nothing about a folio.
    if workdir.is_symlink():        # rmtree() refuses a symlink; the folder is ours to replace
        workdir.unlink()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    shutil.copy(setup.spec_dir / "Poison.tla", workdir / "Poison.tla")
    write_module(workdir / f"{TRACE_MODULE}.tla", engine)
    write_cfg(workdir / f"{TRACE_MODULE}.cfg", engine)
    tlc, _, output = run_tlc(setup, workdir / f"{TRACE_MODULE}.cfg", workdir,
                             module=workdir / f"{TRACE_MODULE}.tla", extra=("-continue",))
    if tlc.status == "error" and not _violations(output):
        raise RunnerError(f"TLC could not judge the trace: {tlc.error} "
                          f"(see {workdir / (TRACE_MODULE + '.out')})")
    reached = max([1] + [int(n) for n in _REACHED.findall(output)])
    total = len(engine.steps)
    failing_step = reached if reached <= total else None            # 1-based step index
    broken = sorted(_violations(output), key=lambda pc: pc[1])
    property_step = None
    if broken:
        prop, cursor = broken[0]
        property_step = cursor - 1                                  # the step just taken
    verdict = engine.result()
    lost_before = lambda line: any(at < line for at in lost_lines)  # noqa: E731
    if property_step is not None and (failing_step is None or property_step < failing_step):
        line = engine.steps[property_step - 1][1]
        _fill(verdict, engine, property_step, line, "property", prop, lost_before(line))
    elif failing_step is not None:
        line = engine.steps[failing_step - 1][1]
        _fill(verdict, engine, failing_step, line, "step", None, lost_before(line))
    elif lost_lines:
        verdict.verdict = "inconclusive"
    elif engine.verdict.folio_events:
        verdict.verdict, verdict.reason = "accepted", None
    return verdict


def _fill(verdict: Verdict, engine: Replay, step: int, line: int, kind: str,
          prop: str | None, after_loss: bool) -> None:
    desc, _, _, raw, event = engine.steps[step - 1]
    earlier = [st[1] for st in engine.steps[:step - 1] if st[1] < line]
    verdict.accepted_prefix = max(earlier, default=0)
    if after_loss:
        verdict.verdict = "inconclusive"
        return
    verdict.verdict, verdict.kind, verdict.property, verdict.line = "violation", kind, prop, line
    verdict.protocol_event, verdict.event = event, raw
    verdict.reason = (f"TLC: no behaviour of {engine.design} takes trace step {step} ({desc[0]})"
                      if kind == "step" else f"TLC: {prop} is violated after trace step {step}")

