"""The per-folio state machine of a design, as Graphviz DOT (and SVG when `dot` exists).

Computed from the mirror's reachable graph (equal to TLC's): a node is where
the folio is plus what matters about it (a page the TDX module still owns,
poison, a TDX reference); every step that changes that becomes an edge
labelled with the action, for both backings, with one removal failure and
one memory error.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from validator import model

def folio_label(cfg: model.Config, s: model.State, f: int) -> str:
    """Where the folio is, and what matters about it: a page the TDX module still
    owns behind KVM's back (its removal failed), poison, a TDX reference."""
    pages = cfg.pages_of(f)
    flags = []
    if any(s.sept[p] == "mapped" and not s.mirror[p] and s.tdx != "off" for p in pages):
        flags.append("TD-owned")
    if model.is_bad(cfg, s, f):
        flags.append("poisoned")
    if any(s.tdxRefs[p] for p in pages):
        flags.append("TDX ref")
    return s.folioLoc[f] + (f" ({', '.join(flags)})" if flags else "")


def folio_edges(design: str) -> set[tuple[str, str, str]]:
    """Edges between folio labels, over both backings, one failure and one memory error."""
    edges = set()
    for backing, pages in (("buddy", 1), ("hugetlb", 2)):
        cfg = model.Config(design, backing, folios=1, pages_per_folio=pages,
                           max_remove_failures=1, max_mem_errors=1)
        _, graph = model.reachable(cfg)
        for s, name, t in graph:
            a, b = folio_label(cfg, s, 0), folio_label(cfg, t, 0)
            if a != b:
                edges.add((a, name, b))
    return edges


def _node_id(label: str) -> str:
    return '"' + label + '"'


def to_dot(design: str, edges: set[tuple[str, str, str]]) -> str:
    lines = [f'digraph "{design}" {{', '  rankdir=LR;',
             f'  label="{design}: where a folio goes (one failed removal, one memory error)";',
             '  node [shape=box, style="rounded,filled", fillcolor="#f3f6fb", '
             'fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=9];']
    for label in sorted({a for a, _, _ in edges} | {b for _, _, b in edges}):
        # A folio another user got while the TDX module owns one of its pages: the hazard.
        if label.startswith("reused") and "TD-owned" in label:
            lines.append(f'  {_node_id(label)} [fillcolor="#f8d7da", color="#b02a37"];')
        elif label.startswith("leaked"):
            lines.append(f'  {_node_id(label)} [fillcolor="#fff3cd"];')
    grouped: dict[tuple[str, str], list[str]] = {}
    for a, name, b in sorted(edges):
        grouped.setdefault((a, b), []).append(name)
    for (a, b), names in sorted(grouped.items()):
        label = "\\n".join(names)          # DOT's line break
        lines.append(f'  {_node_id(a)} -> {_node_id(b)} [label="{label}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_diagrams(out_dir: Path, designs=model.DESIGNS) -> list[Path]:
    """DOT for every design, plus SVG when Graphviz's `dot` is installed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    dot = shutil.which("dot")
    for design in designs:
        path = out_dir / f"folio-{design}.dot"
        path.write_text(to_dot(design, folio_edges(design)))
        written.append(path)
        if dot:
            svg = path.with_suffix(".svg")
            done = subprocess.run([dot, "-Tsvg", str(path), "-o", str(svg)],
                                  capture_output=True, text=True)
            if done.returncode == 0:
                written.append(svg)
    return written
