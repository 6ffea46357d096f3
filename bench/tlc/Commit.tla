------------------------------- MODULE Commit -------------------------------
(***************************************************************************)
(* A yardstick for TLC's own speed (bench/tlc_speed.py), written for this  *)
(* project: an atomic-commit protocol with a coordinator and N workers.    *)
(* Each worker votes yes or no on its own; the coordinator collects votes  *)
(* over a message set and decides; every worker learns the decision.      *)
(* Cheap to evaluate (small sets, no recursion), many states.              *)
(***************************************************************************)
EXTENDS FiniteSets

CONSTANT Workers

VARIABLES worker, coord, votes, msgs

vars == << worker, coord, votes, msgs >>

Messages ==
    [kind : {"yes", "no"}, from : Workers] \cup [kind : {"commit", "abort"}]

Init ==
    /\ worker = [w \in Workers |-> "working"]
    /\ coord = "collecting"
    /\ votes = {}
    /\ msgs = {}

VoteYes(w) ==
    /\ worker[w] = "working"
    /\ worker' = [worker EXCEPT ![w] = "ready"]
    /\ msgs' = msgs \cup {[kind |-> "yes", from |-> w]}
    /\ UNCHANGED << coord, votes >>

VoteNo(w) ==
    /\ worker[w] = "working"
    /\ worker' = [worker EXCEPT ![w] = "aborted"]
    /\ msgs' = msgs \cup {[kind |-> "no", from |-> w]}
    /\ UNCHANGED << coord, votes >>

CountYes(w) ==
    /\ coord = "collecting"
    /\ [kind |-> "yes", from |-> w] \in msgs
    /\ w \notin votes
    /\ votes' = votes \cup {w}
    /\ UNCHANGED << worker, coord, msgs >>

Commit ==
    /\ coord = "collecting"
    /\ votes = Workers
    /\ coord' = "committed"
    /\ msgs' = msgs \cup {[kind |-> "commit"]}
    /\ UNCHANGED << worker, votes >>

Abort ==
    /\ coord = "collecting"
    /\ \E w \in Workers : [kind |-> "no", from |-> w] \in msgs
    /\ coord' = "aborted"
    /\ msgs' = msgs \cup {[kind |-> "abort"]}
    /\ UNCHANGED << worker, votes >>

Learn(w) ==
    /\ worker[w] \in {"working", "ready"}
    /\ \/ [kind |-> "commit"] \in msgs /\ worker' = [worker EXCEPT ![w] = "committed"]
       \/ [kind |-> "abort"] \in msgs /\ worker' = [worker EXCEPT ![w] = "aborted"]
    /\ UNCHANGED << coord, votes, msgs >>

Next ==
    \/ Commit \/ Abort
    \/ \E w \in Workers : VoteYes(w) \/ VoteNo(w) \/ CountYes(w) \/ Learn(w)

Spec == Init /\ [][Next]_vars

TypeOK ==
    /\ worker \in [Workers -> {"working", "ready", "committed", "aborted"}]
    /\ coord \in {"collecting", "committed", "aborted"}
    /\ votes \subseteq Workers
    /\ msgs \subseteq Messages

Agreement ==
    \A v, w \in Workers : ~(worker[v] = "committed" /\ worker[w] = "aborted")
=============================================================================
