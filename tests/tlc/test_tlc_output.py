"""The TLC output reader, on outputs recorded from TLC 2.15 runs of this spec."""

from validator.tlc.output import parse_tlc_output, split_messages

from conftest import DATA

TLC = DATA / "tlc"


def read(name):
    return parse_tlc_output((TLC / name).read_text(), returncode=0)


def test_success_has_statistics_and_no_trace():
    result = read("holds.out")
    assert result.status == "holds"
    assert result.distinct > 100 and result.generated >= result.distinct
    assert result.depth > 5
    assert result.trace == [] and result.error is None


def test_invariant_violation_names_the_invariant_and_keeps_the_trace():
    result = read("invariant_violation.out")
    assert (result.status, result.violation) == ("violated", "invariant")
    assert result.named_property == "NoHostAccessToTdPageInv"
    assert result.trace[0].action == "Init"
    assert [s.number for s in result.trace] == list(range(1, len(result.trace) + 1))
    assert result.trace[-1].action == "AllocatorReuse"
    assert result.trace[-1].state["folioLoc"]["f1"] == "reused"
    assert result.steps == len(result.trace) - 1


def test_action_property_violation():
    result = read("action_violation.out")
    assert (result.violation, result.named_property) == ("action", "PoisonContainedProp")
    assert result.trace[-1].action == "KvmTdpMapPrivate"
    assert result.trace[-1].line is not None and result.trace[-1].module == "Poison"


def test_temporal_violation_is_a_lasso():
    result = read("temporal_violation.out")
    assert (result.status, result.violation) == ("violated", "temporal")
    assert result.named_property is None
    assert result.loop_to is not None or result.stuttering
    assert len(result.trace) >= 2


def test_parse_error_is_one_line_with_the_reason():
    result = read("parse_error.out")
    assert result.status == "error"
    assert "Parsing or semantic analysis failed" in result.error
    assert "line 4, column 1" in result.error
    assert "\n" not in result.error


def test_output_without_verdict_is_an_error():
    result = parse_tlc_output("Error: Could not find or load main class tlc2.TLC\n", returncode=1)
    assert result.status == "error"
    assert "Could not find or load main class" in result.error


def test_truncated_output_is_an_error_not_a_pass():
    text = (TLC / "holds.out").read_text()
    cut = text[: text.index("Model checking completed")]
    assert parse_tlc_output(cut, returncode=None).status == "error"


def test_messages_are_framed():
    messages = split_messages((TLC / "tiny_invariant.out").read_text())
    assert messages[0].code == 2262
    assert any(m.code == 2110 and m.severity == 1 for m in messages)
