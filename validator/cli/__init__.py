"""The `poisoncheck` command line: thin wrappers around the library modules.

Each command's module is imported only when that command runs (`poisoncheck validate`
need not load the report or the ablation), which keeps start-up short."""

import os
import signal
import sys
from importlib import import_module

import click

from validator import __version__
from validator.cli.errors import PipeClosed, Terminated

# command name -> (module, attribute, its help's first sentence for `poisoncheck --help`)
COMMANDS = {
    "setup": ("setup", "setup",
             "Fetch the TLC jar into the user cache and check Java."),
    "check": ("check", "check",
             "Model-check every run of the configuration matrix with TLC."),
    "parse": ("parse", "parse",
             "Read ftrace text and report what it holds: events by name, lines by kind."),
    "validate": ("validate", "validate",
             "Replay ftrace logs against a design's transition relation."),
    "record": ("record", "record",
             "Set up tracefs to record what the validator reads."),
    "corpus": ("corpus", "corpus",
             "Validate every trace of the corpus against its expected verdicts."),
    "ablate": ("ablate", "ablate",
             "Disable each named check of spec/Poison.tla in turn and see what breaks."),
    "report": ("report", "report",
             "Build the design-review report from the check results and the trace corpus."),
    "tlc-worker": ("tlc_worker", "tlc_worker",
                   "Join the TLC server of `poisoncheck check --distributed` on another "
                   "machine."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attribute, _ = COMMANDS[name]
        return getattr(import_module(f".{module}", __package__), attribute)

    def invoke(self, ctx):
        # click turns an EPIPE into exit 1 (a violation's code) before main() sees it
        try:
            return super().invoke(ctx)
        except BrokenPipeError as err:
            raise PipeClosed() from err

    def format_commands(self, ctx, formatter):
        # The listing from the table: `--help` does not import every command.
        rows = [(name, short) for name, (_, _, short) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="poisoncheck")
def cli():
    """Model-check and trace-validate the TDX / guest_memfd page-poisoning protocol.

    \b
    Exit codes (all commands):
      0  pass
      1  a violation, a counterexample, or a result that differs from expectation
      2  usage or input error (bad file, missing Java, TLC error, timeout)
      3  inconclusive (validate: nothing to judge, or events were lost)
     70  internal error: a bug in poisoncheck (one line; --debug shows the traceback)
    130  interrupted (SIGINT); 143 terminated (SIGTERM); child processes die with it
    141  the reader of the output went away (a closed pipe, e.g. `| head`)
    """


INTERNAL_ERROR = 70        # sysexits.h EX_SOFTWARE
INTERRUPTED = 130          # 128 + SIGINT, as a shell reports it
TERMINATED = 143           # 128 + SIGTERM
BROKEN_PIPE = 141          # 128 + SIGPIPE: the reader of our output went away (| head)


def _terminate(signum, frame):
    raise Terminated


def main(argv: list[str] | None = None) -> None:
    """The console entry point: click's own handling, except that an interrupt exits
    130 (click's Abort would exit 1, the code of a violation) and a bug is one line and
    exit 70 (the traceback with --debug anywhere on the command line)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args.remove("--debug")
    signal.signal(signal.SIGTERM, _terminate)
    try:
        # Outside standalone mode click catches its own Exit (--help, --version,
        # ctx.exit(n)) and returns the code; a command itself returns None.
        code = cli.main(args, prog_name="poisoncheck", standalone_mode=False)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("poisoncheck: interrupted", err=True)
        sys.exit(INTERRUPTED)
    except Terminated:
        click.echo("poisoncheck: terminated", err=True)
        sys.exit(TERMINATED)
    except (BrokenPipeError, PipeClosed):
        # Not a bug: stop quietly, and keep Python's final flush from failing again.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):   # stdout is not a file (captured)
            pass
        sys.exit(BROKEN_PIPE)
    except Exception as err:   # noqa: BLE001 - the last resort: a bug, said in one line
        if debug:
            raise
        where = err.__traceback__
        while where is not None and where.tb_next is not None:
            where = where.tb_next
        site = (f" at {where.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{where.tb_lineno}"
                if where is not None else "")
        text = " ".join(str(err).split())[:200]
        click.echo(f"poisoncheck: internal error{site}: {type(err).__name__}: {text} "
                   f"(a bug; run again with --debug for the traceback)", err=True)
        sys.exit(INTERNAL_ERROR)
    if isinstance(code, int) and code:
        sys.exit(code)
