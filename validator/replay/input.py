"""A trace file as the replay reads it: Observed protocol events and lost-event markers,
read on one core or several (ftrace/parallel.py; the same items either way)."""

from __future__ import annotations

import multiprocessing
import os
import re
from collections.abc import Iterable, Iterator
from itertools import chain
from operator import itemgetter

from validator import ftrace
from validator.ftrace import Line, LostMarker, open_trace
from validator.ftrace.decoders import CONVERT_CACHE, convert_cached
from validator.ftrace.parallel import CHUNK_BYTES, ParallelReader
from validator.ftrace.reader import UnparsedCount, read_events
from validator.replay.vocabulary import (_CATALOGUE, INFORMATIONAL, INFORMATIONAL_RUN,
                                         KNOWN_EVENTS, PLAN_FIELDS, PROBE_PROTOCOL,
                                         RELEVANT_NAMES, UPSTREAM_PROTOCOL, Observed, observe)

# How parallel workers' tuples become items again, by length
_REBUILD = {len(Observed._fields): Observed, len(LostMarker._fields): LostMarker}
assert len(_REBUILD) == 2


def read_file(path, *, engine: str = "fast", stdin=None) -> Iterator[Line]:
    """ftrace.read_file() with the catalogue's events typed: a capture's lines as the
    replay (and `poisoncheck parse`) reads them."""
    return ftrace.read_file(path, known=KNOWN_EVENTS, engine=engine, stdin=stdin)


def read_lines(lines: Iterable[str], **options) -> Iterator[Line]:
    """ftrace.read_lines() with the catalogue's events typed (text already in hand)."""
    return ftrace.read_lines(lines, known=KNOWN_EVENTS, **options)


def default_reader_jobs() -> int:
    """Reader processes by default: the cores this process may use, at most 2 (the only
    count measured; --jobs asks for more)."""
    if not can_fork():
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(2, cores))


def can_fork() -> bool:
    """Workers are forked (they share the loaded code); elsewhere one process reads."""
    return "fork" in multiprocessing.get_all_start_methods()


def _convert(item):
    kind = type(item)
    return item if kind is Observed or kind is LostMarker else observe(item)


# ---- the shortcut: a plain record straight to Observed ---------------------------
# What observe(event) gives, computed from the record's text without the Event, for the
# common renderings only; anything else returns None and takes the general way. Tests
# compare both ways on every line of the traces, the corpus and generated variations.

# A kprobe/kretprobe payload whose arguments are plain "k=v" pairs (a value holds no space,
# "=" or quote, or is a quoted string of such characters): the general decoder reads it as
# a poisoncheck probe with exactly these pairs (decoders.decode_probe).
_PLAIN_VALUE = r'(?:"[^"\\\s=]*"|[^\s"=]*)'
_SITE = r"\([\w.$]+\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[[\w.-]+\])?(?: <- [\w.$]+)?\) "
_PLAIN_PROBE = re.compile(
    _SITE + rf"([A-Za-z_][\w.]*={_PLAIN_VALUE}(?: [A-Za-z_][\w.]*={_PLAIN_VALUE})*)")
_PLAN_KEYS = frozenset(PLAN_FIELDS)
# The pairs of PLAN_FIELDS in arguments _PLAIN_PROBE accepted (values hold no space)
_PLAN_PAIR = re.compile(r"(?:^| )(" + "|".join(PLAN_FIELDS) + r")=([^ ]*)")
_ANY_PAIR = re.compile(r"(?:^| )([A-Za-z_][\w.]*)=([^ ]*)")
# One string object per name and key: the workers' pickles then hold each once
_CANONICAL = {name: name for name in (*RELEVANT_NAMES, *PLAN_FIELDS)}
_PROBE_OF = {name: PROBE_PROTOCOL[name] for name in KNOWN_EVENTS.probe_names}


def _plan_reader(spec) -> tuple:
    """(the pairs of the printed fields that can reach PLAN_FIELDS, the rest of normalise())
    for a probe whose fields need normalising: see ProbeSpec.plan_reader."""
    keys, finish = spec.plan_reader({key: _CANONICAL[key] for key in PLAN_FIELDS})
    return re.compile(r"(?:^| )(" + "|".join(keys) + r")=([^ ]*)").findall, finish


# name -> how the shortcut reads the probe's PLAN_FIELDS when they need normalising
_PLAN_READERS = {spec.name: _plan_reader(spec) for spec in _CATALOGUE.probes()
                 if spec.needs_normalising}


