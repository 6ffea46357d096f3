"""The README's verdict table and docs/verdicts.md, written from spec/matrix.toml alone.

A cell shows what the matrix expects (and `make check` / `make check-deep` confirm) for the
design's runs on one backing: `holds` only when every run of the row holds it; a violation
names the smallest budget that shows it; a run TLC does not finish here shows as "not
established".  Every cell's reason is the matrix's (its [why] table or the run's own), so
a verdict without a reason cannot reach the README (tests/check/test_verdict_table.py).

    python -m validator.check.verdict_table --write     # rewrite both from the matrix
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from validator.check.matrix import Run, load_matrix
from validator.model.properties import (HOLDS, NOT_APPLICABLE, NOT_ESTABLISHED, PROPERTIES,
                                        VIOLATED)

BEGIN, END = "<!-- verdict-table: begin (generated) -->", "<!-- verdict-table: end -->"
BUDGETS = ("nofault", "fail1", "fail1-memerr1")     # the row's runs, smallest first
ROWS = [("Upstream", "buddy", "Upstream (6.19+, no in-place conversion)")] + [
    (design, backing, f"{design}, {backing}")
    for design in ("NoHold", "FolioRef", "HWPoison", "BuggyCleanup", "NoMoreSeamcalls")
    for backing in ("buddy", "hugetlb")]


def row_runs(runs: list[Run], prefix: str, backing: str) -> list[Run]:
    by_name = {r.name: r for r in runs}
    return [by_name[f"{prefix}-{backing}-{b}"] for b in BUDGETS
            if f"{prefix}-{backing}-{b}" in by_name]


def cell(row: list[Run], key: str) -> str:
    """The cell of one property over a row's runs, smallest budget first."""
    verdicts = [(r, r.expect[key]) for r in row if r.expect[key] != NOT_APPLICABLE]
    if not verdicts:
        return NOT_APPLICABLE
    for run, verdict in verdicts:
        if verdict == VIOLATED:
            return f"VIOLATED ({run.name.split('-', 2)[2]})"
    open_ = [r for r, v in verdicts if v == NOT_ESTABLISHED]
    if open_:
        held = [r for r, v in verdicts if v == HOLDS]
        at = f"holds at {held[-1].name.split('-', 2)[2]}; " if held else ""
        return f"{at}not established at {open_[0].name.split('-', 2)[2]}"
    return HOLDS


def table(runs: list[Run]) -> str:
    keys = list(PROPERTIES)
    head = "| design, backing | " + " | ".join(str(p.number) for p in keys) + " |"
    lines = [head, "|---" * (len(keys) + 1) + "|"]
    for prefix, backing, label in ROWS:
        row = row_runs(runs, prefix, backing)
        if row:
            lines.append(f"| {label} | " + " | ".join(cell(row, p.key) for p in keys) + " |")
    legend = ", ".join(f"{p.number} {p.key}" for p in keys)
    return "\n".join(lines + ["", f"Properties: {legend}.  Runs per row: "
                              f"DESIGN-BACKING-{{{', '.join(BUDGETS)}}} of spec/matrix.toml; "
                              "every cell's reason is in docs/verdicts.md."]
                      + open_verdicts(runs))


def open_verdicts(runs: list[Run]) -> list[str]:
    """Every verdict no finished run decides, with where TLC stopped and what simulation
    found there (the reason the matrix gives)."""
    out = []
    for run in runs:
        keys = [p for p in PROPERTIES if run.expect[p.key] == NOT_ESTABLISHED]
        reasons = dict.fromkeys(run.why[p.key].removeprefix("not established: ")
                                for p in keys)
        if keys:
            numbers = ", ".join(str(p.number) for p in keys)
            out.append(f"- `{run.name}` ({run.bounds()}): {numbers} not established: "
                       + "; ".join(reasons))
    if not out:
        return []
    return ["", "Not established (no finished run decides them; simulation is evidence, "
                "never a holds):", ""] + out


def verdicts_doc(runs: list[Run]) -> str:
    """Every run: its bounds, and each expected verdict with its reason."""
    out = ["# Expected verdicts and their reasons",
           "",
           "Generated from `spec/matrix.toml` by `python -m validator.check.verdict_table "
           "--write`; do not edit.  `make check` (and `make check-deep` for runs marked deep) "
           "checks every verdict with TLC.  A holds is established only at the run's bounds: a "
           "larger budget can only add behaviours, so it carries a violation over, never a "
           "holds.", ""]
    for run in runs:
        mode = ("check --simulate" if run.simulation else
                "make check-deep" if run.deep else "make check")
        changed = ", ".join([f"without {c}" for c in run.disabled]
                            + [f"with {c}" for c in run.added])
        out += [f"## {run.name}", "",
                f"{run.design}{', ' + changed if changed else ''} ({run.kind}, {mode}). "
                f"Bounds: {run.bounds()}." + (f" {run.note}." if run.note else ""), ""]
        for prop in PROPERTIES:
            verdict = run.expect[prop.key]
            if verdict != NOT_APPLICABLE:
                out.append(f"- {prop.number} {prop.key}: **{verdict}**: {run.why[prop.key]}")
        out.append("")
    return "\n".join(out)


def replace_block(text: str, block: str) -> str:
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + "\n" + block + "\n" + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true",
                        help="rewrite README.md and docs/verdicts.md")
    root = Path(__file__).resolve().parents[2]
    args = parser.parse_args(argv)
    runs = load_matrix(root / "spec" / "matrix.toml")
    if not args.write:
        print(table(runs))
        return 0
    readme = root / "README.md"
    readme.write_text(replace_block(readme.read_text(), table(runs)))
    (root / "docs" / "verdicts.md").write_text(verdicts_doc(runs) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
