"""Files `poisoncheck check` wrote, read back: results.json and the counterexamples.

They may come from another machine or a CI shard, so nothing in them is trusted: each is
read with a size bound, checked against its schema and refused in one line naming the
file and the field.  Names that become file names (a run, a property) must be names.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from validator.check.matrix import KINDS, _RUN_NAME as RUN_NAME
from validator.model import ALL_CHECKS, ALL_FEATURES, BACKINGS, DESIGNS
from validator.check.results import NO_VERDICT
from validator.ftrace import printable
from validator.model.properties import BY_KEY, VERDICTS

# Far above any real results.json or counterexample (a few MB), far below what hurts.
MAX_BYTES = 64 << 20
KNOWN_VERDICTS = (*VERDICTS, *NO_VERDICT, "error")
VIOLATIONS = ("invariant", "action", "temporal", "deadlock")
# TLC's action names (and Init): identifiers, never paths or markup.
_ACTION = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)


class ReadBackError(Exception):
    """A results or counterexample file that is not what poisoncheck check writes."""


def load_json(path: Path, what: str, limit: int | None = None):
    """The JSON in path, read up to `limit` bytes (MAX_BYTES): no endless read of a device
    or a pipe, no NaN or Infinity, no nesting that exhausts the stack."""
    limit = limit or MAX_BYTES
    try:
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except OSError as err:
        raise ReadBackError(f"{path}: cannot read: {err.strerror or err}") from None
    if len(raw) > limit:
        raise ReadBackError(f"{path}: larger than {limit >> 20} MiB: not a {what}")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constant,
                          parse_float=_finite_float)
    except RecursionError:
        raise ReadBackError(f"{path}: nested too deeply: not a {what}") from None
    except (ValueError, UnicodeDecodeError) as err:    # JSONDecodeError is a ValueError
        reason = " ".join(str(err).split())[:120]
        raise ReadBackError(f"{path}: not a {what} ({reason})") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range")
    return value


# ---- field checks: each names the file and the field ------------------------

def field(data: dict, key: str, path: Path, where: str = ""):
    if not isinstance(data, dict) or key not in data:
        raise ReadBackError(f"{path}: {where}{key}: missing")
    return data[key]


def bad(path: Path, where: str, what: str) -> ReadBackError:
    return ReadBackError(f"{path}: {where}: {what}")


def is_int(value, low: int = 0, high: int = 1 << 62) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def is_number(value) -> bool:
    """A finite non-negative number (a time, a count, a size)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0)


def run_name(value, path: Path, where: str = "run") -> str:
    if not isinstance(value, str) or not RUN_NAME.fullmatch(value):
        raise bad(path, where, "not a run name (letters, digits, '-', '_', '.', '+')")
    return value


def property_key(value, path: Path, where: str = "property") -> str:
    if not isinstance(value, str) or value not in BY_KEY:
        raise bad(path, where, "not a property poisoncheck checks")
    return value


def constants(value, path: Path, where: str = "constants") -> dict:
    """A run's constants as Run.constants() writes them."""
    if not isinstance(value, dict):
        raise bad(path, where, "not an object")
    if value.get("Design") not in DESIGNS:
        raise bad(path, f"{where}.Design", f"not one of {', '.join(DESIGNS)}")
    if value.get("Backing") not in BACKINGS:
        raise bad(path, f"{where}.Backing", f"not one of {', '.join(BACKINGS)}")
    for key in ("Folios", "PagesPerFolio", "MaxRemoveFailures", "MaxMemErrors"):
        if not is_int(value.get(key), 0, 64):
            raise bad(path, f"{where}.{key}", "not an integer in 0..64")
    if "FoliosForLiveness" in value and not is_int(value["FoliosForLiveness"], 0, 64):
        raise bad(path, f"{where}.FoliosForLiveness", "not an integer in 0..64")
    for key, known in (("Disabled", ALL_CHECKS), ("Added", ALL_CHECKS),
                       ("Features", ALL_FEATURES)):
        names = value.get(key, [] if key == "Features" else None)
        if not isinstance(names, list) or not all(isinstance(n, str) and n in known
                                                  for n in names):
            raise bad(path, f"{where}.{key}", "not a list of names poisoncheck knows")
    return value


