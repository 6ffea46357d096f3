"""`poisoncheck report`: the design-review artifacts a reviewer can paste into the thread."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from validator.check.readback import ReadBackError, inside
from validator.cli.errors import InputError, writing_to
from validator.review.corpus import CorpusError
from validator.review.diagram import write_diagrams
from validator.ftrace import TraceInputError
from validator.review.report import ReportError, collect
from validator.review.render import render_html, render_markdown, render_text
from validator.paths import build_dir, traces_dir as default_traces

RENDERERS = {"text": ("report.txt", render_text), "md": ("report.md", render_markdown)}


@click.command()
@click.option("--format", "formats", multiple=True, type=click.Choice(["text", "md", "html"]),
              help="Output format; repeatable.  [default: text on stdout; all three with -o]")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Write report.{txt,md,html}, the state diagrams (DOT, and SVG "
                                 "when Graphviz is installed) and the counterexample traces here.")
@click.option("--check-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Results of `poisoncheck check` [default: ./build/check].")
@click.option("--traces", "traces_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="The trace corpus "
                                 "[default: the checkout's traces/, else ./traces].")
@click.option("--ablation", "ablation_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Results of `poisoncheck ablate --json` "
                                 "[default: ./build/ablate/ablation.json, when present].")
def report(formats, out_dir, check_dir, traces_dir, ablation_path):
    """Build the design-review report from the check results and the trace corpus.

    The designs x properties table (verdicts, distinct states, seconds), each
    design's cost (collateral leak, blast radius), the guard ablation, every
    counterexample as a numbered step table and as a kernel trace, the
    per-folio state machine of each design, and the coverage of the traces.
    The text format fits 80 columns of ASCII, for a plain-text mail.

    \b
    Examples:
      make check && poisoncheck report | less
      poisoncheck report --format md > review.md
      poisoncheck report -o build/review      (what `make review` runs)
    """
    check_dir = check_dir or build_dir() / "check"
    traces_dir = traces_dir or default_traces()
    if ablation_path is not None and not ablation_path.is_file():
        raise InputError(f"{ablation_path}: no such file (--ablation)")
    ablation_path = ablation_path or build_dir() / "ablate" / "ablation.json"
    try:
        data = collect(check_dir, traces_dir, ablation_path)
    except (ReportError, ReadBackError, CorpusError, TraceInputError, ValueError) as err:
        raise InputError(str(err)) from None
    if out_dir is None:
        chosen = formats or ("text",)
        for fmt in chosen:
            click.echo(render_html(data) if fmt == "html" else RENDERERS[fmt][1](data), nl=False)
        return
    chosen = formats or ("text", "md", "html")
    with writing_to(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        diagrams = write_diagrams(out_dir / "diagrams")
        svgs = {p.stem.removeprefix("folio-"): p.read_text() for p in diagrams if p.suffix == ".svg"}
        traces = out_dir / "counterexamples"
        shutil.rmtree(traces, ignore_errors=True)
        traces.mkdir()
        for cex in data.counterexamples:
            if cex.ftrace:
                # run and property were checked as names; proven inside all the same
                try:
                    target = inside(traces, f"{cex.run}--{cex.property}.trace")
                except ReadBackError as err:
                    raise InputError(str(err)) from None
                target.write_text(cex.ftrace)
        for fmt in chosen:
            if fmt == "html":
                path = out_dir / "report.html"
                path.write_text(render_html(data, svgs))
            else:
                name, render = RENDERERS[fmt]
                path = out_dir / name
                path.write_text(render(data))
            click.echo(f"wrote {path}")
    click.echo(f"wrote {len(diagrams)} diagram file(s) ({'with' if svgs else 'no'} SVG: "
               f"{'Graphviz found' if svgs else 'install graphviz for SVG'}) and "
               f"{sum(1 for c in data.counterexamples if c.ftrace)} counterexample traces "
               f"under {out_dir}")
