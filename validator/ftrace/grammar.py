"""The reference parser: ftrace.lark driven by lark's LALR parser, one line at a time.

It is exact but slow (tens of microseconds a line); the reader uses fastpath.py by default,
whose regexes are assembled from this grammar's own terminals and must agree with it on
every corpus line (tests/ftrace/test_ftrace_agreement.py)."""

from functools import lru_cache

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import LarkError

from .parsed import BAD, BLANK, Parsed, ProbeArgs

GRAMMAR_FILE = "ftrace.lark"
START = ("line", "probe_args", "kv_args")


@lru_cache(maxsize=1)
def lark_parser() -> Lark:
    return Lark.open(GRAMMAR_FILE, rel_to=__file__, parser="lalr", start=list(START))


def terminal_patterns() -> dict[str, str]:
    """name -> regex of every terminal of the grammar (fastpath.py builds on these)."""
    return {t.name: t.pattern.to_regexp() for t in lark_parser().terminals}


def lexer_rank(name: str) -> tuple:
    """Where lark's lexer tries terminal `name` among those a parser state accepts: by
    priority, then widest possible match, then pattern length, then name (lark.lexer)."""
    term = next(t for t in lark_parser().terminals if t.name == name)
    return (-term.priority, -term.pattern.max_width, -len(term.pattern.value), term.name)


def _strip_delims(tok: str) -> str:
    # " [001]" -> "001", " (   5402)" -> "5402"
    return tok.strip()[1:-1].strip()


