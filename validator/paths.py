"""Where poisoncheck finds the spec and where it writes, from a checkout or an install.

The spec ships as package data: `validator/spec` is a symlink to the repository's
top-level `spec/` (the canonical folder), and a wheel holds real copies of its files
(see pyproject.toml).  So `importlib.resources` finds it the same way from a
checkout, an editable install and a wheel.  Outputs go under the current folder's
build/ unless a command is told otherwise, never next to the package.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def spec_dir() -> Path:
    """The folder with Poison.tla, MCPoison.tla and matrix.toml.

    From a checkout this resolves the symlink to the repository's spec/, so messages
    and TLC name the files reviewers read."""
    files = resources.files(__package__) / "spec"
    # Installed by pip, or run from the source tree: always a real folder.  A zipped
    # package would give another Traversable: its path then holds no Poison.tla and the
    # commands say so.
    return Path(str(files)).resolve()


def checkout_root() -> Path | None:
    """The repository when poisoncheck runs from its checkout (or an editable install
    of it), else None."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "spec" / "Poison.tla").is_file():
        return root
    return None


def build_dir() -> Path:
    """The default output folder: build/ in the current folder (absolute, since
    results.json records the paths of the counterexamples)."""
    return Path.cwd() / "build"


def traces_dir() -> Path:
    """The default trace corpus: the checkout's traces/, else traces/ in the current
    folder (the corpus is not part of an installed package)."""
    root = checkout_root()
    return root / "traces" if root is not None else Path.cwd() / "traces"
