"""Hostile input: any string into normalize_name / match_name / explain / match_ip / the YAML reader."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch.signatures import SignatureError, load_signature_set, normalize_name
from netwatch.signatures.yamlread import parse_yaml

SIGSET = load_signature_set()

# Host-like text: labels of mixed ASCII/Unicode joined by dots (real and full-width), plus arbitrary text.
_label = st.text(alphabet=st.characters(codec="utf-8"), min_size=0, max_size=20)
_hostish = st.lists(
    st.one_of(_label, st.sampled_from(["qq", "com", "weixin", "alipay", "xn--", "xn--mnchen-3ya", "\\046"])),
    max_size=8,
).map(lambda labels: ".".join(labels))
NAMES = st.one_of(st.text(max_size=300), _hostish)


@settings(max_examples=400, deadline=None)
@given(NAMES)
def test_normalize_then_match_never_raises(raw: str):
    name = normalize_name(raw)
    assert isinstance(name, str)
    assert not name.endswith(".") or name.strip(".") == ""
    result = SIGSET.match_name(name)
    assert result is None or result.sources


@settings(max_examples=300, deadline=None)
@given(NAMES)
def test_match_name_on_raw_text_and_explain_never_raise(raw: str):
    SIGSET.match_name(raw)
    explanation = SIGSET.explain(raw)
    assert explanation.winner is None or explanation.winner in explanation.candidates
    SIGSET.encrypted_dns_resolver(raw)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=60), st.ip_addresses().map(str)))
def test_match_ip_never_raises(text: str):
    SIGSET.match_ip(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_yaml_reader_only_raises_signature_error(text: str):
    try:
        parse_yaml(text, "fuzz.yaml")
    except SignatureError as exc:
        assert exc.path == "fuzz.yaml" and exc.line >= 0
