"""`poisoncheck parse`: read ftrace text and say what was in it (validator.ftrace does the
work; the probe catalogue's events typed, as the replay reads them)."""

import json

import click
from tabulate import tabulate, tabulate_formats

from validator.cli.errors import InputError
from validator.ftrace import ENGINES, Summary, TraceInputError, printable, summarise
from validator.replay.input import read_file


@click.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option("--first", default=10, show_default=True, type=click.IntRange(min=0),
              help="How many unparsed lines to list.")
@click.option("--engine", type=click.Choice(sorted(ENGINES)), default="fast", show_default=True,
              help="fast: regexes built from the grammar; lark: the grammar itself (slow, for checking).")
@click.option("--fmt", type=click.Choice(tabulate_formats), default="simple", show_default=True,
              metavar="FMT", help="Table format: any tabulate format (simple, github, plain, grid, ...).")
def parse(files, as_json, first, engine, fmt):
    """Read ftrace text and report what it holds: events by name, lines by kind (event,
    header, lost, continuation, blank, funcgraph, unparsed) and the first unparsed lines
    with their line numbers and reasons.

    Reads the tracefs `trace` file (any header or option variant), `trace_pipe`,
    `trace-cmd report` and `perf script` output. FILE may be - for stdin; names ending in
    .gz or .xz are decompressed.

    \b
    Examples:
      poisoncheck parse /sys/kernel/tracing/trace
      cat /sys/kernel/tracing/trace_pipe | poisoncheck parse -
      trace-cmd report | poisoncheck parse --json - | jq .by_event
      poisoncheck parse capture.trace.xz perf-script.txt.gz

    \b
    Exit codes: 0 read (even with unparsed lines), 2 an input that cannot be read or is
    not ftrace text (binary, compressed without .gz/.xz, HTML, empty).
    """
    total = Summary(keep=first)
    per_file = []
    errors = []
    for name in files:
        try:
            summary = summarise(read_file(name, engine=engine), source=name, keep=first)
        except TraceInputError as exc:
            errors.append(str(exc))
            continue
        per_file.append((name, summary))
        total.merge(summary)
    if per_file:
        if as_json:
            click.echo(json.dumps(_json(total, per_file), indent=2))
        else:
            click.echo(_tables(total, per_file, fmt))
    for message in errors[:-1]:
        click.echo(f"Error: {message}", err=True)
    if errors:
        raise InputError(errors[-1])


def _json(total: Summary, per_file: list) -> dict:
    out = total.to_dict()
    out["files"] = [
        {"file": name, **{k: v for k, v in s.to_dict().items() if k != "first_unparsed"}}
        for name, s in per_file
    ]
    return out


def _headline(name: str, s: Summary) -> str:
    text = (f"{printable(name)}: {s.lines} lines, {s.events} events, {s.unparsed} unparsed, "
            f"{s.lost_markers} lost-event markers")
    if s.lost_events:
        text += f" ({s.lost_events} events lost)"
    if s.overwritten:
        text += f", {s.overwritten} events overwritten before reading (header)"
    return text


def _tables(total: Summary, per_file: list, fmt: str) -> str:
    parts = [_headline(name, s) for name, s in per_file]
    if len(per_file) > 1:
        parts.append(_headline("all inputs", total))
    kinds = [(str(kind), n) for kind, n in total.by_kind.most_common()]
    parts.append(tabulate(kinds, headers=["line kind", "lines"], tablefmt=fmt))
    if total.by_event:
        events = [(printable(name, 60), n) for name, n in
                  sorted(total.by_event.items(), key=lambda item: (-item[1], item[0]))]
        parts.append(tabulate(events, headers=["event", "count"], tablefmt=fmt))
    if total.first_unparsed:
        several = len(per_file) > 1
        rows = [((printable(u.source, 40),) if several else ()) + (u.line, u.reason, printable(u.text, 80))
                for u in total.first_unparsed]
        headers = (["file"] if several else []) + ["line", "reason", "text"]
        title = f"first {len(rows)} of {total.unparsed} unparsed lines"
        parts.append(title + "\n" + tabulate(rows, headers=headers, tablefmt=fmt))
    return "\n\n".join(parts)
