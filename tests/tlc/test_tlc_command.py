"""What reaches the JVM and TLC from check's options (no TLC needed: a fake java records
its command line)."""

import stat

from validator.tlc.process import run_tlc
from validator.tlc.setup import TlcSetup


def test_workers_heap_fpmem_and_the_pinned_polynomial_reach_tlc(tmp_path):
    args_file = tmp_path / "args"
    java = tmp_path / "java"
    java.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {args_file}\nexit 1\n')
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    cfg = tmp_path / "safety1.cfg"
    cfg.write_text("")
    setup = TlcSetup(java=str(java), jar=tmp_path / "tla2tools.jar", spec_dir=tmp_path,
                     out_dir=tmp_path, timeout=30, heap="1g", workers=3, fpmem=0.25)
    result, _, _ = run_tlc(setup, cfg, tmp_path)
    args = args_file.read_text().splitlines()
    assert "-Xmx1g" in args
    for option, value in (("-workers", "3"), ("-fpmem", "0.25"), ("-fp", "0")):
        assert args[args.index(option) + 1] == value, option
    assert result.status == "error"         # no TLC output: never taken for a verdict
    assert result.peak_kib is not None      # the fake JVM was reaped by wait4 too
