"""Where the trace's folios are: the planner's table of identities (see planner.py).

A **folio** of the model is a physical page (or huge page), keyed by pfn; a **file slot**
(a guest_memfd file and an index in it) is bound to whichever folio the page cache holds
there now.  A host runs many VMs, each with its own guest_memfd files, so a slot's key
holds its file: `file number << FILE_SHIFT | index`, the file numbered in the order the
trace names its inode (an event that names no inode is about the trace's only file).  Pages
of small folios are found by table, those of big ones by range (their pages are runs:
big_folios.py).  Page numbers below `forgotten` belong to folios seen before lost events.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from dataclasses import dataclass, field
from typing import Callable

from validator.replay.big_folios import EXACT_PAGES, NeedsSurvey, SlotPlan, plan_of, run_of, runs_of

STRUCT_PAGE_SIZE = 64           # sizeof(struct page) on x86-64 (checked by two links)
FILE_SHIFT = 52                 # slot key = file << FILE_SHIFT | index (filemap's ofs < 2^63)


class PlanInputError(Exception):
    """An event the replay cannot read (a needed field missing); exit code 2."""


class AmbiguousFile(Exception):
    """An event names an index but no inode, and the trace has several guest_memfd files."""


@dataclass
class Folio:
    pfn: int
    pages: int
    index: int | None       # the slot key it is bound to now (None: not cached)
    file: int | None = None     # the file it first entered (its number, see FolioTable.file_of)
    runs: tuple[int, ...] | None = None     # a big folio: its runs' first offsets (SlotPlan)


@dataclass
class PageLinks:
    """struct page pointers -> pfns.  Pointers seen beside a pfn are exact; any other
    pointer is computed from the vmemmap base once two links agree on it."""
    exact: dict[int, int] = field(default_factory=dict)
    base: int | None = None
    conflict: bool = False

    def add(self, page: int, pfn: int) -> None:
        self.exact[page] = pfn
        base = page - pfn * STRUCT_PAGE_SIZE
        if self.base is None and len(self.exact) >= 2:
            bases = {p - f * STRUCT_PAGE_SIZE for p, f in self.exact.items()}
            if len(bases) == 1:
                self.base = base
            else:
                self.conflict = True
        elif self.base is not None and base != self.base:
            self.base, self.conflict = None, True

    def pfn_of(self, page: int) -> int | None:
        pfn = self.exact.get(page)
        if pfn is None and self.base is not None and not self.conflict:
            offset = page - self.base
            if offset >= 0 and offset % STRUCT_PAGE_SIZE == 0:
                pfn = offset // STRUCT_PAGE_SIZE
        return pfn


class FolioTable:
    """The folios a trace revealed and how pfns, indexes and struct page pointers name their
    pages.  `on_new_folio(pages)` is called for each new folio (pages: model pages)."""

    def __init__(self, on_new_folio: Callable[[int], None], slot_plan: SlotPlan | None = None,
                 survey: bool = False):
        self.on_new_folio = on_new_folio
        self.slot_plan = slot_plan
        self.survey = survey                    # only collect the offsets big folios name
        self.cuts: dict[int, set[int]] = {}     # survey: head pfn -> where its runs start
        self.real_pages: int | None = None      # pages of the trace's folios (one size)
        self.big: dict[int, int] = {}           # first pfn -> folio, of folios > EXACT_PAGES
        self.bound: dict[int, int] = {}         # first index -> folio, of big folios cached
        self.bound_starts: list[int] = []       # ... its keys, sorted
        self.pages_per_folio: int | None = None
        self.folios: list[Folio] = []
        self.by_pfn: dict[int, int] = {}        # pfn -> page number
        self.by_index: dict[int, int] = {}      # slot key (file, index) -> page number
        self.file_numbers: dict[int, int] = {}  # inode -> file number
        self.file_inodes: list[int | None] = [] # file number -> inode (None: never named)
        self.starts: list[int] = []             # first pfns of the folios, sorted
        self.forgotten = 0                      # pages numbered below: seen before lost events
        self.links = PageLinks()

    def file_of(self, ino) -> int:
        """The number of the file with inode `ino`; for None, the trace's only file (the
        first inode named later is that file).  Raises AmbiguousFile when the trace has
        several files."""
        inodes = self.file_inodes
        if ino is None:
            if len(inodes) > 1:
                raise AmbiguousFile()
            if not inodes:
                inodes.append(None)
            return 0
        number = self.file_numbers.get(ino)
        if number is None:
            if inodes == [None]:        # the unnamed file until now: this is its inode
                inodes[0] = ino
                number = 0
            else:
                number = len(inodes)
                inodes.append(ino)
            self.file_numbers[ino] = number
        return number

    def slot_key(self, ino, index: int) -> int:
        """The key of index `index` of the file with inode `ino` (see file_of)."""
        if index >> FILE_SHIFT:
            raise PlanInputError(f"index {index:#x} is beyond any guest_memfd's size")
        return self.file_of(ino) << FILE_SHIFT | index

    def folio_of_page(self, page: int) -> int:
        return page // self.pages_per_folio

    def forget(self) -> None:
        """After lost events nothing is known of the folios seen so far."""
        if self.pages_per_folio is not None:
            self.forgotten = len(self.folios) * self.pages_per_folio

    def _new_folio(self, line: int, pfn: int, order: int, file: int | None = None) -> int:
        pages = 1 << order
        if self.real_pages is None:
            self.real_pages = pages
            self.pages_per_folio = pages if pages <= EXACT_PAGES else self._model_pages()
        elif pages != self.real_pages:
            raise PlanInputError(
                f"line {line}: a folio of order {order} after folios of "
                f"{self.real_pages} pages; the replay needs one folio size per trace")
        f = len(self.folios)
        folio = Folio(pfn, pages, None, file)
        self.folios.append(folio)
        if pages <= EXACT_PAGES:
            for i in range(pages):
                self.by_pfn[pfn + i] = f * pages + i
        else:
            folio.runs = self.slot_plan.starts.get(pfn, (0,)) if self.slot_plan else (0,)
            self.big[pfn] = f
        insort(self.starts, pfn)
        self.on_new_folio(self.pages_per_folio, file)
        return f

    def _model_pages(self) -> int:
        if self.survey:
            return 1                # no model: a folio's page number is the folio's
        if self.slot_plan is None:
            raise NeedsSurvey()
        return self.slot_plan.pages

    def surveyed(self) -> SlotPlan:
        """The survey's result: the runs of each big folio (see SlotPlan)."""
        return plan_of(self.cuts, self.real_pages)

    def _cut(self, folio: int, lo: int, hi: int) -> None:
        """Survey: offsets lo..hi-1 of a big folio are named together."""
        cuts = self.cuts.setdefault(self.folios[folio].pfn, set())
        cuts.add(lo)
        cuts.add(hi)

    def _slot(self, folio: int, offset: int) -> int:
        """The model page of a big folio's page at `offset`: its run's."""
        if self.survey:
            self._cut(folio, offset, offset + 1)
            return folio
        i = run_of(self.folios[folio].runs, offset, self.real_pages)
        if i is None:       # a bug: the survey and the replay read the same events
            raise AssertionError(f"the survey did not see page {offset} of the folio at "
                                 f"pfn {self.folios[folio].pfn:#x}")
        return folio * self.pages_per_folio + i

    def _runs_in(self, folio: int, lo: int, hi: int) -> list[int]:
        """The model pages of offsets lo..hi-1 of a big folio: one per run."""
        if self.survey:
            self._cut(folio, lo, hi)
            return [folio]
        runs = runs_of(self.folios[folio].runs, lo, hi, self.real_pages)
        if runs is None:
            raise AssertionError(f"the survey did not see pages {lo}..{hi - 1} of the folio "
                                 f"at pfn {self.folios[folio].pfn:#x}")
        first = folio * self.pages_per_folio
        return [first + i for i in runs]

    def _page_of_pfn(self, pfn, whole: bool = False) -> int | None:
        """The page number of a pfn; -1: a folio forgotten after lost events.  whole: the
        event is about the folio (any page of it will do, see _in_big)."""
        return self._page_of(pfn, self.by_pfn, self.starts, self.big, whole)

    def _page_of_index(self, index, whole: bool = False) -> int | None:
        """The page number of a slot (its key, slot_key()); -1: forgotten after lost events."""
        return self._page_of(index, self.by_index, self.bound_starts, self.bound, whole)

    def _page_of(self, value, table: dict[int, int], starts: list[int],
                 big: dict[int, int], whole: bool = False) -> int | None:
        """A folio page by the table of small folios' pages, else by the range of a big
        folio (`starts`: sorted first values; `big`: first value -> folio)."""
        if not isinstance(value, int):
            return None
        page = table.get(value)
        if page is None and big:
            page = self._in_big(value, starts, big, whole)
        if page is not None and page < self.forgotten:
            return -1
        return page

    def _in_big(self, value: int, starts: list[int], big: dict[int, int],
                whole: bool = False) -> int | None:
        """The model page of a big folio whose range holds `value` (see _page_of).  For an
        event about the whole folio (whole), its first: such an event names every page
        alike, so it neither needs nor cuts a run of its own."""
        i = bisect_right(starts, value) - 1
        if i >= 0:
            f = big.get(starts[i])
            if f is not None and value < starts[i] + self.real_pages:
                if whole:
                    return f * self.pages_per_folio
                return self._slot(f, value - starts[i])
        return None

    def _bind(self, folio: int, index: int | None) -> None:
        """The page cache holds `folio` at slot `index` (a key) now (a refill may move a pfn)."""
        self._unbind(folio)
        if index is None:
            return
        f = self.folios[folio]
        f.index = index
        if f.runs is not None:      # a big folio: one entry, looked up by range
            old = self.bound.get(index)
            if old is not None:
                self.folios[old].index = None
            else:
                insort(self.bound_starts, index)
            self.bound[index] = folio
            return
        first = folio * f.pages
        for i in range(f.pages):
            self.by_index[index + i] = first + i

    def _unbind(self, folio: int) -> None:
        f = self.folios[folio]
        if f.index is None:
            return
        if f.runs is not None:
            if self.bound.get(f.index) == folio:
                del self.bound[f.index]
                self.bound_starts.remove(f.index)
            f.index = None
            return
        first = folio * f.pages
        for i in range(f.pages):
            if self.by_index.get(f.index + i) == first + i:
                del self.by_index[f.index + i]
        f.index = None

    def release(self, folio: int) -> None:
        """The folio leaves the replay's view (it entered a file the replay does not judge):
        its pfns name nothing from now on, and a later return of them is a new folio."""
        self._unbind(folio)
        f = self.folios[folio]
        if f.runs is None:
            for i in range(f.pages):
                self.by_pfn.pop(f.pfn + i, None)
        else:
            self.big.pop(f.pfn, None)
        if f.pfn in self.starts:
            self.starts.remove(f.pfn)

    def _folios_in(self, pfn: int, order: int) -> list[tuple[int, bool]]:
        """The folios a block of 2^order pages at pfn covers: (folio, exactly that folio)."""
        pages = self.real_pages
        if order == 0:
            page = self._page_of_pfn(pfn, whole=True)
            if page is None or page < 0:
                return []
            folio = self.folio_of_page(page)
            return [(folio, self.folios[folio].pfn == pfn and pages == 1)]
        end = pfn + (1 << order)
        out = []
        i = max(0, bisect_right(self.starts, pfn) - 1)
        while i < len(self.starts) and self.starts[i] < end:
            page = self._page_of_pfn(self.starts[i], whole=True)
            if page >= 0 and self.starts[i] + pages > pfn:
                out.append((self.folio_of_page(page),
                            self.starts[i] == pfn and 1 << order == pages))
            i += 1
        return out
