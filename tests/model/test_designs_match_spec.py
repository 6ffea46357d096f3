"""validator/model/designs.py says what spec/Poison.tla says: the designs, the backings,
the check sets in the spec's order, where each check is used, the checks the
conversion's fairness rests on, and the features.

Nothing at run time reads Poison.tla; this test is what keeps the two from drifting.
It reads the spec with regexes: top-level definitions, the quoted `area.check`
names, and which definitions call which (to find each check's actions).
"""

import re
from pathlib import Path

import pytest

from validator import model
from validator.model import CHECKS, designs, state

from conftest import ROOT

SPEC = ROOT / "spec" / "Poison.tla"
MODEL = ROOT / "validator" / "model"

_NAME = re.compile(r'"([a-z_]+\.[a-z_]+)"')
_WORD_LITERAL = re.compile(r'"(\w+)"')
_CALL_WITH_CHECK = re.compile(r'\w+\(\s*"([a-z_]+\.[a-z_]+)"\s*\)')   # On("x"), FdRefuses("x")
_DEF = re.compile(r"^(\w+)\s*(?:\([^)]*\))?\s*==", re.M)
_WORD = re.compile(r"[A-Za-z_]\w*")
_CALL = r"\w+(?:\([^()]*\))?"
_DISJUNCTION = re.compile(rf"^(?:\\/\s*)?{_CALL}(?:\s*\\/\s*{_CALL})*$")
# The fair actions ConversionCompletes rests on.
CONVERSION_FAIRNESS = ("ConversionZap", "ConversionDone")


