"""The replay's candidate states, kept factored (the Python engine's judge).

What the trace cannot show is left open as a set of candidate states, and hidden steps are
composed in front of the observed one (as CCF's trace validation composes actions),
limited to the event's own folio: every guard of an observed action reads only that
folio's pages and the VM-wide state.

The set is kept factored, so that the cost of an event does not depend on how many folios
the trace has shown.  A model.State splits into a VM-wide part G = (vm, tdx, otherTds, fd,
convReq) and one part per folio X_f = (folioLoc[f] and the f's pages of tdxRefs, attr, sept,
mirror, hostMap, hostPin, hwpoison, bad, unreset).  The set is a union of *branches*, each
a product {G} x S_1 x ... x S_n of one VM-wide part and one non-empty set of parts per folio
(`_Branch`).  This is exact, not an approximation:

* every observed step (with its hidden steps) on folio f reads and writes
  only G and X_f (the mirror's actions index pages of f only), except
  KvmGmemBuggyCleanup, which also poisons and unmaps every other folio in
  guest_memfd: a function of each X_h alone, applied to every S_h;
* so a step maps {G} x S_f x (rest) to the union over G' of
  {G'} x S'_f(G') x (rest'), where rest' is rest, or rest mapped folio by
  folio by the cleanup: again a union of products, computed from S_f alone;
* the state properties are a conjunction over folios of conditions on
  (G.tdx, X_f), and of G alone (NoHostAccessToTdPage reads sept, unreset, tdx
  and the folio's host access, and G.otherTds; NoPrivateHostMapping and
  RefcountSound read one folio each; a step sees G in its own view), and
  PoisonContained compares one folio before and after; since every S_h is
  non-empty, "some candidate breaks a property" is "some branch has some
  folio part that breaks it", and only the parts a step changed (or all
  parts of a branch whose tdx changed to or from "off") need a look;
* removeFailures and memErrors are not kept: with unbounded budgets no guard
  reads them, so they never change which step fits (candidate states in a
  verdict show them as null).

Transitions are computed on a one-folio view of the state (the mirror's own functions, on
a Config with one folio; validator/replay/candidates.py) and memoised by (step, G, S_f);
sets of folio parts are interned, so the usual event costs a dictionary lookup.
validator/replay/reference.py keeps the unfactored engine, a set of whole states, as the
reference the tests compare against.
"""

from __future__ import annotations

from itertools import chain, product
from typing import NamedTuple

from validator.model import mirror as model
from validator.replay.candidates import (_FOLIO_ARG, _PAGE_ARG, MEMO_LIMIT, PROPERTY_BITS,
                                         _Branch, _changes_others, _Context, _context,
                                         _folio_part, _localize, _view, _vm_part)
from validator.replay.steps import _first_reasons, _StepFailed, build_step, host_closure
from validator.replay.verdict import Coverage


class Refusal(NamedTuple):
    """Why a step does not fit."""
    kind: str                           # "step" (no candidate takes it) or "property"
    property: str | None                # the property broken (kind "property")
    guards: list[str]                   # the guards that refused, or the property's words
    detail: str = ""                    # the steps a broken property's event may stand for


