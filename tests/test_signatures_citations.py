"""Source citations: the form of every bundled citation (offline) and the mirror check of pinned ones."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from netwatch.signatures import load_signature_set
from netwatch.signatures.citations import (
    GitMirrors,
    claims,
    format_problem,
    names_host,
    parse_pinned,
    verify,
)
from netwatch.signatures.loader import collect

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def bundled_claims():
    return list(claims(load_signature_set()))


def test_every_bundled_citation_is_well_formed(bundled_claims):
    assert bundled_claims
    bad = [(c.file, c.line, c.source, format_problem(c.source)) for c in bundled_claims if format_problem(c.source)]
    assert not bad, bad


def test_every_high_rule_has_a_checkable_or_non_github_source():
    """A high rule may not rest on GitHub file URLs alone: pin the file (owner/repo@commit:path) instead."""
    sigset = load_signature_set()
    weak = []
    for rule in sigset.rules.values():
        if rule.confidence != "high":
            continue
        if not any(parse_pinned(s) or "github.com/" not in s for s in rule.sources):
            weak.append((rule.file, rule.line, rule.pattern, rule.sources))
    assert not weak, weak


def test_every_rule_has_a_source(bundled_claims):
    sigset = load_signature_set()
    assert all(rule.sources for rule in sigset.rules.values())
    cited = {(c.file, c.line) for c in bundled_claims}
    assert all((rule.file, rule.line) in cited for rule in sigset.rules.values())


@pytest.mark.parametrize(
    ("source", "ok"),
    [
        (f"ntop/nDPI@{COMMIT}:tests/cfgs/default/result/wechat.pcap.out", True),
        (f"owner.name/repo_x-y@{COMMIT}:dir/file name.txt".replace(" ", "_"), True),
        ("https://pay.weixin.qq.com/wiki/doc/api/H5.php?chapter=9_20&index=1", True),
        ("https://github.com/blackmatrix7/ios_rule_script/blob/master/rule/Clash/WeChat/WeChat.list", True),
        ("https://github.com/curl/curl/wiki/DNS-over-HTTPS", True),
        ("ntop/nDPI@3b1286ab:tests/cfgs/default/result/weibo.pcap.out", False),  # short commit id
        (f"ntop/nDPI@{COMMIT.upper()}:README.md", False),
        ("https://github.com/mamoe/mirai", False),  # a whole repository names no file
        ("https://github.com/mamoe/mirai/", False),
        ("http://example.org/list.txt", False),
        ("v2fly data/tencent", False),
        ("", False),
    ],
)
def test_format_problem(source, ok):
    assert (format_problem(source) is None) == ok


def test_parse_pinned():
    pinned = parse_pinned(f"v2fly/domain-list-community@{COMMIT}:data/tencent")
    assert pinned is not None
    assert (pinned.repo, pinned.commit, pinned.path) == ("v2fly/domain-list-community", COMMIT, "data/tencent")
    assert parse_pinned("https://example.org/x") is None


@pytest.mark.parametrize(
    ("text", "match_type", "pattern", "expected"),
    [
        ("DOMAIN-SUFFIX,qq.com", "suffix", "qq.com", True),
        ("https://res.wx.qq.com/open/js/jweixin-1.6.0.js", "suffix", "wx.qq.com", True),
        ("https://res.wx.qq.com/open/js/jweixin-1.6.0.js", "exact", "res.wx.qq.com", True),
        ("https://res.wx.qq.com/open/js/jweixin-1.6.0.js", "exact", "wx.qq.com", False),
        ("qq.com.cn", "suffix", "qq.com", False),
        ("myqq.com", "suffix", "qq.com", False),
        ("my-qq.com", "suffix", "qq.com", False),
        ("see WX.QQ.COM", "exact", "wx.qq.com", True),
        ("wx2.qq.com", "suffix", "wx.qq.com", False),
        ("login.wx2.qq.com", "suffix", "wx2.qq.com", True),
        ("end of sentence wx2.qq.com.", "exact", "wx2.qq.com", True),
        ("wechatpay.cn", "suffix", "api.wechatpay.cn", False),
        ("(api|api-cs)\\.intsig\\.net", "exact", "api-cs.intsig.net", False),
    ],
)
def test_names_host(text, match_type, pattern, expected):
    assert names_host(text, match_type, pattern) is expected


@pytest.mark.parametrize(
    ("text", "cidr", "expected"),
    [
        ("SERVER_IPS = {\"203.107.1.33\", \"203.107.1.65\"}", "203.107.1.0/24", True),
        ("203.107.2.1", "203.107.1.0/24", False),
        ("1203.107.1.5", "203.107.1.0/24", False),
        ("dns 2400:3200::1", "2400:3200::/32", True),
        ("dns 2400:3201::1", "2400:3200::/32", False),
        ("range 119.29.29.0/24", "119.29.29.0/24", True),
    ],
)
def test_names_address(text, cidr, expected):
    assert names_host(text, "cidr", cidr) is expected


# --- the mirror check, against a real git repository ---------------------------------------------------------------

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false", *args],
        cwd=cwd, check=True, capture_output=True, text=True,
    ).stdout.strip()


@pytest.fixture
def mirror(tmp_path: Path):
    """mirrors/acme/lists holding data/app.list at one commit; returns (mirrors dir, commit)."""
    repo = tmp_path / "mirrors" / "acme" / "lists"
    (repo / "data").mkdir(parents=True)
    git(repo, "init", "-q")
    (repo / "data" / "app.list").write_text("DOMAIN-SUFFIX,example-app.com\napi.example-app.net\n", encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "lists")
    return tmp_path / "mirrors", git(repo, "rev-parse", "HEAD")


def overlay(tmp_path: Path, commit: str) -> Path:
    directory = tmp_path / "overlay"
    directory.mkdir()
    absent = "f" * 40
    (directory / "local.yaml").write_text(textwrap.dedent(f"""\
        kind: rules
        id: citations_test
        vendor: Acme
        defaults: {{apps: [], confidence: low, role: web}}
        rules:
          - {{match: suffix, pattern: example-app.com, sources: ["acme/lists@{commit}:data/app.list"]}}
          - {{match: exact, pattern: api.example-app.net, sources: ["acme/lists@{commit}:data/app.list"]}}
          - {{match: exact, pattern: cdn.example-app.net, sources: ["acme/lists@{commit}:data/app.list"]}}
          - {{match: exact, pattern: www.example-app.org, sources: ["acme/lists@{absent}:data/app.list"]}}
          - {{match: exact, pattern: m.example-app.org, sources: ["acme/lists@{commit}:data/missing.list"]}}
          - {{match: exact, pattern: x.example-app.org, sources: ["other/repo@{commit}:data/app.list"]}}
          - {{match: exact, pattern: y.example-app.org, sources: ["https://example.org/notes"]}}
        """), encoding="utf-8")
    return directory


@needs_git
def test_verify_against_a_mirror(tmp_path, mirror):
    mirrors, commit = mirror
    sigset, diags = collect([overlay(tmp_path, commit)], include_bundled=False)
    assert sigset is not None, diags
    found = {f.claim.pattern: f for f in verify(claims(sigset), GitMirrors(mirrors))}
    assert found["example-app.com"].status == "ok"
    assert found["api.example-app.net"].status == "ok"
    assert found["cdn.example-app.net"].status == "failed"
    assert "does not name" in found["cdn.example-app.net"].detail
    assert found["www.example-app.org"].status == "failed"
    assert "is not in acme/lists" in found["www.example-app.org"].detail
    assert found["m.example-app.org"].status == "failed"
    assert "does not exist" in found["m.example-app.org"].detail
    assert found["x.example-app.org"].status == "unchecked"
    assert found["y.example-app.org"].status == "unchecked"


@needs_git
def test_cli_exit_status(tmp_path, mirror):
    mirrors, commit = mirror
    directory = overlay(tmp_path, commit)
    cmd = [sys.executable, "-m", "netwatch.signatures.citations", "--mirrors", str(mirrors), "--no-bundled",
           "--signatures", str(directory)]
    failing = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert failing.returncode == 1, failing.stderr
    assert "2 ok, 3 failed, 2 not checked" in failing.stdout
    assert failing.stdout.splitlines()[0].startswith("failed: ")
    text = (directory / "local.yaml").read_text(encoding="utf-8").splitlines()
    (directory / "local.yaml").write_text("\n".join(line for line in text if "example-app.org" not in line
                                                    and "cdn.example-app" not in line) + "\n", encoding="utf-8")
    passing = subprocess.run([*cmd, "--quiet"], capture_output=True, text=True, check=False)
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert passing.stdout.strip() == "2 ok, 0 failed, 0 not checked"


def test_cli_bad_mirror_directory(tmp_path):
    result = subprocess.run([sys.executable, "-m", "netwatch.signatures.citations", "--mirrors",
                             str(tmp_path / "absent")], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "not a directory" in result.stderr


def test_bundled_set_without_mirrors_is_all_unchecked(tmp_path):
    findings = verify(claims(load_signature_set()), GitMirrors(tmp_path))
    assert findings and {f.status for f in findings} == {"unchecked"}
