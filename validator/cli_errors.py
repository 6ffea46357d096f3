"""The error every command raises for bad input or environment."""

import click


class InputError(click.ClickException):
    """Bad input or environment: one line on stderr, exit code 2."""

    exit_code = 2


def device_option(ctx, param, value):
    """A click callback for MAJ:MIN options (guest_memfd's device)."""
    from .planner import parse_dev
    if value is None:
        return None
    dev = parse_dev(value)
    if dev is None:
        raise click.BadParameter(f"{value!r} is not MAJ:MIN (e.g. 0:16)")
    return dev
