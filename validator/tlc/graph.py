"""Read the state graph TLC writes with `-dump dot,actionlabels FILE`."""

from __future__ import annotations

import json
import re
from pathlib import Path

from validator.tlc.values import parse_state

_NODE = re.compile(r'^(-?\d+) \[label="((?:[^"\\]|\\.)*)"')
_EDGE = re.compile(r'^(-?\d+) -> (-?\d+) \[label="((?:[^"\\]|\\.)*)"')


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


def canonical(state: dict) -> str:
    """A state as comparable text (keys sorted)."""
    return json.dumps(state, sort_keys=True)


def read_dot(path: Path) -> tuple[set[str], set[tuple[str, str, str]]]:
    """States (canonical text) and labelled edges of a TLC dot dump."""
    nodes: dict[str, str] = {}
    raw_edges = []
    for line in path.read_text().splitlines():
        edge = _EDGE.match(line)
        if edge:
            raw_edges.append(edge.groups())
            continue
        node = _NODE.match(line)
        if node:
            nodes[node.group(1)] = canonical(parse_state(_unescape(node.group(2)).splitlines()))
    edges = {(nodes[a], _unescape(label), nodes[b]) for a, b, label in raw_edges}
    return set(nodes.values()), edges
