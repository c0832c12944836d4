"""Loader, validation (FILE:LINE errors), overlays, exclusions, policies and the matcher's semantics."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from netwatch.signatures import (
    SignatureError,
    bundled_signatures_dir,
    display_name,
    load_signature_set,
    normalize_name,
)
from netwatch.signatures.check import run_check

MINI_MANIFEST = 'kind: manifest\nversion: "1.0"\n'
MINI_APP = textwrap.dedent(
    """\
    kind: app
    id: demo
    name: Demo
    vendor: Demo Corp
    description: test app
    rules:
      - match: suffix
        pattern: demo.example
        confidence: high
        role: client
        sources: [https://example.org/a]
    """
)
MINI_POLICY = "kind: policy\nid: p\nname: P\ndefault: true\napps: [demo]\n"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def mini(tmp_path: Path) -> Path:
    """A tiny bundled directory, so error tests know every line number."""
    root = tmp_path / "bundled"
    write(root, "MANIFEST.yaml", MINI_MANIFEST)
    write(root, "apps/demo.yaml", MINI_APP)
    write(root, "policy.yaml", MINI_POLICY)
    return root


@pytest.fixture(scope="module")
def bundled():
    return load_signature_set()


def load_error(bundled_dir: Path, overlays=()) -> SignatureError:
    with pytest.raises(SignatureError) as info:
        load_signature_set(overlays, bundled_dir=bundled_dir)
    return info.value


# ---------------------------------------------------------------------------------------------------------
# bad input -> FILE:LINE: message


BAD_RULES = [
    # (rule text appended to a rules file, expected line, message fragment)
    ("  - {match: suffix, pattern: a.demo.example, app: demo, confidence: high, role: client,\n"
     "     sources: [https://example.org/a], colour: red}\n", 8, "unknown key 'colour'"),
    ("  - match: suffix\n    pattern: b.demo.example\n    app: demo\n    confidence: high\n    role: client\n",
     7, "'sources'"),
    ("  - match: suffix\n    pattern: b.demo.example\n    app: demo\n    confidence: high\n    role: client\n"
     "    sources: []\n", 12, "'sources'"),
    ("  - cidr: 10.0.0.1/8\n    app: demo\n    confidence: low\n    role: httpdns\n"
     "    sources: [https://example.org/a]\n", 7, "invalid CIDR"),
    ("  - match: suffix\n    cidr: 10.0.0.0/8\n    app: demo\n    confidence: low\n    role: httpdns\n"
     "    sources: [https://example.org/a]\n", 7, "takes `match: cidr`"),
    ("  - {cidr: 300.1.2.0/24, app: demo, confidence: low, role: httpdns, sources: [https://example.org/a]}\n",
     7, "invalid CIDR"),
    ("  - match: suffix\n    pattern: '*.demo.example'\n    app: demo\n    confidence: high\n    role: client\n"
     "    sources: [https://example.org/a]\n", 8, "wildcards are not allowed"),
    ("  - match: suffix\n    pattern: bad..example\n    app: demo\n    confidence: high\n    role: client\n"
     "    sources: [https://example.org/a]\n", 8, "invalid host name"),
    ("  - match: suffix\n    pattern: -bad.example\n    app: demo\n    confidence: high\n    role: client\n"
     "    sources: [https://example.org/a]\n", 8, "invalid label"),
    ("  - match: suffix\n    pattern: example\n    app: demo\n    confidence: high\n    role: client\n"
     "    sources: [https://example.org/a]\n", 8, "at least 2 labels"),
    ("  - match: contains\n    pattern: demo\n    app: demo\n    confidence: high\n    role: client\n"
     "    sources: [https://example.org/a]\n", 7, "substring and prefix patterns are not supported"),
    ("  - match: suffix\n    pattern: c.demo.example\n    app: nosuchapp\n    confidence: high\n    role: client\n"
     "    sources: [https://example.org/a]\n", 7, "unknown app 'nosuchapp'"),
    ("  - match: suffix\n    pattern: c.demo.example\n    app: demo\n    confidence: certain\n    role: client\n"
     "    sources: [https://example.org/a]\n", 10, "'confidence' must be high, medium or low"),
    ("  - match: suffix\n    pattern: c.demo.example\n    apps: []\n    confidence: low\n    role: client\n"
     "    sources: [https://example.org/a]\n", 7, "needs a 'vendor'"),
]


@pytest.mark.parametrize(("rule_text", "line", "fragment"), BAD_RULES)
def test_bad_rule_reports_file_and_line(mini: Path, rule_text: str, line: int, fragment: str):
    header = "kind: rules\ndescription: bad\nrules:\n  - {match: exact, pattern: ok.demo.example, app: demo,\n" \
             "     confidence: high, role: client, sources: [https://example.org/a]}\n# line 6\n"
    path = write(mini, "bad.yaml", header + rule_text)
    err = load_error(mini)
    assert err.path == str(path)
    assert err.line == line, str(err)
    assert fragment in err.message
    assert str(err) == f"{path}:{line}: {err.message}"


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("kind: rules\nrules:\n  - {match: suffix, pattern: x.example\n", 4, "YAML syntax error"),
        ("kind: rules\nrules: []\nrules: []\n", 3, "duplicate key 'rules'"),
        ("kind: appz\nid: x\n", 1, "'kind' must be one of"),
        ("- just\n- a list\n", 1, "must be a YAML mapping"),
        ("kind: rules\nrules: &a []\nexclude: *a\n", 2, "anchors and aliases"),
        ("kind: rules\ndescription: !!python/object:os.system x\n", 2, "tags are not supported"),
        ("kind: app\nid: demo2\nname: D\nvendor: V\n", 1, "missing required key 'description'"),
        ("kind: rules\nrules:\n  - match: suffix\n    patterns: [ok.example, 'bad name.example']\n"
         "    apps: []\n    vendor: V\n    confidence: low\n    role: web\n    sources: [https://example.org/a]\n",
         4, "invalid host name 'bad name.example'"),
        ("kind: rules\nrules:\n  - match: suffix\n    patterns:\n      - ok.example\n      - '*.bad.example'\n"
         "    apps: []\n    vendor: V\n    confidence: low\n    role: web\n    sources: [https://example.org/a]\n",
         6, "wildcards"),
        ("kind: policy\nid: q\nname: Q\napps: [demo, ghost]\n", 1, "unknown app 'ghost'"),
        ("kind: manifest\nversion: '2'\nextra: 1\n", 3, "unknown key 'extra'"),
    ],
)
def test_bad_file_reports_file_and_line(mini: Path, text: str, line: int, fragment: str):
    path = write(mini, "zz_bad.yaml", text)
    err = load_error(mini)
    assert (err.path, err.line) == (str(path), line), str(err)
    assert fragment in err.message


def test_non_utf8_file(mini: Path):
    path = mini / "latin1.yaml"
    path.write_bytes(b"kind: rules\ndescription: caf\xe9\n")
    err = load_error(mini)
    assert (err.path, err.line) == (str(path), 2)
    assert "UTF-8" in err.message


def test_duplicate_rule_in_one_directory_points_at_both(mini: Path):
    text = (
        "kind: rules\nrules:\n"
        "  - {match: suffix, pattern: demo.example, app: demo, confidence: low, role: web,"
        " sources: [https://example.org/b]}\n"
    )
    path = write(mini, "dup.yaml", text)
    err = load_error(mini)
    assert (err.path, err.line) == (str(path), 3)
    assert "conflicting rule" in err.message and "apps/demo.yaml:7" in err.message


def test_overlay_errors_are_reported_against_the_overlay(mini: Path, tmp_path: Path):
    overlay = tmp_path / "overlay"
    path = write(overlay, "o.yaml", "kind: rules\nrules:\n  - {match: suffix, pattern: z.example}\n")
    err = load_error(mini, [overlay])
    assert err.path == str(path) and err.line == 3


def test_missing_overlay_directory(mini: Path, tmp_path: Path):
    err = load_error(mini, [tmp_path / "nope"])
    assert "does not exist" in err.message


def test_unknown_policy(mini: Path):
    with pytest.raises(SignatureError, match="unknown policy 'nope'"):
        load_signature_set(policy="nope", bundled_dir=mini)


# ---------------------------------------------------------------------------------------------------------
# the bundled set


def test_bundled_set_checks_clean():
    assert run_check() == []


def test_bundled_identity(bundled):
    assert re.fullmatch(r"\d{4}\.\d{2}\.\d{2}", bundled.version)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", bundled.content_hash)
    assert bundled.label == f"{bundled.version}+sha256:{bundled.content_hash[7:19]}"
    assert bundled_signatures_dir().joinpath("MANIFEST.yaml").is_file()


def test_bundled_policy_metadata(bundled):
    policy = bundled.policy
    assert policy.id == "eo13971" and policy.min_confidence == "medium"
    assert policy.apps == set(bundled.apps) == {
        "alipay", "camscanner", "qq_wallet", "shareit", "tencent_qq", "vmate", "wechat_pay", "wps_office",
    }
    assert "14034" in policy.metadata["legal_status"] and policy.metadata["revoked"] == "2021-06-09"
    assert policy.metadata["sources"]


def test_every_bundled_rule_has_sources(bundled):
    assert all(rule.sources for rule in bundled.rules.values())


def test_most_specific_wins_across_files(bundled):
    explanation = bundled.explain("api.mch.weixin.qq.com")
    assert explanation.winner.pattern == "mch.weixin.qq.com"
    assert explanation.winner.file.endswith("wechat_pay.yaml")
    beaten = [(m.pattern, Path(m.file).name) for m in explanation.beaten]
    assert beaten == [("weixin.qq.com", "wechat_pay.yaml"), ("qq.com", "tencent-shared.yaml")]


def test_suffix_matches_only_on_label_boundaries(bundled):
    assert bundled.match_name("alipay.com") is not None
    assert bundled.match_name("xalipay.com") is None
    assert bundled.match_name("com") is None
    assert bundled.match_name("") is None


def test_in_policy_and_vendor_contact(bundled):
    assert bundled.match_name("mobilegw.alipay.com").in_policy
    vendor = bundled.match_name("v.qq.com")
    assert vendor.app is None and vendor.apps == () and vendor.vendor == "Tencent" and vendor.in_policy
    shared = bundled.match_name("www.tenpay.com")
    assert shared.app is None and set(shared.apps) == {"wechat_pay", "qq_wallet"}
    assert shared.app_name == "WeChat Pay / QQ Wallet"


def test_encrypted_dns_resolvers(bundled):
    assert bundled.encrypted_dns_resolver("mozilla.cloudflare-dns.com") == "cloudflare-dns.com"
    assert bundled.encrypted_dns_resolver("dns.google") == "dns.google"
    assert bundled.encrypted_dns_resolver("x.dns.google") is None
    assert bundled.encrypted_dns_resolver("sm2.doh.pub") == "doh.pub"
    assert bundled.encrypted_dns_resolver("www.example.com") is None


# ---------------------------------------------------------------------------------------------------------
# overlays and exclusions


def overlay_with(tmp_path: Path, text: str) -> Path:
    directory = tmp_path / "overlay"
    write(directory, "local.yaml", text)
    return directory


def test_overlay_replaces_rule_with_same_key(tmp_path: Path, bundled):
    overlay = overlay_with(tmp_path, """\
        kind: rules
        rules:
          - {match: suffix, pattern: qq.com, app: tencent_qq, confidence: medium, role: client,
             sources: [https://example.org/local]}
        """)
    sigset = load_signature_set([overlay])
    match = sigset.match_name("v.qq.com")
    assert match.app == "tencent_qq" and match.confidence == "medium" and match.file == str(overlay / "local.yaml")
    assert len(sigset.rules) == len(bundled.rules)
    assert sigset.content_hash != bundled.content_hash
    # more specific bundled rules still win over the replaced one
    assert sigset.match_name("api.mch.weixin.qq.com").app == "wechat_pay"


def test_exclusions_beat_everything(tmp_path: Path):
    overlay = overlay_with(tmp_path, """\
        kind: rules
        description: our own Tencent Cloud tenant and one WeChat name we accept
        exclude:
          - {match: suffix, pattern: weixin.qq.com, note: accepted}
          - {match: exact, pattern: mail.qq.com}
          - {cidr: 119.29.29.0/25}
        """)
    sigset = load_signature_set([overlay])
    assert sigset.match_name("api.mch.weixin.qq.com") is None  # a more specific rule is still excluded
    assert sigset.match_name("weixin.qq.com") is None
    assert sigset.match_name("mail.qq.com") is None
    assert sigset.match_name("x.mail.qq.com") is not None  # exact exclusion covers only the name
    assert sigset.match_name("v.qq.com").vendor == "Tencent"
    assert sigset.match_ip("119.29.29.98") is None
    assert sigset.match_ip("119.29.29.200") is not None
    explanation = sigset.explain("api.mch.weixin.qq.com")
    assert explanation.winner is None
    assert [e.pattern for e in explanation.exclusions] == ["weixin.qq.com"]
    assert explanation.candidates[0].pattern == "mch.weixin.qq.com"


def test_exact_beats_suffix_on_the_same_name(tmp_path: Path):
    overlay = overlay_with(tmp_path, """\
        kind: rules
        rules:
          - {match: exact, pattern: qq.com, apps: [], vendor: Tencent, confidence: low, role: corporate,
             sources: [https://example.org/x]}
        """)
    sigset = load_signature_set([overlay])
    assert sigset.match_name("qq.com").match_type == "exact"
    assert sigset.match_name("www.qq.com").match_type == "suffix"


def test_longest_prefix_wins_v4_and_v6(tmp_path: Path):
    overlay = overlay_with(tmp_path, """\
        kind: rules
        defaults: {app: tencent_qq, confidence: high, role: client, sources: ["https://example.org/x"]}
        rules:
          - {cidr: 119.29.29.98/32}
          - {cidr: "2001:db8::/32", confidence: low}
          - {cidr: "2001:db8:1::/48"}
        """)
    sigset = load_signature_set([overlay])
    assert sigset.match_ip("119.29.29.98").pattern == "119.29.29.98/32"
    assert sigset.match_ip("119.29.29.97").pattern == "119.29.29.0/24"
    assert sigset.match_ip("2001:db8:1::5").pattern == "2001:db8:1::/48"
    assert sigset.match_ip("2001:db8:2::5").confidence == "low"
    assert sigset.match_ip("not an address") is None
    assert sigset.match_ip("2001:db9::1") is None


def test_overlay_policy_changes_what_is_in_policy(tmp_path: Path):
    overlay = overlay_with(tmp_path, """\
        kind: policy
        id: payments
        name: Payment apps only
        default: true
        apps: [alipay, wechat_pay, qq_wallet]
        min_confidence: high
        """)
    sigset = load_signature_set([overlay])
    assert sigset.policy.id == "payments"
    assert sigset.match_name("mobilegw.alipay.com").in_policy
    assert not sigset.match_name("msfwifi.3g.qq.com").in_policy
    assert not sigset.match_name("v.qq.com").in_policy  # no vendors listed
    assert load_signature_set([overlay], policy="eo13971").match_name("msfwifi.3g.qq.com").in_policy


def test_patterns_list_and_idn_patterns(tmp_path: Path):
    overlay = overlay_with(tmp_path, """\
        kind: app
        id: bookshop
        name: Bookshop
        vendor: Example
        description: an IDN example
        rules:
          - match: suffix
            confidence: high
            role: web
            sources: [https://example.org/x]
            patterns:
              - bücher.example
              - BOOKS.example.
        """)
    sigset = load_signature_set([overlay])
    assert sigset.match_name(normalize_name("WWW.BÜCHER.example.")).app == "bookshop"
    assert sigset.match_name("shop.books.example").app == "bookshop"
    rule = sigset.rules[("suffix", "xn--bcher-kva.example")]
    assert rule.line == 12


def test_check_warns_about_shadowed_and_excluded_rules(tmp_path: Path):
    overlay = overlay_with(tmp_path, """\
        kind: rules
        rules:
          - {match: exact, pattern: cdn.wpscdn.cn, app: wps_office, confidence: high, role: cdn,
             sources: [https://example.org/x]}
          - {match: suffix, pattern: a.hidden.example, apps: [], vendor: V, confidence: low, role: web,
             sources: [https://example.org/x]}
          - {match: suffix, pattern: b.example.net, apps: [], vendor: V, confidence: low, role: web,
             sources: [not a url]}
        exclude:
          - {match: suffix, pattern: hidden.example}
        """)
    diags = run_check([overlay])
    path = str(overlay / "local.yaml")
    found = {(d.severity, d.path, d.line, d.message.split(":")[0]) for d in diags}
    assert ("warning", path, 3, "rule for 'cdn.wpscdn.cn' is shadowed") in found
    assert ("warning", path, 5, "rule for 'a.hidden.example' can never match") in found
    assert any(d.line == 8 and "neither a URL" in d.message for d in diags)
    assert not any(d.severity == "error" for d in diags)


# ---------------------------------------------------------------------------------------------------------
# names


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("WWW.Example.COM.", "www.example.com"),
        ("example.com..", "example.com"),
        ("MÜNCHEN.de", "xn--mnchen-3ya.de"),
        ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
        ("a\u3002b\uff0ecom", "a.b.com"),  # ideographic full stops map to '.'
        ("Ab\u2603.COM.", "ab\u2603.com"),  # IDNA rejects the snowman: kept, lowercased
        ("WWW\\046x.COM", "www\\046x.com"),  # presentation escapes preserved
        ("", ""),
    ],
)
def test_normalize_name(raw: str, expected: str):
    assert normalize_name(raw) == expected


def test_display_name_round_trip():
    assert display_name("xn--mnchen-3ya.de") == "münchen.de"
    assert display_name("xn--a.example") == "xn--a.example"  # undecodable label: kept as is
    assert display_name("plain.example") == "plain.example"


def test_hostile_long_name_is_cheap_and_safe(bundled):
    name = "a." * 200_000 + "mch.weixin.qq.com"
    assert bundled.match_name(name).app == "wechat_pay"
    assert bundled.match_name("." * 100_000) is None
