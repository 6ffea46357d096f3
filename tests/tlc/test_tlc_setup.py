"""tlc_setup(): the one place `check`, `ablate` and `validate --engine tlc` get Java, the
jar and the spec from, and the one-line exit 2 each command makes of its error."""

import pytest
from click.testing import CliRunner

from validator.cli import cli
from validator.paths import spec_dir
from validator.tlc.setup import SetupError, TlcSetup, tlc_setup

from conftest import ROOT


def test_a_ready_setup_names_the_packaged_spec_by_default(tlc_ready, tmp_path):
    setup = tlc_setup(tmp_path / "out", 12.5)
    assert isinstance(setup, TlcSetup)
    assert (setup.spec_dir, setup.out_dir, setup.timeout) == (spec_dir(), tmp_path / "out", 12.5)
    assert setup.jar.is_file() and setup.java
    assert tlc_setup(tmp_path, 1, ROOT / "spec").spec_dir == ROOT / "spec"


def test_a_spec_folder_without_poison_tla_is_refused(tmp_path):
    with pytest.raises(SetupError, match=f"{tmp_path}: no Poison.tla here"):
        tlc_setup(tmp_path / "out", 10, tmp_path)


def test_a_missing_jar_says_to_run_setup(monkeypatch, tmp_path):
    monkeypatch.setenv("POISONCHECK_JAR", str(tmp_path / "none.jar"))
    with pytest.raises(SetupError, match="TLC jar not found at .*run `poisoncheck setup`"):
        tlc_setup(tmp_path / "out", 10)


def test_missing_java_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setenv("POISONCHECK_JAVA", str(tmp_path / "no-java"))
    with pytest.raises(SetupError, match="Java not found.*openjdk-17-jre-headless"):
        tlc_setup(tmp_path / "out", 10)


@pytest.mark.parametrize("args", [
    ["check", "--only", "NoHold-buddy-nofault"],
    ["ablate", "--design", "NoHold", "--backing", "buddy"],
    ["validate", "--engine", "tlc", str(ROOT / "traces" / "lifecycle-buddy.trace")],
])
def test_every_command_makes_a_missing_jar_one_line_and_exit_2(monkeypatch, tmp_path, args):
    monkeypatch.setenv("POISONCHECK_JAR", str(tmp_path / "none.jar"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: TLC jar not found at ")
    assert "run `poisoncheck setup`" in result.output
    assert len(result.output.strip().splitlines()) == 1