def _layout(spec) -> tuple | None:
    """The probe's payload as `poisoncheck record` sets it up, read in one match: (its
    fullmatch, the keys to read, a function of the match's groups giving their values,
    the rest of normalise() or None).  The regex is the site and the catalogue's fetch-args
    in their order, each value a _PLAIN_VALUE: what it matches, _PLAIN_PROBE matches with
    the same pairs, so the fields are those the pairs would give."""
    names = [arg.name for arg in spec.args]
    if not names:
        return None
    finish = None
    wanted = {key: _CANONICAL[key] for key in PLAN_FIELDS}
    if spec.needs_normalising:
        keys, finish = spec.plan_reader(wanted)
        wanted = {key: key for key in keys}
    picked = [(i, wanted[name]) for i, name in enumerate(names) if name in wanted]
    index = [i for i, _ in picked]
    pick = (itemgetter(*index) if len(index) > 1 else
            (lambda groups: (groups[index[0]],)) if index else (lambda groups: ()))
    regex = re.compile(_SITE + " ".join(f"{re.escape(name)}=({_PLAIN_VALUE})" for name in names))
    return regex.fullmatch, tuple(key for _, key in picked), pick, finish


# name -> its _layout(): the probe lines of a capture `record` set up (most of them)
_LAYOUTS = {spec.name: layout for spec in _CATALOGUE.probes()
            if (layout := _layout(spec)) is not None}
# name -> (protocol, the tracepoint's formats) for the upstream events
_TRACEPOINT_OF = {tp.name: (UPSTREAM_PROTOCOL[(tp.system, tp.name)], tp.formats)
                  for tp in KNOWN_EVENTS.tracepoints.values()
                  if (tp.system, tp.name) in UPSTREAM_PROTOCOL}
_NEW = tuple.__new__


def _shortcut_for(packed: bool):
    """The shortcut giving Observed items, or (packed) the plain tuples workers send,
    without the text: line_text() gives it back (see _pack)."""
    new = _NEW
    canon, conv, layouts = _CANONICAL, CONVERT_CACHE, _LAYOUTS

    def shortcut(name: str, payload: str | None, text: str, line_no: int):
        if payload is None:
            return None
        protocol = _PROBE_OF.get(name)
        layout = layouts.get(name)
        m = layout[0](payload) if layout is not None else None
        if m is not None:                   # as record sets it up: one match
            _, keys, pick, finish = layout
            fields = {key: conv[value] if value in conv else convert_cached(value)
                      for key, value in zip(keys, pick(m.groups()))}
            if finish is not None:
                fields = finish(fields)
            if protocol in INFORMATIONAL:
                fields = None
        elif protocol is not None:
            m = _PLAIN_PROBE.fullmatch(payload)
            if m is None:
                return None
            if protocol in INFORMATIONAL:
                fields = None
            elif name in _PLAN_READERS:     # derived fields, values, ret: ProbeSpec.plan_reader
                pairs, finish = _PLAN_READERS[name]
                fields = finish({key: conv[value] if value in conv else convert_cached(value)
                                 for key, value in pairs(m[1])})
            else:                   # convert_cached(), inlined: most values were seen before
                fields = {canon[key]: conv[value] if value in conv else convert_cached(value)
                          for key, value in _PLAN_PAIR.findall(m[1])}
        else:
            known = _TRACEPOINT_OF.get(name)
            if known is None:
                return None
            protocol, formats = known
            payload = payload.rstrip()
            for fmt in formats:
                m = fmt.regex.fullmatch(payload)
                if m is not None:
                    break
            else:
                return None                     # key=value renderings: the general way
            fields = None if protocol in INFORMATIONAL else {
                key: convert(value) for key, convert, value
                in zip(fmt.names, fmt.converters, m.groups()) if key in _PLAN_KEYS}
        if packed:
            return (line_no, None, canon[name], protocol, fields)
        return new(Observed, (line_no, None if fields is None else text, canon[name],
                              protocol, fields))

    return shortcut


_shortcut = _shortcut_for(packed=False)
_packed_shortcut = _shortcut_for(packed=True)


def _pack(items: Iterable) -> list[tuple]:
    """Items as a worker sends them (see ParallelReader): small tuples; the packed
    shortcut's come without their text (line_text() gives it back). A run of
    INFORMATIONAL events becomes one Observed of protocol INFORMATIONAL_RUN whose fields
    count them by protocol: they are only counted, and a run ends before every other
    item, so the counts a replay reaches are the same wherever it stops."""
    out = []
    run: dict | None = None
    last = 0
    for item in items:
        kind = type(item)
        if kind is LostMarker:
            item = tuple(item)
        else:
            if kind is not tuple:       # an Event the shortcut left to the general way
                observed = observe(item)
                if observed is None:
                    continue
                item = tuple(observed)
            protocol = item[3]
            if protocol in INFORMATIONAL:
                if run is None:
                    run = {}
                run[protocol] = run.get(protocol, 0) + 1
                last = item[0]
                continue
        if run is not None:
            out.append((last, None, "", INFORMATIONAL_RUN, run))
            run = None
        out.append(item)
    if run is not None:
        out.append((last, None, "", INFORMATIONAL_RUN, run))
    return out


