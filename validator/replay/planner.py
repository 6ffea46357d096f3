"""Which page or folio of the model each protocol event is about: the replay's planner.

The planner turns an Observed protocol event into Resolved events (validator/replay/resolved.py):
its kind and the model's numbers for it.  What a Resolved event *does* to the model is not
decided here: validator/replay/meaning.py decides it for the Python engine, the IsX operators of
spec/PoisonTrace.tla for the TLC engine, so that the two engines check each other.  The
planner keeps the identities the trace reveals apart (the table of them: folio_table.py):

* a **folio** of the model is a physical page (or huge page), keyed by pfn;
* a **file slot** (a guest_memfd index) is bound to whichever folio the page
  cache holds there now.  On a real kernel a punched index is refilled with
  another pfn, and a freed pfn goes to other users at once and may come back
  later at another index (docs/real-kernel.md, "Orders seen");
* a **struct page pointer** (probes that cannot print a pfn) is linked to its
  pfn by the page-cache add of the same index, and once two such links agree
  on the vmemmap base, any pointer is (PageLinks);
* a **big folio** (more than big_folios.EXACT_PAGES pages) is replayed on runs of its pages
  (big_folios.py).

Two facts sit on the border between identity and meaning, and are kept here as facts
about the sequence of events on a pfn, with their consequences left to the meaning:

* the **claim**: an allocation of exactly a tracked folio may be guest_memfd's own; the
  planner remembers it and marks the folio's next event `lapsed` unless that event is a
  page-cache add (which confirms it).  Which event follows which on a pfn is bookkeeping;
  that a lapsed claim means another user holds the page is meaning.
* **strictness of a free**: the planner says whether guest_memfd's page cache is observed
  in the capture (`cached`) and whether the folio's previous event was guest_memfd's own
  free-path hook (`after_gmem_free`); whether a free may then hide a truncation is meaning.

Both engines use this planner; the TLC engine writes its Resolved events into TLA+.
"""

from __future__ import annotations

from typing import Callable

from validator.replay.big_folios import SlotPlan
from validator.replay.folio_table import FILE_SHIFT, AmbiguousFile, FolioTable, PlanInputError
from validator.replay.resolved import (BLOCK_KINDS, GMEM_FREE_KINDS, PAGE_KINDS,
                                       PFN_FOLIO_KINDS, RET_LIMIT, RET_MIN, RET_OTHER,
                                       VM_KINDS, Resolved, small_ret)

PAGE_SHIFT = 12                 # x86: filemap's ofs = index << PAGE_SHIFT
GUEST_MEMFD_FLAG_INIT_SHARED = 1 << 1   # include/uapi/linux/kvm.h
MAX_ORDER = 18                  # a 1G HugeTLB folio; the buddy allocator stops at 10
# Events named by a pfn (or a struct page pointer): the most common ones.
BY_PFN_KINDS = PAGE_KINDS | PFN_FOLIO_KINDS
# Why an event on a pfn (or a block) is skipped, the most common reason, made once per kind
NOT_ALLOCATED = {name: f"{name} on a pfn guest_memfd has not allocated (yet) in the trace"
                 for name in BY_PFN_KINDS | BLOCK_KINDS}
_new_tuple = tuple.__new__


class Unrelated(Exception):
    """The event does not concern a folio the replay tracks (counted, with the reason)."""


# Fields the planner reads as unsigned numbers (ret may be negative; page is a pointer).
NUMBERS = ("pfn", "order", "index", "start", "end", "ofs", "major", "minor", "ino")
NUMBER_KEYS = frozenset(NUMBERS)
U64 = 1 << 64


def _check_numbers(name: str, line: int, fields: dict) -> None:
    """Refuse the first field of NUMBERS (in that order) that is not an unsigned number."""
    for key in NUMBERS:
        value = fields.get(key)
        if value is not None and (type(value) is not int or not 0 <= value < U64):
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:36] + "...'"
            raise PlanInputError(f"line {line}: {name}: {key}={shown} is not a "
                                 f"number the kernel prints there")


def parse_dev(text: str) -> tuple[int, int] | None:
    """"0:27" -> (0, 27); anything else -> None."""
    major, sep, minor = text.partition(":")
    # ASCII digits only: str.isdigit() takes "²" and other scripts' digits too
    if sep and (major + minor).isascii() and major.isdigit() and minor.isdigit() \
            and len(text) <= 16:
        return int(major), int(minor)
    return None


