"""Parse the values TLC prints in counterexamples into plain Python data.

TLC prints records `[a |-> 1]`, functions `(k :> v @@ k2 :> v2)`, tuples
`<<a, b>>`, sets `{a, b}`, strings, integers, booleans and model values.
Records become dicts; functions become dicts keyed by the TLA+ text of the
key (`"<<f1, 1>>"`); tuples and sets become lists; model values stay names.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<number>-?\d+)
    | (?P<punct><<|>>|\|->|:>|@@|[\[\](){},])
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""", re.VERBOSE)


class TlaValueError(ValueError):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise TlaValueError(f"cannot read TLA+ value at {text[pos:pos + 20]!r}")
        kind = match.lastgroup
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, text: str):
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i][1] if self.i < len(self.toks) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.toks):
            raise TlaValueError("TLA+ value ends too early")
        tok = self.toks[self.i]
        if expected is not None and tok[1] != expected:
            raise TlaValueError(f"expected {expected!r}, found {tok[1]!r}")
        self.i += 1
        return tok

    def items(self, close: str, item):
        out = []
        if self.peek() == close:
            self.take(close)
            return out
        while True:
            out.append(item())
            if self.peek() == ",":
                self.take(",")
                continue
            self.take(close)
            return out

    def value(self):
        kind, text = self.take()
        if kind == "string":
            return text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        if kind == "number":
            return int(text)
        if kind == "name":
            return {"TRUE": True, "FALSE": False}.get(text, text)
        if text == "<<":
            return self.items(">>", self.value)
        if text == "{":
            return self.items("}", self.value)
        if text == "[":
            return dict(self.items("]", self.field))
        if text == "(":
            return self.function()
        raise TlaValueError(f"unexpected {text!r} in TLA+ value")

    def field(self):
        _, name = self.take()
        self.take("|->")
        return name, self.value()

    def function(self):
        out = {}
        while True:
            key = render(self.value())
            self.take(":>")
            out[key] = self.value()
            if self.peek() == "@@":
                self.take("@@")
                continue
            self.take(")")
            return out


def parse_value(text: str):
    parser = _Parser(text)
    value = parser.value()
    if parser.i != len(parser.toks):
        raise TlaValueError(f"trailing text after TLA+ value: {text!r}")
    return value


def render(value) -> str:
    """TLA+ text for a parsed key (tuples of model values and numbers)."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, list):
        return "<<" + ", ".join(render(v) for v in value) + ">>"
    return str(value)


_ASSIGN = re.compile(r"^/\\ (\w+) = (.*)$")


def parse_state(lines: list[str]) -> dict:
    """Parse TLC's `/\\ var = value` lines (values may span lines)."""
    state, name, buf = {}, None, []
    for line in lines:
        match = _ASSIGN.match(line)
        if match:
            if name is not None:
                state[name] = parse_value(" ".join(buf))
            name, buf = match.group(1), [match.group(2)]
        elif name is not None and line.strip():
            buf.append(line.strip())
    if name is not None:
        state[name] = parse_value(" ".join(buf))
    return state
