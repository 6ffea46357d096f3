"""`poisoncheck ablate`: which checks carry the load, design by design, as a table.

Thin over the library: validator.check.ablation plans and runs, ablation_output
writes the JSON and the text (the cells and the claims' answers are computed
from the outcomes; no verdict is written in advance).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from validator.check.ablation import (AblationError, matrix_shapes, run_ablation,
                                      select_checks, select_designs, settings_for)
from validator.check.ablation_output import to_json, to_text
from validator.check.matrix import MatrixError
from validator.cli.errors import InputError, writing_to
from validator.cli.options import FiniteRange
from validator.model import BACKINGS
from validator.paths import build_dir, spec_dir as packaged_spec_dir
from validator.check.runner import default_tlc_jobs
from validator.tlc.setup import SetupError, tlc_setup


@click.command()
@click.option("--design", "design", multiple=True, metavar="D",
              help="A design to ablate (repeatable) or 'all' [default: all].")
@click.option("--backing", multiple=True, type=click.Choice(BACKINGS),
              help="Only these backings (repeatable) [default: buddy, then hugetlb].")
@click.option("--check", "checks", multiple=True, metavar="CHECK",
              help="Only these checks (repeatable) [default: every check of spec/Poison.tla].")
@click.option("--full", is_flag=True,
              help="No shortcuts: every check on every setting, proposed checks in every "
                   "design, liveness in every run, every pair of redundant checks (slower).")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None,
              help="TLC processes in parallel [default: the number of cores].")
@click.option("--timeout", type=FiniteRange(min=1), default=600, show_default=True,
              help="Seconds one TLC process may take before the ablation fails.")
@click.option("--spec-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory with Poison.tla and MCPoison.tla [default: the spec/ shipped "
                   "with poisoncheck].")
@click.option("--matrix", "matrix_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Matrix whose default constants are used "
                                 "[default: matrix.toml of the spec directory].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where configs, TLC output and counterexamples go [default: ./build/ablate].")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")
def ablate(design, backing, checks, full, jobs, timeout, spec_dir, matrix_path, out_dir,
           as_json, quiet):
    """Disable each named check of spec/Poison.tla in turn and see what breaks.

    For each design: a baseline TLC run, one run per check the design performs
    with that check disabled, one per proposed check with it added, with one
    removal failure and one memory error on buddy and HugeTLB folios.  Checks
    that break nothing alone are then disabled in pairs (same action or same
    condition) to name what masks them.  Cells: `load-bearing: P1 (6 steps)`,
    `shortens`, `redundant (masked by X)`, `not present`; proposed checks:
    `adds nothing`, `closes: P1`, `breaks: P7 (3 steps)`.

    \b
    Examples:
      poisoncheck ablate
      poisoncheck ablate --design HWPoison --design BuggyCleanup
      poisoncheck ablate --design NoHold --backing buddy --check gmem_fault.shared
      poisoncheck ablate --json > ablation.json     # also build/ablate/ablation.json

    \b
    Exit codes: 0 the ablation ran, 2 bad option, missing Java or jar, a TLA+
    error, or a TLC run over --timeout.
    """
    spec_dir = spec_dir or packaged_spec_dir()
    matrix_path = matrix_path or spec_dir / "matrix.toml"
    out_dir = out_dir or build_dir() / "ablate"
    settings = settings_for(backing)
    try:
        designs = select_designs(design)
        chosen = select_checks(checks, spec_dir)
        shapes = matrix_shapes(matrix_path)
        setup = tlc_setup(out_dir, timeout, spec_dir)
        progress = (lambda _: None) if quiet else (lambda line: click.echo(line, err=True))
        with writing_to(out_dir):
            result = run_ablation(setup, shapes, designs=designs, settings=settings,
                                  checks=chosen, jobs=jobs or default_tlc_jobs(), full=full,
                                  progress=progress)
    except (AblationError, MatrixError, SetupError) as err:
        raise InputError(str(err)) from None

    data = to_json(result)
    with writing_to(out_dir):
        (out_dir / "ablation.json").write_text(json.dumps(data, indent=1, ensure_ascii=False)
                                               + "\n")
    if as_json:
        json.dump(data, sys.stdout, indent=1, ensure_ascii=False)
        click.echo()
        return
    click.echo(to_text(result, out_dir))