class Planner(FolioTable):
    """Feed Observed items to resolve(); `on_new_folio(pages)` is called for each folio the
    trace reveals (folio_table.py), `note(kind, text)` for remarks the verdict should
    carry."""

    def __init__(self, on_new_folio: Callable[[int, int | None], None],
                 note: Callable[[str, str], None],
                 gmem_dev: tuple[int, int] | None = None,
                 slot_plan: SlotPlan | None = None, survey: bool = False,
                 gmem_ino: int | None = None):
        super().__init__(on_new_folio, slot_plan, survey)
        self.note = note
        self.gmem_dev = gmem_dev
        self.gmem_dev_from = "--gmem-dev" if gmem_dev is not None else None
        self.gmem_ino = gmem_ino                 # only this file's events (--gmem-ino)
        self.file_flags: dict[int, int] = {}     # inode -> guest_memfd creation flags
        self.pending_inode: int | None = None    # the inode of the last gmem_inode event
        self.pending_links: dict[int, int] = {}  # slot key -> struct page pointer (gmem_alloc)
        self.claims: dict[int, int] = {}         # folio -> line of an unconfirmed own allocation
        self.last: dict[int, str] = {}           # folio -> the kind of its last event
        self.probe_alloc: tuple[int, int | None] | None = None  # (pfn, index) of gmem_alloc
        self.cache_observed = False              # filemap events on guest_memfd's device seen
        self.seen: dict[str, int] = {}           # protocol event -> how many the trace has
        self.other_devs: dict[tuple[int, int], int] = {}   # filemap devices not guest_memfd's
        # what record's marker says it set up: kprobes at all, and the probes it left out
        self.kprobes_set_up: bool | None = None
        self.left_out: frozenset[str] = frozenset()

    def forget(self) -> None:
        """After lost events nothing is known of the folios seen so far."""
        super().forget()
        self.claims.clear()

    def resolve(self, name: str, ev) -> list[Resolved] | str:
        """The event on the model's numbers: one Resolved, or one per folio a block of
        pages covers, or none (a marker).  For an event about nothing the replay tracks,
        the reason: returned in the common cases (a raise costs more), else raised as
        Unrelated."""
        seen = self.seen
        seen[name] = seen.get(name, 0) + 1
        f = ev.fields or {}
        if (self.gmem_ino is not None and f.get("ino", self.gmem_ino) != self.gmem_ino
                and name not in ("cache_add", "marker")):   # (a marker's words are text)
            raise Unrelated("an event of another guest_memfd file (--gmem-ino)")
        if name != "marker":                    # a marker's words are text
            is_int, u64, numbers = int, U64, NUMBER_KEYS    # (locals: read per field)
            for key, value in f.items():        # the usual event: every value a number
                if (type(value) is not is_int or not 0 <= value < u64) and key in numbers:
                    _check_numbers(name, ev.line_no, f)
                    break
        if name in BY_PFN_KINDS:                # the most common events
            pfn = f.get("pfn")
            if type(pfn) is not int:
                pfn = self._pfn(f)              # a struct page pointer's, or None
            page = self.by_pfn.get(pfn)         # one lookup for small folios' pages
            if page is None and self.big and pfn is not None:
                page = self._in_big(pfn, self.starts, self.big, name in PFN_FOLIO_KINDS)
            if page is None and name in ("error_folio", "host_fault"):
                page = self._page_of_index(self._key(f, ev), name == "error_folio")
            if page is None:
                return NOT_ALLOCATED[name]
            if page < self.forgotten:
                raise Unrelated("folio seen before lost events")
            folio = page // self.pages_per_folio
            if name in PFN_FOLIO_KINDS:         # about the folio
                return [self._on(name, folio)]
            ret = f.get("ret", 0)
            if type(ret) is not int or not RET_MIN < ret < RET_LIMIT:
                ret = RET_OTHER                 # small_ret(), inline: the most common events
            # _on(name, folio, page, ret) for an event on a page (never a free nor a
            # page-cache add), inline: an open claim lapses, the folio's last event is this
            claims, lapsed = self.claims, False
            if claims and claims.pop(folio, None) is not None:
                lapsed = True
            self.last[folio] = name
            return [_new_tuple(Resolved, (name, folio, page, ret, None, (), False, False, False,
                                          lapsed))]
        if name in BLOCK_KINDS:
            return self._block(name, ev)
        if name in ("cache_add", "cache_delete"):
            return self._cache(name, ev)
        if name == "alloc":
            return self._probe_alloc(ev)
        if name == "marker":
            self._marker(ev)
            return []
        if name in ("gmem_inode", "gmem_create"):
            self._creation(name, ev)
            return []
        if name == "convert":
            return [self._convert(ev)]
        if name in VM_KINDS:
            return [Resolved(name, ret=small_ret(f.get("ret", 0)))]     # about the VM
        return []

    def _on(self, kind: str, folio: int, page: int | None = None, ret: int = 0,
            to: str | None = None, pages: tuple = (), exact: bool = False,
            confirms: bool = False) -> Resolved:
        """An event on a folio, with what the bookkeeping knows of the folio's past: an
        open own-allocation claim lapses unless this event is a page-cache add (confirms);
        whether the previous event was guest_memfd's own free hook (a free's flags only on
        page_free)."""
        claims, lapsed = self.claims, False
        if claims and claims.pop(folio, None) is not None:
            lapsed = not confirms
        last = self.last
        if kind == "page_free":
            fields = (kind, folio, page, ret, to, pages, exact, self.cache_observed,
                      last.get(folio) in GMEM_FREE_KINDS, lapsed)
        else:
            fields = (kind, folio, page, ret, to, pages, exact, False, False, lapsed)
        last[folio] = kind
        return _new_tuple(Resolved, fields)     # Resolved(*fields) without its Python __new__

    def _key(self, fields, ev) -> int | None:
        """The slot key of the event's index in its file (None: no index)."""
        index = fields.get("index")
        if type(index) is not int:
            return None
        try:
            return self.slot_key(fields.get("ino"), index)
        except AmbiguousFile:
            raise Unrelated(f"{ev.name} names an index but no inode, and the capture has "
                            f"several guest_memfd files") from None

    def _file_base(self, ino, ev) -> int:
        """The slot key of index 0 of the file with inode `ino` (_key() of index 0)."""
        try:
            return self.file_of(ino) << FILE_SHIFT
        except AmbiguousFile:
            raise Unrelated(f"{ev.name} names an index but no inode, and the capture has "
                            f"several guest_memfd files") from None

    def file_init(self, file: int | None) -> str | None:
        """How the file's pages start: "shared" (GUEST_MEMFD_FLAG_INIT_SHARED), "private",
        or None when nothing in the capture says (the replay then keeps both readings)."""
        if file is None or file >= len(self.file_inodes):
            return None
        flags = self.file_flags.get(self.file_inodes[file])
        if flags is None:
            return None
        return "shared" if flags & GUEST_MEMFD_FLAG_INIT_SHARED else "private"

    def _pfn(self, fields) -> int | None:
        """The event's pfn, or the pfn its struct page pointer links to."""
        pfn = fields.get("pfn")
        if isinstance(pfn, int):
            return pfn
        page = fields.get("page")
        return self.links.pfn_of(page) if isinstance(page, int) else None

    def _order(self, ev, fields) -> int:
        order = fields.get("order", 0)
        if order is None:
            return 0
        if not isinstance(order, int) or not 0 <= order <= MAX_ORDER:
            raise PlanInputError(f"line {ev.line_no}: {ev.name}: order {order!r} is not an "
                                 f"order the kernel allocates (0..{MAX_ORDER})")
        return order

    def _alloc(self, ev, pfn: int, order: int, index: int | None, kind: str) -> list:
        """`index`: the slot key."""
        page = self._page_of_pfn(pfn, whole=True)
        if page == -1:
            raise Unrelated("folio seen before lost events")
        file = None if index is None else index >> FILE_SHIFT
        folio = (self._new_folio(ev.line_no, pfn, order, file) if page is None
                 else self.folio_of_page(page))
        if page is not None and 1 << order != self.real_pages:
            raise PlanInputError(f"line {ev.line_no}: pfn {pfn:#x} comes back as a folio of "
                                 f"order {order}; the replay needs one folio size per trace")
        self._bind(folio, index)
        return [self._on(kind, folio, confirms=True)]

    def _probe_alloc(self, ev) -> list:
        """poisoncheck:gmem_alloc (filemap_add_folio() entry).  Without a pfn (upstream
        kernels: only a folio pointer), it links the pointer to the pfn of the page-cache
        add of its index that follows."""
        f = ev.fields or {}
        index = self._key(f, ev)
        pfn = self._pfn(f)
        if pfn is None:
            page = f.get("page")
            if isinstance(page, int) and index is not None:
                self.pending_links[index] = page
                raise Unrelated("gmem_alloc without a pfn: linked to the page-cache add of its "
                                "index (filemap:mm_filemap_add_to_page_cache)")
            raise PlanInputError(f"line {ev.line_no}: {ev.name} has neither a pfn nor a folio "
                                 f"pointer (page=) and index to link one")
        self.probe_alloc = (pfn, index)
        return self._alloc(ev, pfn, self._order(ev, f), index, "alloc")

    def _cache(self, name: str, ev) -> list | str:
        f = ev.fields or {}
        dev = (f.get("major"), f.get("minor"))
        if self.gmem_dev is None:
            self.other_devs[dev] = self.other_devs.get(dev, 0) + 1
            raise Unrelated("filemap event: guest_memfd's device is not known "
                            "(validate --gmem-dev MAJ:MIN, or record's marker line)")
        if dev != self.gmem_dev:
            self.other_devs[dev] = self.other_devs.get(dev, 0) + 1
            raise Unrelated("filemap event of another file system")
        if self.gmem_ino is not None and f.get("ino") != self.gmem_ino:
            # Another file takes a pfn: it leaves the view (its events there are not ours),
            # unless the judged file still holds it (then the add is judged: impossible).
            page = self._page_of_pfn(f.get("pfn"), whole=True)
            held = page is not None and page >= 0 and name == "cache_add"
            if not held or self.folios[self.folio_of_page(page)].index is None:
                if held:
                    self.release(self.folio_of_page(page))
                raise Unrelated("an event of another guest_memfd file (--gmem-ino)")
        self.cache_observed = True
        pfn, ofs = f.get("pfn"), f.get("ofs")
        if not isinstance(pfn, int) or not isinstance(ofs, int) or ofs < 0:
            raise PlanInputError(f"line {ev.line_no}: {ev.name} needs pfn and ofs")
        index = self.slot_key(f.get("ino"), ofs >> PAGE_SHIFT)
        # mm_filemap_add_to_page_cache prints order= since Linux 6.x (large folios in the
        # page cache); an older kernel's event prints none, and its folios are single pages.
        order = self._order(ev, f)
        if name == "cache_add":
            pointer = self.pending_links.pop(index, None)
            if pointer is not None:
                self.links.add(pointer, pfn)
            if self.probe_alloc == (pfn, index):     # the gmem_alloc probe showed it already
                self.probe_alloc = None
                return "page-cache add already shown by gmem_alloc"     # unrelated
            return self._alloc(ev, pfn, order, index, "cache_add")
        page = self._page_of_pfn(pfn, whole=True)
        if page is None:
            raise Unrelated("page-cache delete of a pfn the trace never showed added")
        if page == -1:
            raise Unrelated("folio seen before lost events")
        folio = self.folio_of_page(page)
        self._unbind(folio)
        return [self._on("cache_delete", folio)]

    def _block(self, name: str, ev) -> list | str:
        """A page-allocator event on 2^order pages: every folio it covers."""
        f = ev.fields or {}
        pfn = self._pfn(f)
        if not isinstance(pfn, int):
            raise Unrelated(f"{name} with no pfn")
        if pfn == 0 and name == "page_alloc":
            raise Unrelated("a failed allocation (pfn 0)")
        if f.get("order") is None and self.real_pages is not None:
            order = self.real_pages.bit_length() - 1    # unfetched: the pool's one size
        else:
            order = self._order(ev, f)
        covered = self._folios_in(pfn, order)
        if not covered:
            if self._page_of_pfn(pfn, whole=True) == -1:
                raise Unrelated("folio seen before lost events")
            return NOT_ALLOCATED[name]      # unrelated
        out = []
        for folio, exact in covered:
            out.append(self._on(name, folio, exact=exact))
            if exact and name != "page_free":     # perhaps guest_memfd's own: a claim
                self.claims[folio] = ev.line_no
        return out

    def _convert(self, ev) -> Resolved:
        """The conversion of an index range, on the pages of it the trace knows."""
        f = ev.fields or {}
        start, end, to = f.get("start"), f.get("end"), _target(f.get("to"))
        if not isinstance(start, int) or not isinstance(end, int) or to is None:
            raise PlanInputError(f"line {ev.line_no}: gmem_convert needs start, end and "
                                 f"to=private|shared")
        base = self._file_base(f.get("ino"), ev)
        start, end = base + start, base + min(end, 1 << FILE_SHIFT)
        # Cost follows the pages the trace knows, not the range's width.
        if end - start <= len(self.by_index):
            indices = range(start, end)
        else:
            indices = sorted(i for i in self.by_index if start <= i < end)
        pages = [self.by_index[i] for i in indices if i in self.by_index]
        for first in self.bound_starts:     # big folios cached in the range: run by run
            lo, hi = max(start, first) - first, min(end, first + self.real_pages) - first
            if lo < hi:
                pages.extend(self._runs_in(self.bound[first], lo, hi))
        if not pages or min(pages) < self.forgotten:
            raise Unrelated("conversion of indices guest_memfd did not allocate in the trace")
        ppf = self.pages_per_folio
        folio = pages[0] // ppf
        if len(pages) > 1 and any(p // ppf != folio for p in pages):    # (usually one page)
            raise PlanInputError(f"line {ev.line_no}: a conversion across folios; the replay "
                                 f"takes one folio per conversion event")
        return self._on("convert", folio, None, small_ret(f.get("ret", 0)), to, tuple(pages))

    def _creation(self, name: str, ev) -> None:
        """A guest_memfd's creation: gmem_inode (its inode is made) then gmem_create
        (kvm_gmem_create() returns, with the flags it was asked for).  Paired by order:
        kvm_gmem_create() makes the inode and returns without sleeping in between but for
        allocations, so two creations at once on two CPUs could cross (not seen)."""
        f = ev.fields or {}
        if name == "gmem_inode":
            ino = f.get("ino")
            self.pending_inode = ino if isinstance(ino, int) else None
            return
        ino, self.pending_inode = self.pending_inode, None
        flags, ret = f.get("flags"), f.get("ret", 0)
        if ino is not None and isinstance(flags, int) and isinstance(ret, int) and ret >= 0:
            self.file_flags[ino] = flags

    def _marker(self, ev) -> None:
        """`poisoncheck gmem_dev=MAJ:MIN ...` written into the capture by record, and
        `poisoncheck step=create_gmem ino=0x.. flags=N` by the lab's exercises."""
        words = ev.fields or {}
        if words.get("step") == "create_gmem":
            ino, flags = _number(words.get("ino")), _number(words.get("flags"))
            if ino is not None and flags is not None:
                self.file_flags[ino] = flags
                self.seen["gmem_created_marker"] = self.seen.get("gmem_created_marker", 0) + 1
            return
        if words.get("kprobes") in ("0", "1"):
            self.kprobes_set_up = words["kprobes"] == "1"
            left = words.get("left_out")
            self.left_out = frozenset(left.split(",")) if isinstance(left, str) else frozenset()
        value = words.get("gmem_dev")
        dev = parse_dev(value) if isinstance(value, str) else None
        if dev is None:
            return
        if self.gmem_dev is None:
            self.gmem_dev, self.gmem_dev_from = dev, f"the marker line {ev.line_no}"
        elif dev != self.gmem_dev:
            self.note("gmem_dev", f"line {ev.line_no}: the marker names guest_memfd's device "
                                  f"{dev[0]}:{dev[1]}; {self.gmem_dev_from} said "
                                  f"{self.gmem_dev[0]}:{self.gmem_dev[1]}, which is kept")


def _number(text) -> int | None:
    """A marker's number ("0x242", "3"); None for anything else."""
    if not isinstance(text, str) or len(text) > 20:
        return None
    try:
        return int(text, 0)
    except ValueError:
        return None


def _target(value) -> str | None:
    if value in ("private", "shared"):
        return value
    if isinstance(value, int):              # KVM_MEMORY_ATTRIBUTE_PRIVATE is bit 3
        return "private" if value & 8 else "shared"
    return None
