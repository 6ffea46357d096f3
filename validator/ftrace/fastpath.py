"""The fast path: the same line grammar as ftrace.lark, run as precompiled regexes.

Every regex here is assembled from the grammar's own terminal patterns (grammar.py), each
wrapped in an atomic group so that it matches exactly what lark's lexer would take, and the
rules are tried in the lexer's order: the first terminal that matches at the start of the
line decides the rule (lark commits the same way), and the rest of the rule must then match
to the end of the line, or the line is BAD. The common case (a kernel-format record with a
"name: payload" body) is one regex match.

Tests run both parsers over every corpus line and require equal results."""

import re

from .grammar import lexer_rank, terminal_patterns
from .parsed import BAD, BLANK, Parsed, ProbeArgs

_T = terminal_patterns()


def _t(name: str, group: str | None = None) -> str:
    """The terminal `name` as an atomic group: lark's lexer never backtracks into a token."""
    pattern = f"(?>{_T[name]})"
    return f"(?P<{group}>{pattern})" if group else pattern


_END = r"\Z"
_SYM = f"(?P<sym>{_t('SYM_OFF')}{_t('SYM_ADDR')}?|{_t('SYM_ADDR')})?"

# ---- bodies (after "timestamp: ", or a whole line when context-info is off)
_BODY_NAMED = f"{_t('NAME', 'name')}{_SYM}{_t('_COLON_SP')}{_t('PAYLOAD', 'payload')}?"
_BODY_RES = (
    ("unknown_type", re.compile(_t("UNKNOWN_TYPE", "tok") + _END)),
    ("named", re.compile(_BODY_NAMED + _END)),
    ("sys_exit", re.compile(_t("NAME", "name") + _t("SYS_RET", "tok") + _END)),
    ("sys_enter", re.compile(_t("NAME", "name") + _t("SYS_ARGS", "tok") + _END)),
    ("function", re.compile(_t("NAME", "name") + _SYM + _t("PARENT", "tok") + "?" + _END)),
    ("stack_head", re.compile(_t("STACK_HEAD", "tok") + _END)),
)
_BODY_START = tuple(  # the terminals that can start a body, in lexer order
    re.compile(_t(name)) for name in sorted(("UNKNOWN_TYPE", "NAME", "STACK_HEAD"), key=lexer_rank)
)

# ---- contexts: the columns before "timestamp: "
_KERNEL_COLUMNS = (
    _t("PID", "pid") + _t("TGID", "tgid") + "?" + _t("CPU", "cpu") + _t("FLAGS", "flags") + "?"
    + _t("TIMESTAMP", "ts") + _t("_COLON_SP") + _t("TS_DIFF") + "?"
)
_KERNEL_CTX = _t("TASK", "task") + _KERNEL_COLUMNS
_LATENCY_CTX = (
    _t("LAT_TASK", "task") + _t("PID", "pid") + _t("SP_INT", "cpu") + _t("LAT_FLAGS", "flags")
    + _t("LAT_TS", "ts") + _t("_COLON_SP")
)
_VERBOSE_CTX = (
    _t("VERB_TASK", "task") + _t("SP_INT", "pid") + _t("SP_INT", "cpu") + _t("SP_INT")
    + _t("SP_HEX8") + _t("SP_HEX8") + _t("VERB_TS", "ts") + _t("VERB_REL") + _t("_COLON_SP")
)
_PERF_RE = re.compile(
    _t("PERF_TASK", "task") + _t("PERF_PID", "pid") + _t("CPU", "cpu") + _t("TIMESTAMP", "ts")
    + _t("_COLON_SP") + _t("PERF_EVENT", "event") + _t("_COLON_SP")
    + _t("PAYLOAD", "payload") + "?" + _END
)
_RAW_TAIL = f"(?:{_t('RAW_TYPE', 'type')}|{_t('RAW_PRINT', 'print')}{_t('PAYLOAD', 'payload')}?){_END}"
_RAW_DEC_RE = re.compile(_t("RAW_PID", "pid") + _t("SP_INT", "cpu") + _t("SP_INT", "ts") + _RAW_TAIL)
_RAW_HEX_RE = re.compile(_t("HEX_PID", "pid") + _t("SP_HEX8", "cpu") + _t("SP_HEX16", "ts") + _RAW_TAIL)

