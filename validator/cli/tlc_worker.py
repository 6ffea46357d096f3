"""`poisoncheck tlc-worker`: a TLC worker for a `check --distributed` server elsewhere."""

from __future__ import annotations

import click

from validator import children
from validator.cli.errors import InputError
from validator.cli.options import heap_size
from validator.tlc.distributed import worker_command
from validator.tlc.setup import SetupError, default_jar, find_java, verify_jar


@click.command("tlc-worker")
@click.argument("server")
@click.option("--port", type=click.IntRange(1, 65535), required=True,
              help="The server's RMI registry port (its check's --server-port).")
@click.option("--threads", type=click.IntRange(1, 1024), default=1, show_default=True,
              help="Worker threads; each registers with the server as one worker.")
@click.option("--host", "own_host", required=True,
              help="The name the server reaches this machine by (RMI calls back).")
@click.option("--heap", default="2g", show_default=True, callback=heap_size,
              help="Java heap (-Xmx), e.g. 512m, 8g.")
def tlc_worker(server, port, threads, own_host, heap):
    """Join the TLC server of `poisoncheck check --distributed` on another machine.

    The server is `poisoncheck check --distributed N --server-host SERVER --server-port
    PORT`; this worker computes successor states for it until its check ends.  Needs Java
    and the jar (`poisoncheck setup`), not the spec: the server sends it.  TLC's own output
    goes to stdout.

    \b
    Example (server on host a, this worker on host b):
      a$ poisoncheck check --only HWPoison-thp-fail1 --distributed 2 \\
             --server-host a --server-port 10997
      b$ poisoncheck tlc-worker a --port 10997 --host b --threads 8
    """
    try:
        cmd = worker_command(find_java(), verify_jar(default_jar()), server, port, threads,
                             own_host, heap)
    except SetupError as err:
        raise InputError(str(err)) from None
    returncode = children.run(cmd, None, None, lambda line: click.echo(line, nl=False)).returncode
    if returncode != 0:
        raise InputError(f"the TLC worker exited with {returncode}")