def counterexample(path: Path) -> dict:
    """A counterexample JSON of check (runner.save_counterexample), checked."""
    what = "counterexample of poisoncheck check"
    data = load_json(path, what)
    if not isinstance(data, dict):
        raise ReadBackError(f"{path}: not a {what} (no object)")
    run_name(field(data, "run", path), path)
    property_key(field(data, "property", path), path)
    if field(data, "violation", path) not in VIOLATIONS:
        raise bad(path, "violation", f"not one of {', '.join(VIOLATIONS)}")
    constants(field(data, "constants", path), path)
    if data.get("loop_to") is not None and not is_int(data["loop_to"]):
        raise bad(path, "loop_to", "not a step number")
    trace = field(data, "trace", path)
    if not isinstance(trace, list) or not trace:
        raise bad(path, "trace", "not a non-empty list of steps")
    for i, step in enumerate(trace, 1):
        where = f"trace[{i}]"
        if not isinstance(step, dict):
            raise bad(path, where, "not an object")
        if not is_int(step.get("n")):
            raise bad(path, f"{where}.n", "not a step number")
        if not isinstance(step.get("action"), str) or not _ACTION.fullmatch(step["action"]):
            raise bad(path, f"{where}.action", "not an action name")
        if step.get("line") is not None and not is_int(step["line"]):
            raise bad(path, f"{where}.line", "not a line number")
        if not isinstance(step.get("state"), dict):
            raise bad(path, f"{where}.state", "not an object")
    return data


def text(value, path: Path, where: str) -> str:
    """A free-text string, made safe to print (control characters escaped)."""
    if not isinstance(value, str):
        raise bad(path, where, "not a string")
    return printable(value, len(value) + 1)


def verdict(value, path: Path, where: str) -> dict:
    if not isinstance(value, dict) or value.get("verdict") not in KNOWN_VERDICTS:
        raise bad(path, where, "not a verdict poisoncheck knows")
    if value.get("steps") is not None and not is_int(value["steps"]):
        raise bad(path, f"{where}.steps", "not a number of steps")
    for key in ("counterexample", "error"):
        if value.get(key) is not None:
            value[key] = text(value[key], path, f"{where}.{key}")
    return value


def results(path: Path, complete: bool = True) -> dict:
    """A results.json of check, checked; `complete`: every run with a verdict for every
    property (what the report's tables need)."""
    what = "results.json of poisoncheck check"
    data = load_json(path, what)
    runs = data.get("runs") if isinstance(data, dict) else None
    if not isinstance(runs, list):
        raise ReadBackError(f"{path}: not a {what} (no list of runs)")
    for i, run in enumerate(runs, 1):
        where = f"runs[{i}]"
        if not isinstance(run, dict):
            raise bad(path, where, "not an object")
        run_name(field(run, "name", path, f"{where}."), path, f"{where}.name")
        if run.get("kind") not in KINDS:
            raise bad(path, f"{where}.kind", f"not one of {', '.join(KINDS)}")
        constants(field(run, "constants", path, f"{where}."), path, f"{where}.constants")
        verdicts = field(run, "verdicts", path, f"{where}.")
        if not isinstance(verdicts, dict) or not set(verdicts) <= set(BY_KEY):
            raise bad(path, f"{where}.verdicts", "not verdicts of properties poisoncheck knows")
        missing = [key for key in BY_KEY if key not in verdicts]
        if complete and missing:
            raise bad(path, f"{where}.verdicts", f"no verdict for {', '.join(missing)} (an "
                      f"older check? run it again)")
        for key, value in verdicts.items():
            verdict(value, path, f"{where}.verdicts.{key}")
        if not is_int(run.get("distinct_states")):
            raise bad(path, f"{where}.distinct_states", "not a count of states")
        if not is_number(run.get("seconds")):
            raise bad(path, f"{where}.seconds", "not a finite number of seconds >= 0")
        run["note"] = text(run.get("note", ""), path, f"{where}.note")
    mismatches = data.get("mismatches", [])
    if not isinstance(mismatches, list):
        raise bad(path, "mismatches", "not a list")
    data["mismatches"] = [text(m, path, "mismatches") for m in mismatches]
    return data


def inside(folder: Path, name: str) -> Path:
    """folder/name, proven to stay in folder (no '/', '..' or link out of it)."""
    target = (folder / name).resolve()
    if target.parent != folder.resolve():
        raise ReadBackError(f"{name!r}: not a file name inside {folder}")
    return target


__all__ = ["ReadBackError", "load_json", "counterexample", "results", "inside", "text",
           "MAX_BYTES"]