# The hot path: a whole kernel-format record with a named body, in one match. It drops the
# TASK terminal's lookahead (which costs a second pass over the columns) and lets the lazy
# comm grow until the whole line matches instead. That is the grammar's split unless an
# earlier (whitespace, comm length) choice already had valid columns after it. When the
# task group ends in a non-blank character, the match kept all leading whitespace, so such
# columns would lie inside the task group: the match is exact when hot_ok(task) holds.
_TASK_NO_LOOKAHEAD = _T["TASK"].split("(?=", 1)[0]
HOT_RE = re.compile(f"(?P<task>{_TASK_NO_LOOKAHEAD})" + _KERNEL_COLUMNS + _BODY_NAMED + _END)
EARLY_CTX = re.compile(r"-\d+ +[(\[]")


def hot_ok(task: str) -> bool:
    return task[-1] not in " \t" and EARLY_CTX.search(task) is None
_KERNEL_CTX_RE = re.compile(_KERNEL_CTX)
_LATENCY_CTX_RE = re.compile(_LATENCY_CTX)
_VERBOSE_CTX_RE = re.compile(_VERBOSE_CTX)

# ---- other whole lines
_TRACER_RE = re.compile(_t("_TRACER_HEAD") + _t("WORD", "word") + _t("_SP") + "?" + _END)
_ENTRIES_RE = re.compile(
    _t("_ENTRIES_HEAD") + _t("INT", "a") + "/" + _t("INT", "b") + _t("_CPUS_HEAD") + _t("INT", "c")
    + _t("_SP") + "?" + _END
)
_CPUS_RE = re.compile(_t("_TCMD_CPUS") + _t("INT", "n") + _t("_SP") + "?" + _END)
_LOST_RE = re.compile(
    _t("_LOST_CPU") + _t("INT", "cpu") + _t("_LOST_OPEN") + _t("SP_INT", "count") + "?"
    + _t("_LOST_CLOSE") + _END
)
_DROP_CPU_RE = re.compile(
    _t("_DROP_CPU") + _t("INT", "cpu") + _t("_DROP_OPEN") + _t("INT", "count") + "?"
    + _t("_DROP_CLOSE") + _END
)
_DROP_BARE_RE = re.compile(_t("_DROP_BARE") + _t("INT", "count") + "?" + _t("_DROP_CLOSE") + _END)
_ANNOTATE_RE = re.compile(_t("_ANNOTATE_HEAD") + _t("INT", "cpu") + re.escape(" buffer started ####") + _END)


def _whole(name: str) -> re.Pattern:
    return re.compile(_t(name) + _END)


_WRAPPERS = (
    ("source", re.compile(_t("TCMD_INPUT"))),
    ("dmesg", re.compile(_t("DMESG_TS"))),
)


def _strip_delims(tok: str) -> str:
    return tok.strip()[1:-1].strip()


def _body(text: str, pos: int) -> dict | None:
    """Parse an event body starting at pos, the lexer's way; None if lark would fail."""
    for start in _BODY_START:
        if start.match(text, pos):
            break
    else:
        return None
    for form, rx in _BODY_RES:
        m = rx.match(text, pos)
        if m is None:
            continue
        if form == "named":
            return {"body": "named", "name": m["name"], "sym": m["sym"], "payload": m["payload"] or ""}
        if form == "function":
            parent = m["tok"]
            return {"body": "function", "name": m["name"], "sym": m["sym"],
                    "payload": parent.strip()[2:] if parent is not None else None}
        if form == "sys_exit":
            return {"body": "sys_exit", "name": m["name"], "payload": m["tok"].split("->")[1].strip()}
        if form == "sys_enter":
            return {"body": "sys_enter", "name": m["name"], "payload": m["tok"][1:-1]}
        if form == "unknown_type":
            return {"body": "unknown_type", "payload": m["tok"].split()[-1]}
        return {"body": "stack_head", "name": m["tok"]}
    return None


def _kernel(text: str, pos: int) -> Parsed:
    m = _KERNEL_CTX_RE.match(text, pos)
    body = _body(text, m.end()) if m else None
    if body is None:
        return BAD
    tgid = m["tgid"]
    flags = m["flags"]
    return Parsed("record", form="kernel", task=m["task"].lstrip(" \t"), pid=m["pid"][1:],
                  tgid=_strip_delims(tgid) if tgid is not None else None,
                  cpu=_strip_delims(m["cpu"]), flags=flags.strip() if flags is not None else None,
                  ts=m["ts"].strip(), **body)


