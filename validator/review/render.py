"""Render a Report as plain text (80 columns, ASCII, for mail), Markdown or one HTML file."""

from __future__ import annotations

import html
import textwrap

import tabulate as tabulate_module
from tabulate import tabulate

from validator import model
from validator.model.properties import PROPERTIES
from validator.review.report import Report

WIDTH = 80
SHORT = {p.key: f"P{p.number}" for p in PROPERTIES}


def _cell(text: str) -> str:
    """Compact verdicts for the 80-column table."""
    return text.replace("VIOLATED (", "VIOL ").replace(" steps)", "")


def _design_table(r: Report, fmt: str, compact: bool) -> str:
    headers = ["design"] + [SHORT[p.key] if compact else p.short for p in PROPERTIES]
    rows = [[d.design] + [_cell(d.cells[p.key]) if compact else d.cells[p.key]
                          for p in PROPERTIES] for d in r.designs]
    return tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)


def _legend(width: int = 10_000) -> list[str]:
    out = []
    for p in PROPERTIES:
        out += textwrap.wrap(f"{SHORT[p.key]} {p.key}: {p.summary}", width,
                             initial_indent="  ", subsequent_indent="      ")
    return out


def _effort_table(r: Report, fmt: str) -> str:
    rows = [[d.design, d.runs, f"{d.states:,}", f"{d.seconds:.1f}"] for d in r.designs]
    return tabulate(rows, headers=["design", "runs", "distinct states", "TLC seconds"],
                    tablefmt=fmt, disable_numparse=True)


def _cost_table(r: Report, fmt: str) -> str:
    rows = []
    for c in r.costs:
        rows.append([c.design, c.backing, f"{c.collateral_pages} of {c.collateral_of}",
                     c.leaked_pages, c.blast_radius])
    return tabulate(rows, headers=["design", "backing", "collateral", "leaked", "blast radius"],
                    tablefmt=fmt, disable_numparse=True)


def _run_table(r: Report, fmt: str) -> str:
    rows = []
    for run in r.runs:
        cells = []
        for p in PROPERTIES:
            v = run["verdicts"][p.key]
            cells.append(f"VIOLATED ({v['steps']} steps)" if v["verdict"] == "violated"
                         else v["verdict"])
        rows.append([run["name"]] + cells + [f"{run['distinct_states']:,}", run["seconds"]])
    return tabulate(rows, headers=["run"] + [p.short for p in PROPERTIES] + ["states", "s"],
                    tablefmt=fmt, disable_numparse=True)


def _compact_ftrace(text: str) -> list[str]:
    """Event lines without the task/CPU columns and probe sites, cut to 80 columns."""
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        try:
            rest = line.split("] ", 1)[1].split(None, 1)[1]     # after flags
        except IndexError:
            rest = line
        stamp, _, event = rest.partition(": ")
        name, _, payload = event.partition(": ")
        if payload.startswith("("):
            payload = payload.split(") ", 1)[1] if ") " in payload else ""
        shown = f"{stamp} {name}: {payload}".rstrip(": ")
        out.append(shown if len(shown) <= WIDTH - 4 else shown[:WIDTH - 7] + "...")
    return out


def _steps_text(cex) -> list[str]:
    out = []
    for step in cex.steps:
        head = f"{step.number:>3}  {step.action}"
        if step.kernel != "-":
            head += f"  [{step.kernel}]"
        out.extend(textwrap.wrap(head, WIDTH, subsequent_indent="       "))
        for change in step.changes:
            out.extend(textwrap.wrap(change, WIDTH, initial_indent="       ",
                                     subsequent_indent="         "))
    if cex.liveness:
        out.append(f"       ...then back to state {cex.loop_to}: forever"
                   if cex.loop_to else "       ...then nothing more happens: forever")
    return out


def _claims(r: Report) -> list[str]:
    if not r.ablation:
        return ["(no ablation results: run `poisoncheck ablate --json` or `make review`)"]
    return [f'"{c["quote"]}" -> {c["answer"]}' if isinstance(c, dict) else str(c)
            for c in r.ablation.get("claims", [])] or [
        "(no claims recorded)"]


ABBREV = {"NoHold": "NoHold", "FolioRef": "FolioRf", "HWPoison": "HWPois",
          "BuggyCleanup": "Buggy", "NoMoreSeamcalls": "NoMoreS"}


