"""What each design costs, computed over the reachable states of the Python mirror.

The mirror's reachable graph equals TLC's (tests/model/test_conformance_graph.py), so
exploring it here is exploring the spec.  Along each path the explorer also
remembers which pages were *bad*: a removal failed on them or a hardware
memory error hit them.  Then, over every reachable state:

* collateral leak: pages of folios no allocator hands out again (leaked,
  truncated while TDX still holds a reference, or poisoned on the HugeTLB free
  list) that were never bad;
* blast radius: whether some behaviour kills the other TDs on the host (with
  `cross_td`: another TD's guest_memfd may get a freed page and AUG it).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from validator import model


@dataclass
class Cost:
    design: str
    backing: str
    folios: int
    pages_per_folio: int
    states: int                 # reachable (state, bad pages) pairs explored
    collateral_pages: int       # worst case over the reachable states
    collateral_of: int          # ... out of this many pages in the model
    leaked_pages: int           # worst case, bad pages included
    other_tds_die: bool
    blast_radius: str           # BLAST[...]: the worst over the reachable states
    witness: list[str]          # actions of a shortest path to the worst collateral leak

    def to_json(self) -> dict:
        return self.__dict__.copy()


def stranded_pages(cfg: model.Config, s: model.State) -> list[int]:
    """Pages of folios no allocator will hand out again: leaked, truncated while
    TDX holds a reference, or poisoned on the HugeTLB free list (dequeue skips it)."""
    out = []
    for f in range(cfg.folios):
        stuck = (s.folioLoc[f] == "leaked"
                 or (s.folioLoc[f] == "detached" and any(s.tdxRefs[p] for p in cfg.pages_of(f)))
                 or (s.folioLoc[f] == "pool" and not model.may_hand_out(cfg, s, f)))
        if stuck:
            out.extend(cfg.pages_of(f))
    return out


BLAST = ("none", "the TD that gets it", "every other TD")


def blast_rank(s: model.State) -> int:
    """0: no other TD died; 1: one did (its AUG of a page still assigned to this
    TD failed); 2: all did (a buggy shutdown)."""
    if s.otherTds == "alive":
        return 0
    return 2 if s.tdx in ("off", "off_dirty") else 1


def compute_cost(cfg: model.Config) -> Cost:
    start = (model.init(cfg), frozenset())
    parent: dict = {start: None}
    todo = deque([start])
    worst, worst_node, leaked, blast = -1, start, 0, 0
    while todo:
        node = todo.popleft()           # breadth first: the witness is a shortest path
        s, bad = node
        stranded = stranded_pages(cfg, s)
        collateral = sum(1 for p in stranded if p not in bad)
        if collateral > worst:
            worst, worst_node = collateral, node
        leaked = max(leaked, len(stranded))
        blast = max(blast, blast_rank(s))
        for name, params, t in model.successors(cfg, s):
            hit = params[0] if name in ("TdxSeptRemoveFailed", "MemoryFailure") else None
            nxt = (t, bad | {hit} if hit is not None else bad)
            if nxt not in parent:
                parent[nxt] = (node, name)
                todo.append(nxt)
    return Cost(cfg.design, cfg.backing, cfg.folios, cfg.pages_per_folio, len(parent), worst,
                cfg.pages, leaked, blast > 0, BLAST[blast], _path(parent, worst_node))


def _path(parent: dict, node) -> list[str]:
    """The actions leading to node."""
    actions = []
    while parent[node] is not None:
        node, name = parent[node]
        actions.append(name)
    return actions[::-1]


COST_CONFIGS = (("buddy", 2, 1), ("hugetlb", 1, 2))   # (backing, folios, pages per folio)
COST_FEATURES = model.DEFAULT_FEATURES | {"cross_td"}


def design_costs(designs=model.DESIGNS) -> list[Cost]:
    """Each design's price for one failed removal, on both backings.  No memory
    error: a hardware error strands a poisoned HugeTLB folio under every design
    (upstream behaviour), which would hide the designs' own cost."""
    out = []
    for design in designs:
        for backing, folios, pages in COST_CONFIGS:
            cfg = model.Config(design, backing, folios=folios, pages_per_folio=pages,
                               max_remove_failures=1, max_mem_errors=0,
                               features=COST_FEATURES)
            out.append(compute_cost(cfg))
    return out