def _latency(text: str, pos: int) -> Parsed:
    m = _LATENCY_CTX_RE.match(text, pos)
    body = _body(text, m.end()) if m else None
    if body is None:
        return BAD
    return Parsed("record", form="latency", task=m["task"].lstrip(" \t"), pid=m["pid"][1:],
                  cpu=m["cpu"].strip(), flags=m["flags"], ts=m["ts"].strip(), **body)


def _verbose(text: str, pos: int) -> Parsed:
    m = _VERBOSE_CTX_RE.match(text, pos)
    body = _body(text, m.end()) if m else None
    if body is None:
        return BAD
    return Parsed("record", form="verbose", task=m["task"].lstrip(" \t"), pid=m["pid"].strip(),
                  cpu=m["cpu"].strip(), ts=_strip_delims(m["ts"]), **body)


def _perf(text: str, pos: int) -> Parsed:
    m = _PERF_RE.match(text, pos)
    if m is None:
        return BAD
    system, name = m["event"].split(":", 1)
    return Parsed("record", form="perf", task=m["task"].lstrip(" \t"), pid=m["pid"].strip(),
                  cpu=_strip_delims(m["cpu"]), ts=m["ts"].strip(), body="named", system=system,
                  name=name, payload=m["payload"] or "")


def _raw(rx: re.Pattern, form: str):
    def parse(text: str, pos: int) -> Parsed:
        m = rx.match(text, pos)
        if m is None:
            return BAD
        ctx = {"form": form, "pid": m["pid"], "cpu": m["cpu"].strip(), "ts": m["ts"].strip()}
        if m["type"] is not None:
            return Parsed("record", body="raw_type", payload=m["type"].split(":")[1].strip(), **ctx)
        return Parsed("record", body="raw_print", sym=m["print"].split()[1],
                      payload=m["payload"] or "", **ctx)

    return parse


def _full(rx: re.Pattern, build):
    def parse(text: str, pos: int) -> Parsed:
        m = rx.match(text, pos)
        return build(m) if m is not None else BAD

    return parse


def _const(name: str, value: Parsed):
    return _full(_whole(name), lambda m: value)


def _bare_body(text: str, pos: int) -> Parsed:
    body = _body(text, pos)
    return Parsed("body", **body) if body is not None else BAD


def _count(m: re.Match) -> str | None:
    count = m["count"]
    return count.strip() if count is not None else None


# Line-start terminals, each with the rule it commits to; tried in lark's lexer order.
_CONTENT = (
    ("TASK", _kernel),
    ("VERB_TASK", _verbose),
    ("LAT_TASK", _latency),
    ("PERF_TASK", _perf),
    ("HEX_PID", _raw(_RAW_HEX_RE, "raw_hex")),
    ("RAW_PID", _raw(_RAW_DEC_RE, "raw_dec")),
    ("PREAMBLE", _const("PREAMBLE", Parsed("header", form="preamble"))),
    ("SUMMARY", _const("SUMMARY", Parsed("header", form="summary"))),
    ("TOOL_MSG", _const("TOOL_MSG", Parsed("header", form="tool"))),
    ("_ENTRIES_HEAD", _full(_ENTRIES_RE, lambda m: Parsed(
        "header", form="entries", numbers=(m["a"], m["b"], m["c"])))),
    ("LINE_TOO_BIG", _const("LINE_TOO_BIG", Parsed("lost", form="line_too_big", numbers=(None, None)))),
    ("_ANNOTATE_HEAD", _full(_ANNOTATE_RE, lambda m: Parsed(
        "lost", form="buffer_started", numbers=(m["cpu"], None)))),
    ("_TRACER_HEAD", _full(_TRACER_RE, lambda m: Parsed("header", form="tracer", payload=m["word"]))),
    ("_TCMD_CPUS", _full(_CPUS_RE, lambda m: Parsed("header", form="cpus", numbers=(m["n"],)))),
    ("_DROP_CPU", _full(_DROP_CPU_RE, lambda m: Parsed(
        "lost", form="events_dropped", numbers=(m["cpu"], m["count"])))),
    ("_LOST_CPU", _full(_LOST_RE, lambda m: Parsed(
        "lost", form="lost_events", numbers=(m["cpu"], _count(m))))),
    ("_DROP_BARE", _full(_DROP_BARE_RE, lambda m: Parsed(
        "lost", form="events_dropped", numbers=(None, m["count"])))),
    ("HASH_LEGEND", _const("HASH_LEGEND", Parsed("header", form="legend"))),
    ("COMMENT", _const("COMMENT", Parsed("header", form="comment"))),
    ("FUNCGRAPH", _const("FUNCGRAPH", Parsed("funcgraph"))),
    ("STACK_ENTRY", _const("STACK_ENTRY", Parsed("stack_entry"))),
    ("BLANK", _const("BLANK", BLANK)),
    ("UNKNOWN_TYPE", _bare_body),
    ("NAME", _bare_body),
    ("STACK_HEAD", _bare_body),
)
_CONTENT_RES = tuple(
    (re.compile(_t(name)), parse)
    for name, parse in sorted(_CONTENT, key=lambda item: lexer_rank(item[0]))
)