class CandidateSet:
    """The candidate states of one replay: a union of branches (see the module docstring).
    `take()` takes one planned step from every candidate."""

    def __init__(self, design: str, added: frozenset, disabled: frozenset,
                 features: frozenset, coverage: Coverage):
        self.design, self.added, self.disabled, self.features = design, added, disabled, features
        self.coverage = coverage
        self.branches: list[_Branch] = []
        self.ctx: _Context | None = None
        self.pages: int | None = None           # model pages per folio
        self._init_parts: dict[str, int] = {}   # "private" | "shared" -> the Init part set
        self._covered: dict[int, tuple] = {}    # transitions already in self.coverage

    def start(self, pages: int) -> None:
        """Init (of no folio yet), or the VM-wide parts the steps before any folio reached
        (those ran on a one-page view; the first folio sets the real size)."""
        ctx = self.ctx = _context(self.design, pages, self.added, self.disabled, self.features)
        self.pages = pages
        gs = [b.g for b in self.branches] or [_vm_part(model.init(ctx.vm_only))]
        self.branches = [_Branch(ctx.g(g), []) for g in dict.fromkeys(gs)]
        init = model.init(ctx.local)
        self._init_parts = {
            attr: ctx.intern(frozenset({_folio_part(init._replace(attr=(attr,) * pages))}))
            for attr in ("private", "shared")}

    def add_folio(self, file: int | None = None, init: str | None = None) -> None:
        """A folio of `file` enters the replay; its pages start `init` ("private" or
        "shared"), or, where the capture does not say (None), as the branch's reading of
        the file has it: a branch that has none yet splits into one reading each."""
        parts = self._init_parts
        if init is not None:
            for b in self.branches:
                b.parts.append(parts[init])
            return
        branches = []
        for b in self.branches:
            attr = b.reading.get(file)
            if attr is not None:
                b.parts.append(parts[attr])
                branches.append(b)
                continue
            for attr in ("private", "shared"):
                branches.append(_Branch(b.g, b.parts + [parts[attr]], {**b.reading, file: attr}))
        self.branches = branches

    def forget(self, first: int, stop: int) -> None:
        """Drop the parts of folios first..stop-1 (see Replay._forget_known_folios)."""
        for b in self.branches:
            for h in range(first, stop):
                b.parts[h] = None

    def take(self, desc: tuple, folio: int | None) -> Refusal | None:
        """Take the step `desc` (on `folio`, None: the VM's) from every candidate; None when
        it fits, else why not (the set is then unchanged: shown() shows it)."""
        ctx = self.ctx
        if ctx is None:
            # No folio yet: the VM-wide steps before it act on Init's VM-wide part.
            self.start(1)
            ctx = self.ctx
            if folio is not None:
                raise AssertionError("a folio's step before the folio")
        if folio is None:
            base, local = None, desc
        else:
            base = folio * self.pages
            kind = desc[0]      # _localize(desc, base), its usual cases inline
            local = ((kind, desc[1] - base) if kind in _PAGE_ARG else (kind, 0)
                     if kind in _FOLIO_ARG else _localize(desc, base))
        if len(self.branches) == 1:
            # The usual case, one product whose VM-wide part the step keeps or changes
            # alone: update it in place.
            b = self.branches[0]
            g = b.g
            gl = g if g[4] is None else self._local_g(g, base)
            part = b.parts[folio] if folio is not None else None
            r = ctx.memo.get((local, gl, part))
            if r is None:
                r = ctx.transition(local, gl, part)
            groups = r.groups
            if len(groups) == 1 and not r.broken:
                gl2, part2 = groups[0]
                if gl2 is gl or not _changes_others(gl, gl2):
                    if id(r) not in self._covered:
                        if len(self._covered) >= MEMO_LIMIT:
                            self._covered.clear()
                        self._covered[id(r)] = r
                        self.coverage.actions |= r.taken
                        self.coverage.refusals |= r.refused | r.named
                    if gl2 is not gl:
                        b.g = self._global_g(gl2, g, base)
                    if folio is not None:
                        b.parts[folio] = part2
                    return None
        return self._take_each(local, folio, base)

    def _take_each(self, local: tuple, folio: int | None, base: int | None) -> Refusal | None:
        """take() on several branches, or on a step that changes the other folios."""
        transition = self.ctx.transition
        results = []
        mask = 0
        alive = False
        effects = False
        for b in self.branches:
            g = b.g
            gl = g if g[4] is None else self._local_g(g, base)
            r = transition(local, gl, b.parts[folio] if folio is not None else None)
            results.append((b, gl, r))
            if r.groups:
                alive = True
                mask |= r.broken
                for gl2, _ in r.groups:
                    if gl2 is not gl and _changes_others(gl, gl2):
                        effects = True
        cov = self.coverage
        for _, _, r in results:
            if alive:
                cov.actions |= r.taken
                cov.refusals |= r.refused
            cov.refusals |= r.named
        if not alive:
            return Refusal("step", None, self._reasons(local, folio, base))
        if mask:
            taken = frozenset().union(*(r.taken for _, _, r in results))
            return self._property(mask, taken)
        new: list[_Branch] = []
        for b, gl, r in results:
            groups = r.groups
            last = len(groups) - 1
            for i, (gl2, part2) in enumerate(groups):
                g2 = b.g if gl2 is gl else self._global_g(gl2, b.g, base)
                nb = b if i == last and not effects else _Branch(g2, list(b.parts), b.reading)
                nb.g = g2
                if folio is not None:
                    nb.parts[folio] = part2
                if effects and gl2 is not gl and _changes_others(gl, gl2):
                    mask |= self._others(nb, gl, gl2, folio)
                new.append(nb)
        if mask:                    # only with effects: self.branches is untouched
            return self._property(mask)
        self.branches = new if len(new) == 1 else self._merge(new, folio)
        return None

    @staticmethod
    def _property(mask: int, taken=frozenset()) -> Refusal:
        prop = PROPERTY_BITS[(mask & -mask).bit_length() - 1]
        steps = f" (the steps it may stand for are {', '.join(sorted(taken))})" if taken else ""
        return Refusal("property", prop,
                       [f"a state the trace may be in after this event breaks {prop}"], steps)

    def _others(self, b: _Branch, gl: tuple, gl2: tuple, folio: int | None) -> int:
        """Apply a step's effect on the folios it did not name (see _changes_others)."""
        mask = 0
        other = self.ctx.other
        for h, part in enumerate(b.parts):
            if h != folio and part is not None:
                b.parts[h], broken = other(gl, gl2, part)
                mask |= broken
        return mask

    def _local_g(self, g: tuple, base: int | None) -> tuple:
        """The VM-wide part as the one-folio view of folio `base` sees it: a pending
        conversion of another folio's page becomes page -1 (it blocks requests)."""
        page, to = g[4]
        local = page - base if base is not None and 0 <= page - base < self.pages else -1
        return self.ctx.g(g[:4] + ((local, to),))

    def _global_g(self, gl: tuple, g: tuple, base: int | None) -> tuple:
        req = gl[4]
        if req is None:
            return gl
        if req[0] < 0:
            return self.ctx.g(gl[:4] + (g[4],))
        return self.ctx.g(gl[:4] + ((req[0] + base, req[1]),))

    def _merge(self, branches: list[_Branch], folio: int | None) -> list[_Branch]:
        """Join branches with one VM-wide part whose parts differ at most at `folio`
        ({g} x A x R  u  {g} x B x R  =  {g} x (A u B) x R)."""
        out: list[_Branch] = []
        for b in branches:
            for a in out:
                if a.g is not b.g or a.reading != b.reading:
                    continue
                if folio is None:
                    if a.parts == b.parts:
                        break
                    continue
                mine = b.parts[folio]
                b.parts[folio] = a.parts[folio]
                same = a.parts == b.parts
                b.parts[folio] = mine
                if same:
                    if mine != a.parts[folio]:
                        sets = self.ctx.sets
                        a.parts[folio] = self.ctx.intern(sets[a.parts[folio]] | sets[mine])
                    break
            else:
                out.append(b)
        return out

    def _reasons(self, local: tuple, folio: int | None, base: int | None) -> list[str]:
        """The guards that refused the step, worded with the trace's page numbers."""
        ctx = self.ctx
        step = build_step(local, shown_base=base or 0)
        cfg = ctx.local if folio is not None else ctx.vm_only
        why: list[str] = []
        for b in self.branches:
            gl = b.g if b.g[4] is None else self._local_g(b.g, base)
            xs = sorted(ctx.sets[b.parts[folio]], key=repr) if folio is not None else [None]
            for x in xs:
                s = _view(gl, x)
                closure = host_closure(cfg, s, 0) if x is not None else [s]
                for u in sorted(closure, key=repr):
                    try:
                        step(cfg, u)
                    except _StepFailed as failed:
                        why.extend(failed.guards or [failed.reason])
        return _first_reasons(why)

    @staticmethod
    def _whole(g: tuple, parts: list) -> model.State:
        """The model.State of VM-wide part g and one part per folio."""
        per_page = [tuple(chain.from_iterable(x[i] for x in parts)) for i in range(1, 11)]
        return model.State(tuple(x[0] for x in parts), *per_page[:8], g[0], g[1], g[2], g[3], g[4],
                           None, None, *per_page[8:])

    def shown(self, folio: int | None, cfg: model.Config, limit: int = 8) -> list[dict]:
        """Some candidate states (the folio's parts vary), as TLA+ values of cfg."""
        sets, out = self.ctx.sets, []
        for b in self.branches:
            if any(p is None for p in b.parts):
                continue
            firsts = [min(sets[p], key=repr) for p in b.parts]
            for x in (sorted(sets[b.parts[folio]], key=repr) if folio is not None else [None]):
                parts = list(firsts)
                if x is not None:
                    parts[folio] = x
                out.append(model.to_tla(cfg, self._whole(b.g, parts)))
                if len(out) == limit:
                    return out
        return out

    def states(self) -> set[model.State]:
        """Every candidate state, expanded (for tests: exponential in general)."""
        sets, out = self.ctx.sets if self.ctx else [], set()
        for b in self.branches:
            for parts in product(*(sorted(sets[p], key=repr) for p in b.parts if p is not None)):
                out.add(self._whole(b.g, list(parts)))
        return out
