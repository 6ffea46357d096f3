"""The `poisoncheck` command line: thin wrappers around the library modules."""

import click

from . import __version__
from .ablate_cmd import ablate
from .check_cmd import check
from .validate_cmd import validate
from .corpus_cmd import corpus
from .report_cmd import report
from .parse_cmd import parse
from .record_cmd import record


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="poisoncheck")
def cli():
    """Model-check and trace-validate the TDX / guest_memfd page-poisoning protocol.

    \b
    Exit codes (all commands):
      0  pass
      1  a violation, a counterexample, or a result that differs from expectation
      2  usage or input error (bad file, missing Java, TLC error, timeout)
    """


cli.add_command(check)
cli.add_command(parse)
cli.add_command(validate)
cli.add_command(record)
cli.add_command(corpus)
cli.add_command(ablate)
cli.add_command(report)
