import shutil
from pathlib import Path

import pytest

from validator.tlc.setup import SetupError, default_jar, find_java, verify_jar

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def tlc_ready():
    """Java and the pinned jar; `make test` sets both up, so missing ones fail."""
    try:
        find_java()
        verify_jar(default_jar())
    except SetupError as err:
        pytest.fail(f"TLC is not set up ({err}); run the tests with `make test`")


@pytest.fixture
def spec_copy(tmp_path):
    """A writable copy of spec/ for tests that break the spec on purpose."""
    target = tmp_path / "spec"
    shutil.copytree(ROOT / "spec", target, ignore=shutil.ignore_patterns("states"))
    return target