# guest_memfd's device in a capture: record's marker line, or the page-cache adds.
_MARKER_DEV = re.compile(rb"poisoncheck gmem_dev=(\d{1,3}):(\d{1,7})\b")
_CACHE_ADD_DEV = re.compile(rb"mm_filemap_add_to_page_cache: dev (\d{1,3}):(\d{1,7}) ")


def scan_gmem_dev(path: str) -> tuple[tuple[int, int] | None, str]:
    """Which device is guest_memfd's, read off a capture file before the replay (stdin
    cannot be read twice): the marker line `poisoncheck record` writes, else the one
    pseudo-filesystem device (major 0) with page-cache adds, when there is only one.
    Returns (device or None, how it was found or why not)."""
    devices: dict[tuple[int, int], int] = {}
    with open_trace(path) as lines:
        for piece in lines.pieces():
            if not isinstance(piece, bytes):    # an over-long line, cut (Truncated text)
                continue
            marker = _MARKER_DEV.search(piece)
            if marker is not None:
                return (int(marker[1]), int(marker[2])), "the marker line of `poisoncheck record`"
            for major, minor in _CACHE_ADD_DEV.findall(piece):
                key = (int(major), int(minor))
                devices[key] = devices.get(key, 0) + 1
    pseudo = sorted(d for d in devices if d[0] == 0)
    if len(pseudo) == 1:
        dev = pseudo[0]
        return dev, (f"inferred: the only pseudo-filesystem device (major 0) with page-cache "
                     f"adds in the capture ({devices[dev]} adds); pass --gmem-dev to be sure")
    if pseudo:
        shown = ", ".join(f"{a}:{b}" for a, b in pseudo)
        return None, (f"not inferred: page-cache adds on several pseudo-filesystem devices "
                      f"({shown}); pass --gmem-dev MAJ:MIN")
    return None, ""      # no page-cache adds at all: nothing to say


class Observations:
    """The replay's input from a trace file ("-": stdin): iterate for Observed protocol
    events and lost-event markers; raw_of(line_no) gives the text of items that come
    without it. Lines that do not parse are counted: unparsed_before() says how many
    the consumer has passed. Iterating raises TraceInputError for input that is not an
    ftrace text trace. jobs > 1: read by worker processes (the same items, the same
    counts). shortcut=False: every event the general way (for the tests that compare)."""

    def __init__(self, path: str, jobs: int = 1, stdin=None, shortcut: bool = True,
                 chunk_bytes: int = CHUNK_BYTES):
        self.path, self.jobs, self.stdin, self.chunk_bytes = path, jobs, stdin, chunk_bytes
        self.shortcut = _shortcut if shortcut else None
        self._unparsed = UnparsedCount()        # of the items handed out
        self._ahead: UnparsedCount | None = None  # of the batch being handed out
        self._reader: ParallelReader | None = None

    def __iter__(self) -> Iterator[Observed | LostMarker]:
        path = self.path
        name = "<stdin>" if str(path) == "-" else str(path)
        lines = open_trace(path, stdin=self.stdin)
        if self.jobs > 1 and can_fork():
            return chain.from_iterable(self._batches(lines, name))
        return self._one_by_one(lines, name)

    def unparsed_before(self, line: int | None = None) -> UnparsedCount:
        """The unparsed lines before `line` (None: all read), when the consumer stopped
        at an item of that line or read to the end."""
        if self._ahead is None:     # read one by one: nothing was read past the consumer
            return self._unparsed
        total = UnparsedCount()
        total.merge(self._unparsed)
        total.merge(self._ahead, before=line)
        return total

    def raw_of(self, line_no: int) -> str | None:
        return self._reader.line_text(line_no) if self._reader is not None else None

    def _one_by_one(self, opened, name) -> Iterator[Observed | LostMarker]:
        with opened as lines:
            for item in read_events(lines, RELEVANT_NAMES, self._unparsed, known=KNOWN_EVENTS,
                                    name=name, shortcut=self.shortcut):
                item = _convert(item)
                if item is not None:
                    yield item

    def _batches(self, opened, name) -> Iterator[list]:
        with opened as lines:
            self._reader = ParallelReader(
                lines, RELEVANT_NAMES, jobs=self.jobs, pack=_pack, rebuild=_REBUILD,
                known=KNOWN_EVENTS, shortcut=self.shortcut and _packed_shortcut, name=name,
                chunk_bytes=self.chunk_bytes)
            for items, unparsed in self._reader.batches():
                self._ahead = unparsed
                yield items
                self._unparsed.merge(unparsed)  # handed out whole
                self._ahead = UnparsedCount(keep_lines=True)