def _ablation_rows(r: Report, compact: bool) -> tuple[list[str], list[list[str]]]:
    designs = r.ablation.get("designs", list(model.DESIGNS))
    rows = []
    for check, per_design in r.ablation.get("checks", {}).items():
        cells = [per_design.get(d, {}).get("cell", "not present") for d in designs]
        rows.append([check] + [_short_cell(c) if compact else c for c in cells])
    headers = ["check"] + ([ABBREV.get(d, d[:7]) for d in designs] if compact else designs)
    return headers, rows


def _short_cell(cell: str) -> str:
    """At most 7 characters, so that the table fits 80 columns (legend below it)."""
    if cell.startswith("load-bearing: "):
        parts = cell.removeprefix("load-bearing: ").split()
        return f"LB {parts[0]}" + (f"/{parts[1].lstrip('(')}" if len(parts) > 1 else "")
    for prefix, short in (("not present", "-"), ("redundant (masked", "masked"),
                          ("redundant", "redund"), ("adds nothing", "+0"), ("shortens", "shorter"),
                          ("hastens", "-P7 sh"), ("n/a", "n/a")):
        if cell.startswith(prefix):
            return short
    if cell.startswith("closes: "):
        return "+" + cell.removeprefix("closes: ").split()[0]
    if cell.startswith("breaks: "):
        return "-" + cell.removeprefix("breaks: ").split()[0]
    return cell[:7]


def _ablation_text(r: Report) -> list[str]:
    if not r.ablation:
        return _claims(r)
    headers, rows = _ablation_rows(r, compact=True)
    # tabulate pads every header by 2; without it the table fits 80 columns.
    padding, tabulate_module.MIN_PADDING = tabulate_module.MIN_PADDING, 0
    try:
        table = tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)
    finally:
        tabulate_module.MIN_PADDING = padding
    out = [table, ""]
    out += textwrap.wrap("LB Pn/k: load-bearing, disabling it breaks property n, shortest "
                         "counterexample k steps; redund: nothing breaks; masked: breaks only "
                         "with another check of the same path also off (the Markdown and HTML "
                         "reports name it); shorter: a violation the design already has comes "
                         "sooner; -: the design does not have the check.  Proposed checks: "
                         "+0 adds nothing, +Pn closes a violation of Pn, -Pn breaks Pn "
                         "(sh: sooner); n/a: not tried for that design.", WIDTH)
    out += [""]
    for claim in _claims(r):
        out += textwrap.wrap(claim, WIDTH, subsequent_indent="    ") + [""]
    return out


def render_text(r: Report) -> str:
    out = ["poisoncheck design review", "=" * 25, ""]
    out += ["1. Designs x properties (TLC, every run of the matrix per design)", ""]
    out += [_design_table(r, "simple", compact=True), ""] + _legend(WIDTH) + [""]
    out += [_effort_table(r, "simple"), ""]
    out += ["2. Cost of one failed removal (worst case over the reachable states)", ""]
    out += [_cost_table(r, "simple"), ""]
    out += textwrap.wrap("collateral: pages no allocator hands out again although neither "
                         "a failed removal nor a memory error hit them, out of the model's "
                         "pages (buddy: two 4K folios; hugetlb: one HugeTLB folio modelled "
                         "as 2 pages, so 1 of 2 stands for the rest of the folio, 511 of 512 "
                         "4K pages of a 2M folio).  leaked: all pages stranded, bad ones "
                         "included.", WIDTH) + [""]
    out += ["3. Which checks carry the load (poisoncheck ablate)", ""] + _ablation_text(r) + [""]
    out += ["4. Counterexamples", ""]
    for i, cex in enumerate(r.counterexamples, 1):
        title = f"4.{i} {cex.run}: {cex.property} ({cex.kind})"
        out += textwrap.wrap(title, WIDTH) + ["-" * min(len(title), WIDTH)]
        out += _steps_text(cex)
        if cex.ftrace:
            out += ["", "    as a kernel trace:"] + ["    " + line for line in _compact_ftrace(cex.ftrace)]
        out.append("")
    out += ["5. Where a folio can go (per design; DOT/SVG files beside this report)", ""]
    for design, edges in r.diagram_edges.items():
        out.append(f"  {design}:")
        for a, b, names in edges:
            out += textwrap.wrap(f"{a} -> {b}: {', '.join(names)}", WIDTH,
                                 initial_indent="    ", subsequent_indent="      ")
    out += ["", "6. Trace coverage (traces/, Python engine)", ""]
    rows = [[c.trace.removesuffix(".trace")[:28], c.design[:12],
             c.verdict.replace("violation:", "viol:").replace("NoHostAccessToTdPage", "P1")[:18],
             len(c.actions)] for c in r.coverage]
    out += [tabulate(rows, headers=["trace", "design", "verdict", "actions"], tablefmt="simple"), ""]
    for design in model.DESIGNS:
        out += textwrap.wrap(f"{design}: accepted traces never take "
                             f"{', '.join(r.never_taken[design]) or 'nothing missing'}", WIDTH,
                             subsequent_indent="  ")
        out += textwrap.wrap(f"{design}: checks no trace saw refuse a step: "
                             f"{', '.join(r.never_refused[design]) or 'none'}", WIDTH,
                             subsequent_indent="  ")
    out += [""] + [f"note: {n}" for n in r.notes]
    text = "\n".join(line.rstrip() for line in out).rstrip() + "\n"
    return _ascii(text)


