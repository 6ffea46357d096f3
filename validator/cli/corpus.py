"""`poisoncheck corpus`: validate traces/ against its manifest and replay the counterexamples."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from tabulate import tabulate

from validator.check.readback import ReadBackError
from validator.cli.errors import InputError, cannot_write
from validator.review.corpus import CorpusError, check_traces, render_counterexamples
from validator.review.real_corpus import check_real
from validator.ftrace import TraceInputError
from validator.replay.verdict import ReplayInputError
from validator.paths import build_dir, traces_dir as default_traces


@click.command()
@click.option("--traces", "traces_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Folder with manifest.toml "
                                 "[default: the checkout's traces/, else ./traces].")
@click.option("--counterexamples", "check_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="`poisoncheck check` output to render and replay "
                                 "[default: ./build/check, skipped when absent].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where rendered counterexample traces go [default: ./build/traces].")
def corpus(traces_dir, check_dir, out_dir):
    """Validate every trace of the corpus against its expected verdicts.

    Replays each trace of traces/manifest.toml against every design it lists,
    and the real captures of traces/real/ with the traces derived from them
    (one impossible line spliced in: every design must reject it), then renders each safety counterexample of the last `poisoncheck check`
    as an ftrace log and replays it against its run's configuration: each must
    be rejected.

    \b
    Exit codes: 0 all as expected, 1 some verdict differs, 2 bad input.
    """
    traces_dir = traces_dir or default_traces()
    check_dir_given = check_dir is not None
    check_dir = check_dir or build_dir() / "check"
    out_dir = out_dir or build_dir() / "traces"
    if check_dir_given and not check_dir.is_dir():
        raise InputError(f"{check_dir}: no such folder (--counterexamples)")
    try:
        outcomes = check_traces(traces_dir)
        if (traces_dir / "real" / "manifest.toml").is_file():
            outcomes += check_real(traces_dir / "real", out_dir / "spliced")
        rendered = render_counterexamples(check_dir, out_dir) if check_dir.is_dir() else []
    except (CorpusError, ReadBackError, TraceInputError, ReplayInputError, ValueError) as err:
        raise InputError(str(err)) from None
    except OSError as err:          # the rendered traces' folder (reading raises the others)
        raise cannot_write(err, out_dir) from None
    rows = [[o.trace, o.design, o.expected, o.got, "ok" if o.ok else "DIFFERS"]
            for o in outcomes]
    click.echo(tabulate(rows, headers=["trace", "design", "expected", "got", ""]))
    if rendered:
        click.echo()
        rows = [[o.trace, o.design, o.got, "ok" if o.ok else ("skipped" if o.got == "skipped"
                                                                else "NOT REJECTED"), o.note]
                for o in rendered]
        click.echo(tabulate(rows, headers=["counterexample", "design", "replay", "", "note"]))
    bad = [o for o in outcomes if not o.ok] + [o for o in rendered
                                               if not o.ok and o.got != "skipped"]
    click.echo(f"\n{len(outcomes)} trace verdicts, {len(rendered)} counterexamples "
               f"({sum(o.got == 'skipped' for o in rendered)} liveness, skipped); "
               f"{len(bad)} differ")
    if bad:
        sys.exit(1)
