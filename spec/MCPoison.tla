------------------------------ MODULE MCPoison ------------------------------
(***************************************************************************)
(* TLC wrapper for Poison.  Constants come from the generated .cfg files   *)
(* (poisoncheck check writes one per run of spec/matrix.toml into build/). *)
(***************************************************************************)
EXTENDS Poison, TLC

\* Folios are interchangeable: every action treats them alike.  Used for
\* safety runs only; TLC can miss liveness violations under symmetry.
FolioSymmetry == Permutations(Folios)
=============================================================================