def _ascii(text: str) -> str:
    """Plain-text mail: ASCII only (a few typographic characters spelled out)."""
    for fancy, plain in (("\u2192", "->"), ("\u00d7", "x"), ("\u2013", "-"), ("\u2014", "--"),
                         ("\u2018", "'"), ("\u2019", "'"), ("\u201c", '"'), ("\u201d", '"')):
        text = text.replace(fancy, plain)
    return text.encode("ascii", "replace").decode("ascii")


def render_markdown(r: Report) -> str:
    out = ["# poisoncheck design review", "", "## Designs x properties", "",
           _design_table(r, "github", compact=False), "",
           *[f"- {line.strip()}" for line in _legend()], "", _effort_table(r, "github"), "",
           "<details><summary>Every run</summary>", "", _run_table(r, "github"), "",
           "</details>", "", "## Cost of one failed removal", "", _cost_table(r, "github"), "",
           "## Which checks carry the load", ""]
    if r.ablation:
        headers, rows = _ablation_rows(r, compact=False)
        out += [tabulate(rows, headers=headers, tablefmt="github"), ""]
    out += [f"- {c}" for c in _claims(r)] + ["", "## Counterexamples", ""]
    for cex in r.counterexamples:
        out += [f"### {cex.run}: {cex.property} ({cex.kind})", ""]
        rows = [[s.number, s.action, s.kernel, "<br>".join(s.changes)] for s in cex.steps]
        out += [tabulate(rows, headers=["#", "action", "kernel function", "changes"],
                         tablefmt="github"), ""]
        if cex.liveness:
            out += [f"Then back to state {cex.loop_to}, forever." if cex.loop_to
                    else "Then nothing more happens, forever.", ""]
        if cex.ftrace:
            out += ["```", cex.ftrace.rstrip(), "```", ""]
    out += ["## Where a folio can go", ""]
    for design, dot in r.diagrams.items():
        out += [f"### {design}", "", "```dot", dot.rstrip(), "```", ""]
    out += ["## Trace coverage", ""]
    rows = [[c.trace, c.design, c.verdict, ", ".join(c.actions), ", ".join(c.refused) or "-"]
            for c in r.coverage]
    out += [tabulate(rows, headers=["trace", "design", "verdict", "actions taken",
                                    "checks that refused"], tablefmt="github"), ""]
    for design in model.DESIGNS:
        out.append(f"- **{design}**: never taken by an accepted trace: "
                   f"{', '.join(r.never_taken[design]) or '-'}; checks never seen refusing: "
                   f"{', '.join(r.never_refused[design]) or '-'}")
    out += [""] + [f"> {n}" for n in r.notes]
    return "\n".join(out).rstrip() + "\n"


CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1180px;margin:2em auto;
padding:0 1.5em;color:#1d2330;background:#fff}
h1{font-size:1.7em;border-bottom:3px solid #2b6cb0;padding-bottom:.3em}
h2{font-size:1.3em;margin-top:2em;border-bottom:1px solid #d5dbe5;padding-bottom:.2em}
h3{font-size:1.05em;margin-top:1.5em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
th,td{border:1px solid #d5dbe5;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#eef2f8}
td.holds{background:#e6f4ea;color:#1e6b34}td.viol{background:#fde8e8;color:#9b1c1c;font-weight:600}
td.na{color:#8a94a6}
pre{background:#f6f8fb;border:1px solid #d5dbe5;padding:.7em;overflow-x:auto;font-size:.8em}
details{margin:.5em 0}summary{cursor:pointer;color:#2b6cb0}
.diagram svg{max-width:100%;height:auto}
.note{color:#5a6478;font-size:.9em}
"""


def _cls(text: str) -> str:
    return "viol" if text.startswith("VIOLATED") else "holds" if text == "holds" else "na"


def _html_table(headers, rows, classify=False) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            text = html.escape(str(cell))
            klass = f' class="{_cls(str(cell))}"' if classify and i > 0 else ""
            cells.append(f"<td{klass}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def render_html(r: Report, svgs: dict[str, str] | None = None) -> str:
    svgs = svgs or {}
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8>"
             f"<title>poisoncheck design review</title><style>{CSS}</style></head><body>",
             "<h1>poisoncheck design review</h1>",
             "<p class=note>Model-checked with TLC 2.15 over spec/Poison.tla; traces replayed "
             "by the Python engine. Every number below is computed.</p>",
             "<h2>Designs &times; properties</h2>",
             _html_table(["design"] + [p.short for p in PROPERTIES],
                         [[d.design] + [d.cells[p.key] for p in PROPERTIES] for d in r.designs],
                         classify=True),
             "<ul>" + "".join(f"<li><b>{p.key}</b>: {html.escape(p.summary)}</li>"
                              for p in PROPERTIES) + "</ul>",
             _html_table(["design", "runs", "distinct states", "TLC seconds"],
                         [[d.design, d.runs, f"{d.states:,}", f"{d.seconds:.1f}"]
                          for d in r.designs]),
             "<details><summary>Every run of the matrix</summary>",
             _html_table(["run"] + [p.short for p in PROPERTIES] + ["states", "s"],
                         [[run["name"]] + [
                             (f"VIOLATED ({run['verdicts'][p.key]['steps']} steps)"
                              if run["verdicts"][p.key]["verdict"] == "violated"
                              else run["verdicts"][p.key]["verdict"]) for p in PROPERTIES]
                          + [f"{run['distinct_states']:,}", run["seconds"]] for run in r.runs],
                         classify=True), "</details>",
             "<h2>Cost of one failed removal</h2>",
             _html_table(["design", "backing", "collateral leak", "leaked", "blast radius"],
                         [[c.design, c.backing, f"{c.collateral_pages} of {c.collateral_of}",
                           c.leaked_pages, c.blast_radius]
                          for c in r.costs]),
             "<p class=note>A HugeTLB folio is modelled as 2 pages: 1 of 2 stands for the rest of "
             "the folio (511 of 512 4K pages of a 2M folio).</p>",
             "<h2>Which checks carry the load</h2>"]
    if r.ablation:
        headers, rows = _ablation_rows(r, compact=False)
        parts.append(_html_table(headers, rows))
    parts.append("<ul>" + "".join(f"<li>{html.escape(c)}</li>" for c in _claims(r)) + "</ul>")
    parts.append("<h2>Counterexamples</h2>")
    for cex in r.counterexamples:
        parts.append(f"<h3>{html.escape(cex.run)}: {html.escape(cex.property)} "
                     f"<span class=note>({cex.kind})</span></h3>")
        parts.append(_html_table(["#", "action", "kernel function", "changes"],
                                 [[s.number, s.action, s.kernel, "; ".join(s.changes)]
                                  for s in cex.steps]))
        if cex.liveness:
            parts.append(f"<p>Then back to state {cex.loop_to}, forever.</p>" if cex.loop_to
                         else "<p>Then nothing more happens, forever.</p>")
        if cex.ftrace:
            parts.append("<details><summary>as a kernel trace</summary><pre>"
                         f"{html.escape(cex.ftrace)}</pre></details>")
    parts.append("<h2>Where a folio can go</h2>")
    for design, dot in r.diagrams.items():
        parts.append(f"<h3>{design}</h3>")
        if design in svgs:
            parts.append(f"<div class=diagram>{svgs[design]}</div>")
        else:
            parts.append(f"<pre>{html.escape(dot)}</pre>")
    parts.append("<h2>Trace coverage</h2>")
    parts.append(_html_table(["trace", "design", "verdict", "actions taken", "checks that refused"],
                             [[c.trace, c.design, c.verdict, ", ".join(c.actions),
                               ", ".join(c.refused) or "-"] for c in r.coverage]))
    parts.append("<ul>" + "".join(
        f"<li><b>{d}</b>: never taken by an accepted trace: "
        f"{html.escape(', '.join(r.never_taken[d]) or '-')}; checks never seen refusing: "
        f"{html.escape(', '.join(r.never_refused[d]) or '-')}</li>" for d in model.DESIGNS) + "</ul>")
    parts += [f"<p class=note>{html.escape(n)}</p>" for n in r.notes]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
