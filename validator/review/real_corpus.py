"""traces/real/: captures of the real kernel with expected verdicts, and traces derived from
them with one line the kernel would never write ("splices"; see traces/real/manifest.toml)."""

from __future__ import annotations

import gzip
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from validator import model
from validator.review.corpus import CorpusError, Outcome, verdict_text
from validator.ftrace import iter_events
from validator.replay.input import read_file, scan_gmem_dev
from validator.replay.engine import replay
from validator.replay.catalogue import load_catalogue
from validator.replay.verdict import Verdict

_TIMESTAMP = re.compile(r"\s(\d+\.\d+):\s")


@dataclass(frozen=True)
class Splice:
    name: str
    source: str
    after: str
    line: str
    about: str = ""
    earlier: str = ""       # a regex for a line before: its groups fill `after` and `line`


def load(real_dir: Path) -> tuple[list[dict], list[Splice]]:
    path = real_dir / "manifest.toml"
    try:
        data = tomllib.loads(path.read_text())
    except OSError as err:
        raise CorpusError(f"{path}: {err.strerror or err}") from None
    except tomllib.TOMLDecodeError as err:
        raise CorpusError(f"{path}: not valid TOML: {err}") from None
    traces = data.get("trace", [])
    for entry in traces:
        if set(entry.get("expect", {})) != set(model.DESIGNS):
            raise CorpusError(f"{path}: {entry.get('file')}: expect every design")
    try:
        splices = [Splice(s["name"], s["from"], s["after"], s["line"], s.get("about", ""),
                          s.get("earlier", ""))
                   for s in data.get("splice", [])]
    except KeyError as err:
        raise CorpusError(f"{path}: a splice needs name, from, after and line ({err})") from None
    return traces, splices


def read_text(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", errors="surrogateescape") as fh:
        return fh.read()


def cache_events(text: str, dev: tuple[int, int] | None) -> int:
    """Page-cache adds and deletes on guest_memfd's device, counted from the text alone."""
    if dev is None:
        return 0
    return len(re.findall(rf"mm_filemap_(?:add_to|delete_from)_page_cache: dev {dev[0]}:{dev[1]} ",
                          text))


# Probes whose every line is replayed as an event of its own (gmem_alloc is replayed through
# the page-cache add it links; the creation probes only name a file's first state).
_OWN_EVENT_PROBES = tuple(spec.name for spec in load_catalogue().probes()
                          if spec.protocol not in ("alloc", "gmem_inode", "gmem_create"))
_PROBE_LINE = re.compile(r"\d: (?:poisoncheck:)?(?:" + "|".join(_OWN_EVENT_PROBES) + r"): \(")


def probe_events(text: str) -> int:
    """record's kprobe lines that the replay takes as events of their own, counted from the
    text alone."""
    return len(_PROBE_LINE.findall(text))


def splice(text: str, s: Splice) -> tuple[str, int]:
    """The text with s.line inserted after the first line matching s.after, and the
    inserted line's number.  With s.earlier, the search for s.after starts after the first
    line matching it, and its named groups fill s.after (str.format) and s.line."""
    lines = text.split("\n")
    groups: dict[str, str] = {}
    start = 0
    if s.earlier:
        first = re.compile(s.earlier)
        for start, line in enumerate(lines, 1):
            m = first.search(line)
            if m is not None:
                groups = m.groupdict()
                break
        else:
            raise CorpusError(f"splice {s.name}: no line of {s.source} matches {s.earlier!r}")
    pattern = re.compile(s.after.format(**groups) if groups else s.after)
    for number, line in enumerate(lines[start:], start + 1):
        m = pattern.search(line)
        if m is None:
            continue
        ts = _TIMESTAMP.search(line)
        new = s.line.format(ts=ts.group(1) if ts else "0.000000", **groups, **m.groupdict())
        return "\n".join(lines[:number] + [new] + lines[number:]), number + 1
    raise CorpusError(f"splice {s.name}: no line of {s.source} matches {s.after!r}")


def judge(path: Path, design: str) -> Verdict:
    dev, how = scan_gmem_dev(str(path))
    return replay(list(iter_events(read_file(path))), design, gmem_dev=dev, gmem_dev_from=how)


def check_real(real_dir: Path, out_dir: Path) -> list[Outcome]:
    traces, splices = load(real_dir)
    outcomes = []
    for entry in traces:
        path = real_dir / entry["file"]
        if not path.is_file():
            raise CorpusError(f"{real_dir / 'manifest.toml'}: {entry['file']}: no such trace")
        text = read_text(path)
        counted = cache_events(text, scan_gmem_dev(str(path))[0]) + probe_events(text)
        for design, expected in entry["expect"].items():
            v = judge(path, design)
            got, note = (verdict_text(v), f"{v.events} events, {counted} page-cache adds/deletes "
                                          f"and probe lines")
            if v.events < max(counted, entry.get("min_events", 0)):
                got += " (too few events)"
            outcomes.append(Outcome(f"real/{entry['file']}", design, expected, got, note))
    out_dir.mkdir(parents=True, exist_ok=True)
    for s in splices:
        text, line = splice(read_text(real_dir / s.source), s)
        path = out_dir / f"{s.name}.trace"
        path.write_text(text, errors="surrogateescape")
        for design in model.DESIGNS:
            outcomes.append(Outcome(f"spliced/{s.name}", design, f"violation:step@{line}",
                                    verdict_text(judge(path, design))))
    return outcomes
