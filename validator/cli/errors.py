"""The error every command raises for bad input or environment."""

from contextlib import contextmanager

import click


class InputError(click.ClickException):
    """Bad input or environment: one line on stderr, exit code 2.  Control characters
    (from file names or trace text) are escaped, so a message cannot drive the terminal."""

    exit_code = 2

    def format_message(self) -> str:
        return terminal_safe(self.message)


@contextmanager
def writing_to(folder):
    """An output folder that cannot be written (read-only, full, a file in the way) is
    bad input, said in one line, not a bug."""
    try:
        yield
    except BrokenPipeError:         # our reader went away: not the folder's fault
        raise
    except OSError as err:
        raise cannot_write(err, folder) from None


def cannot_write(err: OSError, folder) -> InputError:
    return InputError(f"{err.filename or folder}: cannot write there: {err.strerror or err}")


def terminal_safe(text: str) -> str:
    """text with control characters and undecodable bytes escaped (no length limit)."""
    from validator.ftrace import printable
    return printable(text, len(text) + 1)


def device_option(ctx, param, value):
    """A click callback for MAJ:MIN options (guest_memfd's device)."""
    from validator.replay.planner import parse_dev
    if value is None:
        return None
    dev = parse_dev(value)
    if dev is None:
        raise click.BadParameter(f"{value!r} is not MAJ:MIN (e.g. 0:16)")
    return dev


def inode_option(ctx, param, value):
    """A click callback for an inode number, hex as the page-cache events print it
    ("ino 242"), with or without 0x."""
    import re
    if value is None:
        return None
    if not re.fullmatch(r"(?:0x)?[0-9a-fA-F]{1,16}", value):
        raise click.BadParameter(f"{value!r} is not an inode number in hex (e.g. 0x242)")
    return int(value, 16)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that clean-up runs (tracefs undone, child
    processes killed) before poisoncheck exits 143."""


class PipeClosed(Exception):
    """The reader of the output went away (EPIPE): exit 141, quietly."""
