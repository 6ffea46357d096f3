import pytest

from validator.tlc.values import TlaValueError, parse_state, parse_value


@pytest.mark.parametrize("text, value", [
    ("TRUE", True),
    ("-3", -3),
    ('"a \\"b\\""', 'a "b"'),
    ("f1", "f1"),
    ("<<>>", []),
    ("<<f1, 2>>", ["f1", 2]),
    ("{}", []),
    ('{"a", "b"}', ["a", "b"]),
    ('[page |-> <<>>, to |-> "none"]', {"page": [], "to": "none"}),
    ("(f1 :> 0)", {"f1": 0}),
    ("(<<f1, 1>> :> FALSE @@ <<f2, 1>> :> TRUE)", {"<<f1, 1>>": False, "<<f2, 1>>": True}),
])
def test_parse_value(text, value):
    assert parse_value(text) == value


@pytest.mark.parametrize("text", ["[a |-> ]", "<<1, 2", "(f1 :> 0", "1 2", "#"])
def test_bad_values_raise(text):
    with pytest.raises(TlaValueError):
        parse_value(text)


def test_parse_state_joins_continuation_lines():
    state = parse_state(["/\\ x = (f1 :> 1 @@", "     f2 :> 2)", "/\\ y = TRUE"])
    assert state == {"x": {"f1": 1, "f2": 2}, "y": True}
