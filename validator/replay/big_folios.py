"""Folios bigger than EXACT_PAGES (a 1G HugeTLB page): replayed on runs of pages the trace
cannot tell apart, found by a survey pass over the trace (engine.survey_slots).  Memory and
time follow the trace, not the folio's order."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass

# Folios of up to this many pages (a 2M THP) are replayed page by page.  A bigger folio (a
# 1G HugeTLB page) is replayed on runs of pages the trace cannot tell apart: memory and
# time follow the trace, not the folio's order (SlotPlan).
EXACT_PAGES = 512


class NeedsSurvey(Exception):
    """A folio bigger than EXACT_PAGES: the trace must first be surveyed for the pages it
    names (replay.survey_slots), then replayed with that SlotPlan."""


@dataclass(frozen=True)
class SlotPlan:
    """The model's pages of each big folio.  `starts[folio]` cuts the folio's offsets into
    runs, one model page each: the head page alone, each page an event names alone, and
    between them the runs that the same range conversions cover (or none does).  The pages
    of a run have the same events, so one page stands for them all: whatever one of them
    can do, the model page can.  What it cannot show: two pages of a run in different
    states at once (two pins counted once in the folio's reference count; a conversion
    refused midway through a run leaves the run converted, or not, as a whole)."""
    pages: int                                  # model pages per folio (the most runs)
    starts: dict[int, tuple[int, ...]]          # head pfn -> first offset of each run, sorted


def plan_of(cuts: dict[int, set[int]], real_pages: int | None) -> SlotPlan:
    """The survey's result: head pfn -> the offsets where runs start (each cut starts one;
    the head page is always alone)."""
    pages = real_pages or 1
    starts = {f: tuple(sorted(c for c in folio_cuts | {0, 1} if c < pages))
              for f, folio_cuts in cuts.items()}
    return SlotPlan(max((len(s) for s in starts.values()), default=2), starts)


def run_of(runs: tuple[int, ...], offset: int, pages: int) -> int | None:
    """The run holding exactly the page at `offset` (None: the survey did not cut there)."""
    i = bisect_right(runs, offset) - 1
    if runs[i] != offset or (runs[i + 1] if i + 1 < len(runs) else pages) != offset + 1:
        return None
    return i


def runs_of(runs: tuple[int, ...], lo: int, hi: int, pages: int) -> range | None:
    """The runs making up offsets lo..hi-1 (None: the survey did not cut there)."""
    start, stop = bisect_left(runs, lo), bisect_left(runs, hi)
    if start == len(runs) or runs[start] != lo or (hi < pages and (
            stop == len(runs) or runs[stop] != hi)):
        return None
    return range(start, stop)
