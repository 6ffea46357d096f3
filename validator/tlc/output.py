"""Read what TLC prints in `-tool` mode: statistics, verdict, counterexample.

In tool mode every message is framed as
    @!@!@STARTMSG <code>:<severity> @!@!@
    ...text...
    @!@!@ENDMSG <code> @!@!@
The codes used here are those of TLC 2.15 (tlc2.output.EC).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from validator.tlc.values import TlaValueError, parse_state

# Message codes of TLC 2.15.
INVARIANT_VIOLATED = 2110
ACTION_PROPERTY_VIOLATED = 2112
DEADLOCK = 2114
TEMPORAL_VIOLATED = 2116
TRACE_STATE = 2217
BACK_TO_STATE = 2122
STUTTERING = 2218
STATS = 2199
DEPTH = 2194
FINISHED = 2186
SUCCESS = 2193
VIOLATION_CODES = {INVARIANT_VIOLATED, ACTION_PROPERTY_VIOLATED, DEADLOCK, TEMPORAL_VIOLATED}
SEVERITY_ERROR = 1

_START = re.compile(r"^@!@!@STARTMSG (\d+):(\d+) @!@!@$")
_END = re.compile(r"^@!@!@ENDMSG (\d+) @!@!@$")
_STATS = re.compile(r"([\d,]+) states generated, ([\d,]+) distinct states found")
_DEPTH = re.compile(r"depth of the complete state graph search is (\d+)")
_VIOLATED = re.compile(r"^(?:Invariant|Action property) (\w+) is violated")
_STEP_HEAD = re.compile(r"^(\d+): <(.*)>$")
_ACTION = re.compile(r"^(\w+)(?: line (\d+), col \d+ to line \d+, col \d+ of module (\w+))?$")


@dataclass
class Message:
    code: int
    severity: int
    text: str


@dataclass
class TraceStep:
    number: int            # 1 is the initial state
    action: str            # "Init" for the initial state
    line: int | None       # where the action is defined in the spec
    module: str | None
    state: dict


UNFINISHED = "unfinished"     # stopped at poisoncheck's --budget: no verdict either way


@dataclass
class TlcResult:
    status: str = "error"              # "holds" | "violated" | "error" | UNFINISHED
    violation: str | None = None       # "invariant" | "action" | "temporal" | "deadlock"
    named_property: str | None = None  # the invariant or action property TLC named
    trace: list[TraceStep] = field(default_factory=list)
    loop_to: int | None = None         # lasso: the state the last one loops back to
    stuttering: bool = False           # lasso: the behaviour ends stuttering
    generated: int | None = None
    distinct: int | None = None
    depth: int | None = None
    error: str | None = None           # one-line reason when status is "error"
    collision: float | None = None     # TLC's estimate that two states shared a fingerprint
    queue: int | None = None           # states left to explore (a run stopped at its budget)
    peak_kib: int | None = None        # the JVM's peak resident memory

    @property
    def steps(self) -> int:
        """Transitions in the counterexample (the initial state is not a step)."""
        return max(len(self.trace) - 1, 0)


# TLC's success message gives an optimistic estimate and, when that is not negligible
# (1E-10 or more), one from the actual fingerprints: the larger one is reported.
_ESTIMATE = re.compile(r"val = ([0-9.]+(?:E-?[0-9]+)?)")


def collision_estimate(text: str) -> float | None:
    """The larger of TLC's fingerprint collision estimates in its success message."""
    values = [float(v) for v in _ESTIMATE.findall(text)]
    return max(values) if values else None


def split_messages(output: str) -> list[Message]:
    """Cut tool-mode output into messages; text outside frames is dropped."""
    messages, current, lines = [], None, []
    for line in output.splitlines():
        start = _START.match(line)
        if start:
            current, lines = (int(start.group(1)), int(start.group(2))), []
            continue
        if _END.match(line) and current is not None:
            messages.append(Message(current[0], current[1], "\n".join(lines).strip("\n")))
            current = None
            continue
        if current is not None:
            lines.append(line)
    return messages


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def _trace_step(text: str) -> TraceStep:
    head, *rest = text.splitlines()
    match = _STEP_HEAD.match(head.strip())
    if not match:
        raise TlaValueError(f"unexpected trace header {head!r}")
    number, label = int(match.group(1)), match.group(2)
    if label == "Initial predicate":
        action, line, module = "Init", None, None
    else:
        act = _ACTION.match(label)
        action = act.group(1) if act else label
        line = int(act.group(2)) if act and act.group(2) else None
        module = act.group(3) if act else None
    return TraceStep(number, action, line, module, parse_state(rest))


def _first_error_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return "TLC reported an error"


def parse_tlc_output(output: str, returncode: int | None = None) -> TlcResult:
    """Turn TLC's tool-mode output into a result.

    A run that reports neither success nor a violation is an error, with the
    first error message TLC printed (a parse error, a failed ASSUME, ...).
    """
    result = TlcResult()
    finished = success = False
    errors: list[str] = []
    for msg in split_messages(output):
        if msg.code == STATS:
            stats = _STATS.search(msg.text)
            if stats:
                result.generated, result.distinct = map(_number, stats.groups())
        elif msg.code == DEPTH:
            depth = _DEPTH.search(msg.text)
            if depth:
                result.depth = int(depth.group(1))
        elif msg.code in VIOLATION_CODES:
            result.status = "violated"
            result.violation = {INVARIANT_VIOLATED: "invariant", ACTION_PROPERTY_VIOLATED: "action",
                                DEADLOCK: "deadlock", TEMPORAL_VIOLATED: "temporal"}[msg.code]
            named = _VIOLATED.match(msg.text)
            result.named_property = named.group(1) if named else None
        elif msg.code == TRACE_STATE:
            try:
                result.trace.append(_trace_step(msg.text))
            except TlaValueError as err:
                errors.append(f"cannot read TLC's counterexample: {err}")
        elif msg.code == BACK_TO_STATE:
            back = re.match(r"(\d+):", msg.text.strip())
            result.loop_to = int(back.group(1)) if back else None
        elif msg.code == STUTTERING:
            result.stuttering = True
        elif msg.code == SUCCESS:
            success = True
            result.collision = collision_estimate(msg.text)
        elif msg.code == FINISHED:
            finished = True
        elif msg.severity == SEVERITY_ERROR:
            errors.append(_first_error_line(msg.text))
    if errors and result.status != "violated":
        detail = _parser_detail(output)
        result.status = "error"
        result.error = f"{errors[0]} {detail}" if detail else errors[0]
    elif errors:
        result.error = errors[0]
    elif result.status != "violated":
        if success or (finished and returncode == 0):
            result.status = "holds"
        else:
            result.status = "error"
            result.error = _fallback_error(output, returncode)
    return result


_PARSER_DETAIL = re.compile(r"Encountered|Unknown operator|Semantic error|Lexical error|"
                            r"Could not find|not found|Assumption .* is false|line \d+, col")


def _parser_detail(output: str) -> str | None:
    """SANY prints its reason outside the message frames; find its first line."""
    inside = False
    for line in output.splitlines():
        if _START.match(line):
            inside = True
        elif _END.match(line):
            inside = False
        elif not inside and _PARSER_DETAIL.search(line):
            return line.strip()
    return None


def _fallback_error(output: str, returncode: int | None) -> str:
    """The most telling line of an output that has no framed error."""
    for line in output.splitlines():
        text = line.strip()
        if text.startswith(("***", "Error", "Fatal", "Exception")) or "Exception" in text:
            return text
    return f"TLC stopped without a verdict (exit code {returncode})"
