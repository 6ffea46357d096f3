"""`make lab-check`: the verdicts of a fresh lab run (exercise/lab.py's verdicts.json) against
those committed for the same exercises (traces/real/manifest.toml, files lab72-NAME.trace.gz).

A kernel run twice never prints the same pfns, so the captures differ line by line; what
must not differ is each design's verdict.  Exit 0 all the same, 1 some differ, 2 bad input.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "lab72-"


def committed(manifest: Path) -> dict[str, dict[str, str]]:
    """exercise name -> {design: expected verdict} of the committed lab captures."""
    data = tomllib.loads(manifest.read_text())
    out = {}
    for entry in data.get("trace", []):
        name = entry["file"]
        if name.startswith(PREFIX):
            out[name[len(PREFIX):].removesuffix(".trace.gz")] = entry["expect"]
    return out


def compare(verdicts: list[dict], expected: dict[str, dict[str, str]]) -> list[str]:
    """One line per (exercise, design); those that differ end in DIFFERS."""
    lines = []
    for item in verdicts:
        name = Path(item["trace"]).name.removesuffix(".trace")
        want = expected.get(name, {}).get(item["design"])
        got = item["verdict"] + (f"@{item['line']}" if item.get("line") else "")
        mark = "ok" if want == item["verdict"] else ("not committed" if want is None
                                                     else "DIFFERS")
        lines.append(f"{name:16} {item['design']:16} {want or '-':10} {got:16} {mark}")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: lab_check.py CAPTURES_DIR", file=sys.stderr)
        return 2
    verdicts_path = Path(argv[0]) / "verdicts.json"
    try:
        verdicts = json.loads(verdicts_path.read_text())
        expected = committed(ROOT / "traces" / "real" / "manifest.toml")
    except (OSError, ValueError) as err:
        print(f"lab-check: {verdicts_path}: {err}", file=sys.stderr)
        return 2
    lines = compare(verdicts, expected)
    print(f"{'exercise':16} {'design':16} {'committed':10} {'this run':16}")
    print("\n".join(lines))
    differ = sum(line.endswith("DIFFERS") for line in lines)
    missing = sorted(set(expected) - {Path(v["trace"]).name.removesuffix(".trace")
                                      for v in verdicts})
    if missing:
        print(f"not run here: {', '.join(missing)}")
    print(f"{len(lines)} verdicts, {differ} differ from the committed ones")
    return 1 if differ or missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
