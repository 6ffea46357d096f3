"""What `check --simulate` prints and keeps: a table, simulation.json, the exit code."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from tabulate import tabulate

from validator.check.simulation import Simulation, mismatches
from validator.model.properties import SAFETY


def table(sims: list[Simulation]) -> str:
    headers = ["run", "behaviours", "depth <=", "states", "seconds"] + [p.short for p in SAFETY]
    rows = [[s.run.name, f"{s.behaviours:,}", str(s.depth), f"{s.states:,}",
             f"{s.seconds:.0f}"] + [s.cell(p.key) for p in SAFETY] for s in sims]
    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)


def finish_simulation(out_dir: Path, sims: list[Simulation], as_json: bool) -> None:
    differs = [m for s in sims for m in mismatches(s)]
    data = {"simulations": [s.to_json() for s in sims], "mismatches": differs}
    partial = out_dir / "simulation.json.partial"
    partial.write_text(json.dumps(data, indent=1) + "\n")
    partial.replace(out_dir / "simulation.json")
    if as_json:
        json.dump(data, sys.stdout, indent=1)
        click.echo()
    else:
        click.echo(table(sims))
        click.echo(f"\nSimulation is evidence, not proof: \"none in N\" is no violation in N "
                   f"random behaviours, never a holds.  Counterexamples in {out_dir}.")
        for s in sims:
            click.echo(f"{s.run.name}: {s.summary()}")
    for line in differs:
        click.echo(f"differs: {line}", err=True)
    if differs:
        sys.exit(1)
