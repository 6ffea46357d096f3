"""Option checks more than one command shares."""

from __future__ import annotations

import math
import re

import click


def heap_size(ctx, param, value: str) -> str:
    """A Java heap size (-Xmx) as the JVM takes it; anything else is a usage error (exit 2)
    here, not a JVM that fails to start."""
    if not re.fullmatch(r"[1-9][0-9]*[kKmMgG]?", value):
        raise click.BadParameter(f"{value!r} is not a Java heap size like 512m or 8g")
    return value


class FiniteRange(click.FloatRange):
    """click.FloatRange without nan and inf: nan passes every comparison of a range (a
    --timeout nan would switch the timeout off) and inf is no bound either."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def run_patterns(ctx, param, value: tuple[str, ...]) -> tuple[str, ...]:
    """--only's patterns: an empty one (an unset shell variable) would match every run,
    the deep ones too."""
    if any(not pattern.strip() for pattern in value):
        raise click.BadParameter("an empty pattern would select every run; name the runs")
    return value
