"""The entry point's own exit codes: a bug is one line and 70, an interrupt is 130."""

import errno

import pytest

from validator import cli
from validator.cli import parse as parse_cmd

from conftest import ROOT

TRACE = str(ROOT / "traces" / "lifecycle-buddy.trace")


def run_main(args, capsys):
    try:
        cli.main(args)
        code = 0
    except SystemExit as done:
        code = done.code or 0
    return code, capsys.readouterr()


def test_a_bug_is_one_line_and_exit_70(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("something\nthe code did not expect")
    monkeypatch.setattr(parse_cmd, "summarise", broken)
    code, out = run_main(["parse", TRACE], capsys)
    assert code == cli.INTERNAL_ERROR == 70
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and "internal error" in lines[0] and "RuntimeError" in lines[0]
    assert "Traceback" not in out.err and "--debug" in lines[0]


def test_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setattr(parse_cmd, "summarise", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        cli.main(["parse", TRACE, "--debug"])


def test_an_interrupt_exits_130_not_1(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(parse_cmd, "summarise", interrupted)
    code, out = run_main(["parse", TRACE], capsys)
    assert code == 130 and "interrupted" in out.err


def test_usage_and_input_errors_keep_their_codes(capsys):
    assert run_main(["parse", "/nonexistent/trace"], capsys)[0] == 2
    assert run_main(["nosuchcommand"], capsys)[0] == 2
    assert run_main(["parse", TRACE], capsys)[0] == 0
    assert run_main(["--version"], capsys)[0] == 0


def test_click_returns_its_own_exit_and_main_passes_the_code_on(monkeypatch, capsys):
    """Outside standalone mode click catches Exit itself (main's old `except Exit` never
    ran): --help returns 0, and a ctx.exit(n) in a command comes back as n."""
    import click
    assert cli.cli.main(["--help"], prog_name="poisoncheck", standalone_mode=False) == 0
    capsys.readouterr()

    @click.command()
    @click.pass_context
    def exits_four(ctx):
        ctx.exit(4)
    monkeypatch.setattr(parse_cmd, "exits_four", exits_four, raising=False)
    monkeypatch.setitem(cli.COMMANDS, "exits-four", ("parse", "exits_four", "Exit 4."))
    assert run_main(["exits-four"], capsys)[0] == 4
    code, out = run_main(["--help"], capsys)
    assert code == 0 and "exits-four" in out.out


def test_a_closed_pipe_is_not_a_bug(monkeypatch, capsys):
    def closed(*args, **kwargs):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")   # as a write raises it
    monkeypatch.setattr(parse_cmd, "summarise", closed)
    code, out = run_main(["parse", TRACE], capsys)
    assert code == cli.BROKEN_PIPE == 141 and "internal error" not in out.err


def test_a_reader_that_goes_away_gives_141_not_1():
    """`poisoncheck parse t | head -0`: click alone would exit 1, a violation's code."""
    import os
    import subprocess
    import sys
    read_end, write_end = os.pipe()
    os.close(read_end)                  # the reader is gone before the first write
    try:
        done = subprocess.run([sys.executable, "-m", "validator", "parse", TRACE],
                              stdout=write_end, stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(write_end)
    assert done.returncode == 141, done.stderr
    assert b"Traceback" not in done.stderr and b"internal error" not in done.stderr


def test_an_interrupted_check_leaves_later_tlc_runs_possible(monkeypatch, tmp_path):
    from validator import children
    from validator.check import runner as check_runner
    from validator.tlc.setup import TlcSetup

    def interrupted(*args, **kwargs):
        children.kill_children()
        raise KeyboardInterrupt
    monkeypatch.setattr(check_runner, "_run_tasks", interrupted)
    with pytest.raises(KeyboardInterrupt):
        setup = TlcSetup("java", tmp_path / "jar", tmp_path, tmp_path / "out", 10)
        check_runner.check_runs([], setup, 1)
    assert not children.STOPPING.is_set()
    children.STOPPING.set()
    try:
        with pytest.raises(children.Stopped):
            children.run(["true"], ".", 10)
    finally:
        children.STOPPING.clear()
    assert children.run(["true"], ".", 10)[0] == 0
