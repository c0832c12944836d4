"""`netwatch signatures list|check|match` through click's CliRunner, on the real bundled set."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from click.testing import CliRunner

from netwatch.signatures.cli import signatures_group

APPS = ["alipay", "camscanner", "qq_wallet", "shareit", "tencent_qq", "vmate", "wechat_pay", "wps_office"]


def run(*args: str):
    return CliRunner().invoke(signatures_group, list(args))


def overlay(tmp_path: Path, text: str) -> Path:
    directory = tmp_path / "overlay"
    directory.mkdir()
    (directory / "local.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return directory


def test_list_table():
    result = run("list")
    assert result.exit_code == 0, result.output
    assert "signature set 20" in result.output and "+sha256:" in result.output
    assert "policy eo13971" in result.output
    for app in APPS:
        assert f"\n{app} " in result.output


def test_list_json():
    result = run("list", "--format", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert [a["id"] for a in data["apps"]] == APPS
    assert all(a["in_policy"] for a in data["apps"])
    assert all(a["rules"]["high"] > 0 for a in data["apps"])
    assert data["label"].startswith(data["version"] + "+sha256:")
    assert data["policy"]["min_confidence"] == "medium"


def test_check_bundled_is_clean():
    result = run("check")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "0 error(s), 0 warning(s)" in result.stderr


def test_check_overlay_with_errors_exits_1_with_file_and_line(tmp_path: Path):
    directory = overlay(tmp_path, """\
        kind: rules
        rules:
          - {match: suffix, pattern: ok.example, apps: [], vendor: V, confidence: low, role: web,
             sources: [https://example.org/x]}
          - {match: suffix, pattern: nosource.example, apps: [], vendor: V, confidence: low, role: web}
          - {cidr: 10.0.0.0/33, apps: [], vendor: V, confidence: low, role: web, sources: [https://example.org/x]}
        """)
    result = run("check", str(directory))
    assert result.exit_code == 1
    path = directory / "local.yaml"
    assert f"{path}:5: error: every rule needs 'sources'" in result.stdout
    assert f"{path}:6: error: invalid CIDR" in result.stdout
    assert "2 error(s)" in result.stderr


def test_check_warnings_only_exit_0(tmp_path: Path):
    directory = overlay(tmp_path, """\
        kind: rules
        rules:
          - {match: exact, pattern: www.wps.cn, app: wps_office, confidence: high, role: client,
             sources: [https://example.org/x]}
        """)
    result = run("check", str(directory))
    assert result.exit_code == 0
    assert "warning: rule for 'www.wps.cn' is shadowed" in result.stdout


def test_check_no_bundled(tmp_path: Path):
    directory = overlay(tmp_path, """\
        kind: rules
        rules:
          - {match: suffix, pattern: a.example, app: alipay, confidence: low, role: web,
             sources: [https://example.org/x]}
        """)
    result = run("check", "--no-bundled", str(directory))
    assert result.exit_code == 1
    assert "unknown app 'alipay'" in result.stdout


def test_match_explains_winner_and_beaten_rules():
    result = run("match", "API.MCH.WEIXIN.QQ.COM.", "devmate.com", "119.29.29.98", "mozilla.cloudflare-dns.com")
    assert result.exit_code == 0
    out = result.output
    assert "API.MCH.WEIXIN.QQ.COM. -> api.mch.weixin.qq.com" in out
    assert "match: WeChat Pay: high, role merchant-server, rule suffix 'mch.weixin.qq.com'" in out
    assert "[alert under policy eo13971]" in out
    assert "source: wechatpay-apiv3/wechatpay-java@" in out
    assert "beat: WeChat Pay: medium, role client, rule suffix 'weixin.qq.com'" in out
    assert "beat: vendor contact (Tencent): low, role web, rule suffix 'qq.com'" in out
    assert "devmate.com -> devmate.com\n  no match\n" in out
    assert "rule cidr '119.29.29.0/24'" in out and "[record under policy eo13971]" in out
    assert "encrypted-DNS resolver: cloudflare-dns.com" in out


def test_match_json_and_exclusion(tmp_path: Path):
    directory = overlay(tmp_path, """\
        kind: rules
        exclude:
          - {match: suffix, pattern: wps.cn, note: licensed at our site}
        """)
    result = run("match", "--signatures", str(directory), "--format", "json", "drive.wps.cn")
    assert result.exit_code == 1  # excluded: no match, like grep
    [entry] = json.loads(result.stdout)
    assert entry["winner"] is None
    assert entry["exclusions"][0]["pattern"] == "wps.cn"
    assert entry["beaten"][0]["app"] == "wps_office"
    text = run("match", "--signatures", str(directory), "drive.wps.cn").output
    assert "no match: excluded" in text and "exclusion: suffix 'wps.cn'" in text


def test_commands_fail_with_file_and_line_on_bad_overlay(tmp_path: Path):
    directory = overlay(tmp_path, """\
        kind: rules
        rules:
          - {match: suffix, pattern: 'a b.example', apps: [], vendor: V, confidence: low, role: web,
             sources: [https://example.org/x]}
        """)
    for args in (["list"], ["match", "x.example"]):
        result = run(*args, "--signatures", str(directory))
        assert result.exit_code == 2
        assert f"netwatch: {directory / 'local.yaml'}:3: invalid host name" in result.stderr