def strip_comments(text: str) -> str:
    # Keep the line structure so that definitions still start a line.
    text = re.sub(r"\(\*.*?\*\)", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return re.sub(r"\\\*[^\n]*", "", text)


def definitions(text: str) -> dict[str, str]:
    """Top-level operator definitions: name -> body (up to the next one)."""
    starts = list(_DEF.finditer(text))
    out = {}
    for here, after in zip(starts, starts[1:] + [None]):
        body = text[here.end():after.start() if after else len(text)]
        out[here.group(1)] = re.split(r"^-{4,}|^={4,}", body, flags=re.M)[0]
    return out


def braces(defs: dict[str, str], name: str, opening: str, closing: str) -> str:
    body = defs[name].strip()
    assert body.startswith(opening) and closing in body, f"{name} == {opening}...{closing}"
    return body[1:body.index(closing)]


class Uses:
    """Which checks a definition uses, directly or through the helpers it calls."""

    def __init__(self, defs: dict[str, str]):
        self.defs, self.memo = defs, {}

    def refs(self, name: str) -> set[str]:
        return {w for w in _WORD.findall(self.defs[name]) if w in self.defs and w != name}

    def checks(self, name: str, seen: frozenset = frozenset()) -> set[str]:
        if name in self.memo:
            return self.memo[name]
        found = set(_CALL_WITH_CHECK.findall(self.defs[name]))
        for ref in self.refs(name) - seen:
            found |= self.checks(ref, seen | {name})
        self.memo[name] = found
        return found

    def primed(self, name: str) -> bool:
        return "'" in self.defs[name] or any(self.primed(r) for r in self.refs(name))

    def actions(self, name: str, top: bool = True) -> set[str]:
        """The actions `name` is made of: Next's disjuncts, with a definition that
        is only a disjunction of others (TdxSeptRemove) split into them."""
        if top or _DISJUNCTION.match(self.defs[name].strip()):
            return set().union(set(), *(self.actions(r, False) for r in self.refs(name)))
        return {name} if self.primed(name) else set()


def read_spec(path: Path) -> dict:
    """What the spec says, in the shape designs.py writes it."""
    text = strip_comments(path.read_text())
    defs = definitions(text)
    upstream = tuple(_NAME.findall(braces(defs, "UpstreamChecks", "{", "}")))
    proposed = tuple(_NAME.findall(braces(defs, "ProposedChecks", "{", "}")))
    # A record of sets: the record closes with "]", each set with "}".
    records = re.findall(r"(\w+)\s*\|->\s*\{([^}]*)\}", braces(defs, "DesignChecks", "[", "]"))
    by_design = {d: tuple(_NAME.findall(s)) for d, s in records}
    uses = Uses(defs)
    every = upstream + sum(by_design.values(), ()) + proposed
    backings = re.search(r"ASSUME BackingAssumption == Backing \\in \{([^}]*)\}", text).group(1)
    return {
        "designs": tuple(_WORD_LITERAL.findall(braces(defs, "Designs", "{", "}"))),
        "backings": tuple(_WORD_LITERAL.findall(backings)),
        "upstream": upstream, "by_design": by_design, "proposed": proposed,
        "sites": {c: frozenset(a for a in uses.actions("Next") if c in uses.checks(a))
                  for c in every},
        "conversion": frozenset().union(*(uses.checks(n) for n in CONVERSION_FAIRNESS)),
        "named": frozenset(_NAME.findall(text)),    # every quoted check name, wherever used
        "features": frozenset(_WORD_LITERAL.findall(braces(defs, "AllFeatures", "{", "}"))),
        "tdx_states": tuple(_WORD_LITERAL.findall(braces(defs, "TdxStates", "{", "}"))),
        "ref_range": defs["RefRange"].strip(),
        "actions": uses.actions("Next"),
    }


def differences(path: Path) -> list[str]:
    """Where validator.model and the spec at `path` disagree (empty: nowhere)."""
    spec = read_spec(path)
    python = {
        "designs": designs.DESIGNS, "backings": designs.BACKINGS,
        "upstream": designs.CHECKS.upstream, "by_design": designs.CHECKS.by_design,
        "proposed": designs.CHECKS.proposed, "sites": designs.CHECKS.sites,
        "conversion": designs.CHECKS.conversion, "named": designs.ALL_CHECKS,
        "features": designs.ALL_FEATURES, "tdx_states": state.TDX_STATES,
        "ref_range": f"{state.REF_RANGE.start}..{state.REF_RANGE.stop - 1}",
        "actions": set(model.ACTION_NAMES),
    }
    return [f"{key}: the spec says {spec[key]!r}, validator.model {python[key]!r}"
            for key in python if spec[key] != python[key]]


def test_the_model_says_what_the_spec_says():
    assert differences(SPEC) == []


def test_the_spec_is_read_as_expected():
    """The reader finds what a reader of Poison.tla sees (so an empty diff means something)."""
    spec = read_spec(SPEC)
    assert spec["designs"][0] == "NoHold" and len(spec["designs"]) == 5
    assert "gmem_get_pfn.hwpoison" in spec["upstream"] and spec["by_design"]["NoHold"] == ()
    assert set(spec["by_design"]["HWPoison"]) == {"tdx_remove_failed.set_hwpoison",
                                                  "gmem_fault.hwpoison", "gmem_free.hwpoison"}
    assert spec["sites"]["hugetlb_dequeue.hwpoison"] == {"KvmGmemAllocFolio", "AllocatorReuse",
                                                          "CrossTdReuse"}
    # TdxSeptRemove is split into its cases; helpers and sets are no actions.
    assert spec["sites"]["tdx_buggy_shutdown.wbinvd"] == {"TdxSeptRemoveFailed",
                                                           "TdxSeptRemoveWbinvdFailed",
                                                           "TdxSeptRemoveFailedInSplit"}
    assert {"TdxSeptRemoveOk", "TdxSeptRemoveFailed", "FreeFolio"} <= spec["actions"]
    assert not spec["actions"] & {"TdxSeptRemove", "Pages", "Truncate", "MayHandOut", "On",
                                  "RemovalFails", "Prepare"}
    assert {"convert.safe_refcount", "tdx_remove_failed.hold_ref"} <= spec["conversion"]
    assert "do_fault.hwpoison" not in spec["conversion"]


def test_every_check_is_used_by_some_action_and_tested_by_the_mirror():
    assert [c for c in CHECKS.rows() if not CHECKS.sites[c]] == []
    mirror = "".join((MODEL / name).read_text() for name in ("state.py", "actions.py"))
    assert [c for c in CHECKS.rows() if f'"{c}"' not in mirror] == []


# ---- the comparison has teeth: a change on one side only is found ------------

@pytest.mark.parametrize("edits, key", [
    # a proposed check in the spec only
    ([('{ "convert.hwpoison",', '{ "convert.hwpoison", "gmem_fault.extra",')], "proposed"),
    # an upstream check moved to the end: the order matters (the ablation's rows)
    ([('{ "gmem_get_pfn.hwpoison",', "{"),
      ('"restructure.safe_refcount" }', '"restructure.safe_refcount", "gmem_get_pfn.hwpoison" }')],
     "upstream"),
    # a design gone from DesignChecks
    ([("NoHold          |-> {},", "")], "by_design"),
    # an action that no longer uses a check
    ([('~FdRefuses("punch_hole.bugged_fd")', "TRUE")], "sites"),
    # a new feature
    ([('"split_race" }', '"split_race", "zap_all" }')], "features"),
])
def test_a_change_to_the_spec_alone_is_found(spec_copy, edits, key):
    module = spec_copy / "Poison.tla"
    text = module.read_text()
    for old, new in edits:
        assert old in text
        text = text.replace(old, new, 1)
    module.write_text(text)
    found = differences(module)
    assert any(line.startswith(f"{key}:") for line in found), found


def test_a_change_to_the_model_alone_is_found(monkeypatch):
    checks = designs.CHECKS
    more = designs.CheckSets(checks.upstream, checks.by_design,
                             checks.proposed + ("gmem_fault.extra",),
                             {**checks.sites, "gmem_fault.extra": frozenset({"KvmGmemHostFault"})},
                             checks.conversion)
    monkeypatch.setattr(designs, "CHECKS", more)
    monkeypatch.setattr(designs, "ALL_CHECKS", frozenset(more.rows()))
    assert {line.split(":")[0] for line in differences(SPEC)} == {"proposed", "sites", "named"}
