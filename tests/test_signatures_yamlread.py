"""The one-line flow mapping shortcut in yamlread must give exactly what the plain event walk gives."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch.signatures.errors import SignatureError
from netwatch.signatures.yamlread import LineList, LineMap, _walk, parse_yaml

_MANY = 80  # above the shortcut's minimum line count


def _shape(value: object) -> object:
    """Values plus every line number, so a wrong FILE:LINE shows up as a difference."""
    if isinstance(value, LineMap):
        return ("map", value.line, {k: (value.key_lines[k], _shape(v)) for k, v in value.items()})
    if isinstance(value, LineList):
        return ("list", value.line, list(value.item_lines), [_shape(v) for v in value])
    return (type(value).__name__, value)


def _plain(text: str) -> object:
    return _walk(text, "t.yaml", {})


def _rules(lines: list[str]) -> str:
    return "kind: rules\nrules:\n" + "\n".join(lines) + "\n"


def test_flow_lines_match_the_plain_walk_with_lines() -> None:
    lines = [f"  - {{match: suffix, pattern: h{i}.example, apps: [a, b{i}], n: {i}, t: true, "
             f"sources: [https://example.org/x:y, owner/repo@abc1234:p]}}  # c" for i in range(_MANY)]
    text = _rules(lines)
    assert _shape(parse_yaml(text, "t.yaml")) == _shape(_plain(text))
    doc = parse_yaml(text, "t.yaml")
    assert doc["rules"][5]["n"] == 5 and doc["rules"][5]["t"] is True
    assert doc["rules"][5].line_of("pattern") == 8


def test_flow_text_inside_a_block_scalar_stays_text() -> None:
    body = "\n".join(f"    - {{match: suffix, pattern: h{i}.example}}" for i in range(_MANY))
    text = f"kind: rules\ndescription: |\n{body}\nrules: []\n"
    doc = parse_yaml(text, "t.yaml")
    assert doc["description"] == "\n".join(line[4:] for line in body.splitlines()) + "\n"
    assert _shape(doc) == _shape(_plain(text))


def test_flow_text_inside_a_quoted_scalar_stays_text() -> None:
    body = "\n".join(f"  - {{a: b{i}}}" for i in range(_MANY))
    text = f'kind: rules\nnote: "x\n{body}\n  "\nrules: []\n'
    assert _shape(parse_yaml(text, "t.yaml")) == _shape(_plain(text))


def test_duplicate_key_on_a_flow_line_reports_its_line() -> None:
    lines = [f"  - {{match: suffix, pattern: h{i}.example}}" for i in range(_MANY)]
    lines[40] = "  - {match: suffix, pattern: a.example, match: exact}"
    with pytest.raises(SignatureError) as info:
        parse_yaml(_rules(lines), "t.yaml")
    assert info.value.line == 43 and "duplicate key 'match'" in info.value.message


def test_real_aliases_are_still_refused() -> None:
    lines = [f"  - {{match: suffix, pattern: h{i}.example}}" for i in range(_MANY)]
    lines.append("  - *nwflow_0")
    with pytest.raises(SignatureError) as info:
        parse_yaml(_rules(lines), "t.yaml")
    assert info.value.line == _MANY + 3 and "aliases" in info.value.message


def test_syntax_error_after_flow_lines_keeps_its_line() -> None:
    lines = [f"  - {{match: suffix, pattern: h{i}.example}}" for i in range(_MANY)]
    lines.append("  - {match: suffix, pattern: [unclosed}")
    with pytest.raises(SignatureError) as info:
        parse_yaml(_rules(lines), "t.yaml")
    with pytest.raises(SignatureError) as plain:
        _plain(_rules(lines))
    assert (info.value.line, info.value.message) == (plain.value.line, plain.value.message)


_TOKEN = st.text(alphabet="aZ09_.-/:@+%~=,[]{} #&*!?'\"", min_size=0, max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["k", "match", "apps", "k"]), _TOKEN), min_size=1, max_size=4),
       st.integers(min_value=0, max_value=_MANY - 1))
def test_any_line_gives_what_the_plain_walk_gives(pairs: list[tuple[str, str]], where: int) -> None:
    lines = [f"  - {{match: suffix, pattern: h{i}.example}}" for i in range(_MANY)]
    lines[where] = "  - {" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"
    text = _rules(lines)
    try:
        expected: object = _shape(_plain(text))
    except SignatureError as exc:
        expected = (exc.line, exc.message)
    try:
        got: object = _shape(parse_yaml(text, "t.yaml"))
    except SignatureError as exc:
        got = (exc.line, exc.message)
    assert got == expected