def parse_line(text: str) -> Parsed:
    """Parse one line (no newline). Same result as grammar.parse_line, much faster."""
    m = HOT_RE.match(text)
    # valid unless a wrapper (higher priority than TASK) hid in the comm column
    if m is not None and text[0] != "[" and ".dat: " not in m["task"] and hot_ok(m["task"]):
        tgid = m["tgid"]
        flags = m["flags"]
        return Parsed(
            "record", "kernel", "named", m["task"].lstrip(" \t"), m["pid"][1:],
            tgid.strip()[1:-1].strip() if tgid is not None else None,
            m["cpu"].strip()[1:-1].strip(), flags.strip() if flags is not None else None,
            m["ts"].strip(), None, m["name"], m["sym"], m["payload"] or "",
        )
    return parse_general(text)


def parse_general(text: str) -> Parsed:
    """parse_line without the hot path (for callers that tried HOT_RE themselves)."""
    wrap = {}
    pos = 0
    for key, rx in _WRAPPERS:
        m = rx.match(text)
        if m is not None:
            tok = m.group()
            wrap = {key: tok.strip()[:-1] if key == "source" else tok.strip()}
            pos = m.end()
            break
    if pos == len(text):
        return BLANK._replace(**wrap) if wrap else BLANK
    for start, parse in _CONTENT_RES:
        if start.match(text, pos):
            parsed = parse(text, pos)
            if parsed is BAD or not wrap:
                return parsed
            return parsed._replace(**wrap)
    return BAD


# ---------------------------------------------------------------------------- payloads
_KV_LEAD_RE = re.compile(_t("KV_LEAD"))
_KV_PAIR_RE = re.compile(_t("KV_KEY", "key") + _t("KV_VALUE", "value") + "?")
_SP_RE = re.compile(_t("_SP"))
PROBE_RE = re.compile(
    r"\(" + _t("PROBE_SITE", "site") + _t("PROBE_FUNC", "func") + r"?\)"
    + f"(?:{_t('_SP')}(?P<args>.*))?" + _END
)


# Accepts exactly what parse_kv_args accepts (atomic tokens in the same order), as one match.
_KV_PAIR = f"{_t('KV_KEY')}{_t('KV_VALUE')}?"
KV_ARGS_RE = re.compile(f"{_t('KV_LEAD')}?(?:{_KV_PAIR}(?:{_t('_SP')}{_KV_PAIR})*)?{_END}")


def parse_kv_args(text: str) -> tuple | None:
    """"a=1 b=x y" -> (lead, (("a", "1"), ("b", "x y"))); None where the grammar fails."""
    pos = 0
    end = len(text)
    lead = None
    m = _KV_LEAD_RE.match(text)
    if m is not None:
        lead = m.group().rstrip(" ")
        pos = m.end()
    pairs = []
    while pos < end:
        m = _KV_PAIR_RE.match(text, pos)
        if m is None:
            return None
        pairs.append((m["key"][:-1], m["value"] or ""))
        pos = m.end()
        if pos < end:
            sp = _SP_RE.match(text, pos)
            if sp is None or sp.end() == end:
                return None
            pos = sp.end()
    return lead, tuple(pairs)


def parse_probe_args(text: str) -> ProbeArgs | None:
    m = PROBE_RE.match(text)
    if m is None:
        return None
    func = m["func"]
    args = m["args"]
    kv = (None, ())
    if args is not None:
        kv = parse_kv_args(args)
        if kv is None:
            return None
    return ProbeArgs(m["site"].strip(), func.split("<-", 1)[1].strip() if func is not None else None,
                     kv[0], kv[1])
