"""The error every command raises for bad input or environment."""

import click


class InputError(click.ClickException):
    """Bad input or environment: one line on stderr, exit code 2."""

    exit_code = 2