@v_args(inline=True)
class _ToParsed(Transformer):
    """Tree -> Parsed. Contexts and bodies become dicts that the record rules merge."""

    # ---- line and wrappers
    def line(self, *children):
        wrap = {}
        content = BLANK  # an empty line
        for child in children:
            if isinstance(child, dict):
                wrap.update(child)
            else:
                content = child
        return content._replace(**wrap) if wrap else content

    def dmesg(self, tok):
        return {"dmesg": tok.strip()}

    def source(self, tok):
        return {"source": tok.strip()[:-1]}

    # ---- contexts
    def kernel_ctx(self, *toks):
        ctx = {}
        for tok in toks:
            kind = tok.type
            if kind == "TASK":
                ctx["task"] = tok.lstrip(" \t")
            elif kind == "PID":
                ctx["pid"] = tok[1:]
            elif kind == "TGID":
                ctx["tgid"] = _strip_delims(tok)
            elif kind == "CPU":
                ctx["cpu"] = _strip_delims(tok)
            elif kind == "FLAGS":
                ctx["flags"] = tok.strip()
            elif kind == "TIMESTAMP":
                ctx["ts"] = tok.strip()
        return ctx

    def latency_ctx(self, task, pid, cpu, flags, ts):
        return {"task": task.lstrip(" \t"), "pid": pid[1:], "cpu": cpu.strip(),
                "flags": str(flags), "ts": ts.strip()}

    def verbose_ctx(self, task, pid, cpu, _flags, _preempt, _index, ts, _rel):
        return {"task": task.lstrip(" \t"), "pid": pid.strip(), "cpu": cpu.strip(),
                "ts": _strip_delims(ts)}

    def perf_ctx(self, task, pid, cpu, ts):
        return {"task": task.lstrip(" \t"), "pid": pid.strip(), "cpu": _strip_delims(cpu),
                "ts": ts.strip()}

    def raw_dec(self, pid, cpu, ts):
        return {"form": "raw_dec", "pid": str(pid), "cpu": cpu.strip(), "ts": ts.strip()}

    def raw_hex(self, pid, cpu, ts):
        return {"form": "raw_hex", "pid": str(pid), "cpu": cpu.strip(), "ts": ts.strip()}

    # ---- records
    def kernel_record(self, ctx, *rest):
        return Parsed("record", form="kernel", **ctx, **rest[-1])  # rest: [TS_DIFF] body

    def latency_record(self, ctx, body):
        return Parsed("record", form="latency", **ctx, **body)

    def verbose_record(self, ctx, body):
        return Parsed("record", form="verbose", **ctx, **body)

    def perf_record(self, ctx, body):
        return Parsed("record", form="perf", **ctx, **body)

    def raw_type_record(self, ctx, tok):
        return Parsed("record", body="raw_type", payload=tok.split(":")[1].strip(), **ctx)

    def raw_print_record(self, ctx, tok, payload=None):
        return Parsed("record", body="raw_print", sym=tok.split()[1],
                      payload=str(payload) if payload is not None else "", **ctx)

    # ---- bodies
    def named(self, name, *rest):
        sym = None
        payload = ""
        for item in rest:
            if isinstance(item, Token):
                payload = str(item)
            else:
                sym = item
        return {"body": "named", "name": str(name), "sym": sym, "payload": payload}

    def sys_exit(self, name, ret):
        return {"body": "sys_exit", "name": str(name), "payload": ret.split("->")[1].strip()}

    def sys_enter(self, name, args):
        return {"body": "sys_enter", "name": str(name), "payload": args[1:-1]}

    def function(self, name, *rest):
        sym = None
        parent = None
        for item in rest:
            if isinstance(item, Token):
                parent = item.strip()[2:]
            else:
                sym = item
        return {"body": "function", "name": str(name), "sym": sym, "payload": parent}

    def stack_head(self, tok):
        return {"body": "stack_head", "name": str(tok)}

    def unknown_type(self, tok):
        return {"body": "unknown_type", "payload": tok.split()[-1]}

    def sym_decor(self, *toks):
        return "".join(toks)

    def perf_body(self, event, payload=None):
        system, name = event.split(":", 1)
        return {"body": "named", "system": system, "name": name,
                "payload": str(payload) if payload is not None else ""}

    def bare_body(self, body):
        return Parsed("body", **body)

    # ---- headers and markers
    def tracer(self, word, *_):
        return Parsed("header", form="tracer", payload=str(word))

    def entries(self, in_buffer, written, cpus, *_):
        return Parsed("header", form="entries", numbers=(str(in_buffer), str(written), str(cpus)))

    def legend(self, _tok):
        return Parsed("header", form="legend")

    def comment(self, _tok):
        return Parsed("header", form="comment")

    def cpus(self, n, *_):
        return Parsed("header", form="cpus", numbers=(str(n),))

    def preamble(self, _tok):
        return Parsed("header", form="preamble")

    def summary(self, _tok):
        return Parsed("header", form="summary")

    def tool(self, _tok):
        return Parsed("header", form="tool")

    def lost_events(self, cpu, count=None):
        return Parsed("lost", form="lost_events",
                      numbers=(str(cpu), count.strip() if count is not None else None))

    def cpu_dropped(self, cpu, count=None):  # trace-cmd: "CPU:N [M EVENTS DROPPED]"
        return Parsed("lost", form="events_dropped",
                      numbers=(str(cpu), str(count) if count is not None else None))

    def bare_dropped(self, count=None):
        return Parsed("lost", form="events_dropped",
                      numbers=(None, str(count) if count is not None else None))

    def buffer_started(self, cpu):
        return Parsed("lost", form="buffer_started", numbers=(str(cpu), None))

    def line_too_big(self, _tok):
        return Parsed("lost", form="line_too_big", numbers=(None, None))

    def stack_entry(self, _tok):
        return Parsed("stack_entry")

    def funcgraph(self, _tok):
        return Parsed("funcgraph")

    def blank(self, _tok):
        return BLANK

    # ---- payloads
    def probe_args(self, site, *rest):
        func = None
        kv = (None, ())
        for item in rest:
            if isinstance(item, Token):
                func = item.split("<-", 1)[1].strip()
            else:
                kv = item
        return ProbeArgs(str(site).strip(), func, kv[0], kv[1])

    def kv_args(self, *items):
        lead = None
        pairs = []
        for item in items:
            if isinstance(item, Token):
                lead = item.rstrip(" ")
            else:
                pairs.append(item)
        return (lead, tuple(pairs))

    def kv_pair(self, key, value=None):
        return (key[:-1], str(value) if value is not None else "")


_TO_PARSED = _ToParsed()


def parse_line(text: str) -> Parsed:
    """Parse one line (no newline) with the grammar. Never raises: no match -> BAD."""
    parser = lark_parser()
    try:
        tree = parser.parse(text, start="line")
    except LarkError:
        return BAD
    except RecursionError:  # pragma: no cover - lark on absurd input
        return BAD
    return _TO_PARSED.transform(tree)


def parse_probe_args(text: str) -> ProbeArgs | None:
    try:
        return _TO_PARSED.transform(lark_parser().parse(text, start="probe_args"))
    except LarkError:
        return None


def parse_kv_args(text: str) -> tuple | None:
    """-> (lead, ((key, raw value), ...)) or None."""
    try:
        return _TO_PARSED.transform(lark_parser().parse(text, start="kv_args"))
    except LarkError:
        return None
