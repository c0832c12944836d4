"""`netwatch signatures export`: the formats no server here can load, and the command's edges.

No Suricata or Zeek can run on this machine. Suricata rules are checked with idstools' rule parser
(the parser suricata-update used) plus a strict check of the options netwatch writes, and then
evaluated on every probe name with the documented semantics of those options (sticky buffer,
dotprefix, content/nocase/endswith/bsize, negated pcre): a rule must fire exactly for the names the
matcher blocks. Adblock lists are evaluated with AdGuard's documented precedence and, where Node.js
and AdGuard's own filtering engine (@adguard/tsurlfilter's DnsEngine, installed by .ci/run) are
present, by that engine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from netwatch.export import FORMATS, ExportOptions, Selection, build_plan
from netwatch.signatures import load_signature_set

REPO = Path(__file__).resolve().parents[1]
OVERLAY = REPO / "tests" / "data" / "export-overlay"


@pytest.fixture(scope="module")
def sigset():
    return load_signature_set(overlay_dirs=(OVERLAY,))


def _probes(sigset) -> list[str]:
    names = {"neighbour.example.org", "alipay.com.evil.example"}
    for match_type, pattern in list(sigset.rules) + list(sigset.exclusions):
        if match_type != "cidr":
            names |= {pattern, f"nwprobe.{pattern}", f"not{pattern}", f"x.nwprobe.{pattern}"}
    return sorted(names)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netwatch.cli", "signatures", "export", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


# -- Suricata ----------------------------------------------------------------------------------------

_OPTION_RE = re.compile(r'\s*([a-z_.]+)(?::((?:[^;"\\]|\\.|"(?:[^"\\]|\\.)*")*))?;')
_KNOWN_OPTIONS = {"msg", "dns.query", "tls.sni", "quic.sni", "http.host", "dotprefix", "content", "nocase",
                  "endswith", "bsize", "pcre", "classtype", "metadata", "sid", "rev"}
_BUFFER_OF = {"dns": "dns.query", "tls": "tls.sni", "quic": "quic.sni", "http": "http.host"}


def _strict_options(body: str) -> list[tuple[str, str | None]]:
    """Split a rule body into (keyword, value); fail on anything outside netwatch's subset."""
    options, pos = [], 0
    while pos < len(body):
        found = _OPTION_RE.match(body, pos)
        assert found, f"cannot parse options at {body[pos:pos + 40]!r}"
        keyword, value = found.group(1), found.group(2)
        assert keyword in _KNOWN_OPTIONS, keyword
        if keyword in ("msg", "content"):  # only \; \" \\ are escapes there
            assert value and re.fullmatch(r'!?"(?:[^"\\;]|\\[;"\\])*"', value), (keyword, value)
        if keyword == "pcre":  # a PCRE may escape anything; the value still may not end early
            assert value and re.fullmatch(r'!?"/(?:[^"\\;/]|\\.)*/[a-z]*"', value), (keyword, value)
        options.append((keyword, value))
        pos = found.end()
    return options


def _suricata_rules(text: str) -> list[tuple[str, list[tuple[str, str | None]], dict]]:
    idstools_rule = pytest.importorskip("idstools.rule", reason="idstools (PyPI) is not installed")
    rules, sids = [], set()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parsed = idstools_rule.parse(line)
        assert parsed is not None, line
        assert parsed.action == "alert" and parsed.proto in _BUFFER_OF and parsed.rev == 1
        assert parsed.sid not in sids and 1_397_100 <= parsed.sid < 1_497_100
        sids.add(parsed.sid)
        head, _, body = line.partition(" (")
        assert head == f"alert {parsed.proto} any any -> any any" and body.endswith(")")
        options = _strict_options(body[:-1])
        assert options[0][0] == "msg" and options[1][0] == _BUFFER_OF[parsed.proto]
        rules.append((parsed.proto, options, {"sid": parsed.sid, "msg": parsed.msg}))
    return rules


def _unquote(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value.strip('"'))


def _fires(options: list[tuple[str, str | None]], name: str) -> bool:
    """Evaluate netwatch's option subset as Suricata documents it."""
    buffer = name
    checks = []
    for keyword, value in options:
        if keyword in _BUFFER_OF.values():
            buffer = name
        elif keyword == "dotprefix":
            buffer = "." + buffer
        elif keyword == "content":
            checks.append({"negated": value.startswith("!"), "text": _unquote(value.lstrip("!")), "nocase": False,
                           "endswith": False, "buffer": buffer})
        elif keyword in ("nocase", "endswith"):
            checks[-1][keyword] = True
        elif keyword == "bsize":
            checks.append({"bsize": int(value), "buffer": buffer})
        elif keyword == "pcre":
            negated = value.startswith("!")
            body = value.lstrip("!").strip('"')[1:]  # PCRE escapes are PCRE's own
            pattern, _, flags = body.rpartition("/")
            found = re.search(pattern, buffer, re.I if "i" in flags else 0) is not None
            checks.append({"pcre": found != negated})
    for check in checks:
        if "pcre" in check:
            if not check["pcre"]:
                return False
        elif "bsize" in check:
            if len(check["buffer"]) != check["bsize"]:
                return False
        else:
            haystack = check["buffer"].lower() if check["nocase"] else check["buffer"]
            needle = check["text"].lower() if check["nocase"] else check["text"]
            hit = haystack.endswith(needle) if check["endswith"] else needle in haystack
            if hit == check["negated"]:
                return False
    return True


@pytest.mark.parametrize("min_confidence", ["medium", "high"])
def test_suricata_rules_parse_and_fire_exactly_on_blocked_names(sigset, min_confidence: str) -> None:
    selection = Selection("eo13971", min_confidence)
    text = FORMATS["suricata"](build_plan(sigset, selection), ExportOptions()).text
    rules = _suricata_rules(text)
    assert {proto for proto, _, _ in rules} == {"dns", "tls", "quic", "http"}
    for proto in _BUFFER_OF:
        per_proto = [options for p, options, _ in rules if p == proto]
        for name in _probes(sigset):
            fired = any(_fires(options, name) for options in per_proto)
            assert fired == selection.blocks(sigset.match_name(name)), (proto, name)
    assert not any(_fires(o, "notalipay.com") for _, o, _ in rules)


def test_suricata_no_quic_and_escaped_messages(sigset) -> None:
    plan = build_plan(sigset, Selection("eo13971", "medium"))
    text = FORMATS["suricata"](plan, ExportOptions(quic=False, sid_base=2_000_000)).text
    assert "quic.sni" not in text.split("\n# sids", 1)[1].split("\n", 1)[1]
    assert "sid:2000000;" in text
    hostile = load_signature_set(overlay_dirs=(OVERLAY, REPO / "tests" / "data" / "export-hostile"))
    rules = _suricata_rules(FORMATS["suricata"](build_plan(hostile, Selection("eo13971", "medium")),
                                                ExportOptions()).text)
    assert any('Evil"; sid:1; x\\' in _unquote(meta["msg"]) for _, _, meta in rules)
    assert all(meta["sid"] != 1 for _, _, meta in rules)


# -- adblock -----------------------------------------------------------------------------------------

def _adblock_blocks(lines: list[str], name: str) -> bool:
    """AdGuard precedence: $important exception > $important block > exception > block."""
    best = None
    for line in lines:
        if not line or line.startswith("!"):
            continue
        found = re.fullmatch(r"(@@)?(\|\|?)([a-z0-9_.-]+)\^(\$important)?", line)
        assert found, line
        allow, anchor, domain, important = found.groups()
        hit = name == domain or (anchor == "||" and name.endswith("." + domain))
        if hit:
            rank = (2 if important else 0) + (1 if allow else 0)
            if best is None or rank > best[0]:
                best = (rank, not allow)
    return bool(best and best[1])


def test_adblock_precedence_matches_the_matcher(sigset) -> None:
    selection = Selection("eo13971", "medium")
    lines = FORMATS["adblock"](build_plan(sigset, selection), ExportOptions()).text.splitlines()
    assert "@@||corp.alipay.com^" in lines and "||deep.nested-low.alipay.com^$important" in lines
    for name in _probes(sigset):
        assert _adblock_blocks(lines, name) == selection.blocks(sigset.match_name(name)), name


ADGUARD_MODULES = Path(os.environ.get("NETWATCH_NPM_PREFIX", Path.home() / ".cache" / "netwatch-npm")) / "node_modules"
ADGUARD_CHECK = """
const fs = require('fs');
const { DnsEngine, RuleStorage, StringRuleList } = require('@adguard/tsurlfilter');
const [listFile, namesFile] = process.argv.slice(2);
const engine = new DnsEngine(new RuleStorage([new StringRuleList(1, fs.readFileSync(listFile, 'utf8'), false)]));
const out = {};
for (const name of JSON.parse(fs.readFileSync(namesFile, 'utf8'))) {
  const rule = engine.match(name).basicRule;
  out[name] = rule ? !rule.isAllowlist() : false;
}
console.log(JSON.stringify(out));
"""


@pytest.mark.system
def test_adblock_list_in_adguards_engine(sigset, tmp_path: Path) -> None:
    """AdGuard's own DNS filtering engine blocks exactly what the matcher blocks."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed (Debian package nodejs)")
    if not (ADGUARD_MODULES / "@adguard" / "tsurlfilter").is_dir():
        pytest.skip(f"AdGuard's engine is not installed: npm install --prefix {ADGUARD_MODULES.parent} "
                    "@adguard/tsurlfilter@2.2.23 (as .ci/run does)")
    selection = Selection("eo13971", "medium")
    (tmp_path / "list.txt").write_text(FORMATS["adblock"](build_plan(sigset, selection), ExportOptions()).text)
    (tmp_path / "names.json").write_text(json.dumps(_probes(sigset)))
    (tmp_path / "check.js").write_text(ADGUARD_CHECK)
    files = [str(tmp_path / name) for name in ("check.js", "list.txt", "names.json")]
    done = subprocess.run([node, *files], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NODE_PATH": str(ADGUARD_MODULES)})
    assert done.returncode == 0, done.stderr
    verdicts = json.loads(done.stdout)
    wrong = {name: blocked for name, blocked in verdicts.items()
             if blocked != selection.blocks(sigset.match_name(name))}
    assert wrong == {} and len(verdicts) > 400 and verdicts["alipay.com"] and not verdicts["notalipay.com"]


# -- Zeek Intel, RPZ details, the command ------------------------------------------------------------

def test_zeek_intel_file(sigset) -> None:
    rendered = FORMATS["zeek-intel"](build_plan(sigset, Selection("eo13971", "medium", frozenset({"alipay"}))),
                                     ExportOptions())
    lines = rendered.text.splitlines()
    fields = lines.index("#fields\tindicator\tindicator_type\tmeta.source\tmeta.desc")
    rows = [line.split("\t") for line in lines[fields + 1:]]
    assert rows and all(len(row) == 4 and row[1] == "Intel::DOMAIN" for row in rows)
    indicators = {row[0] for row in rows}
    assert {"alipay.com", "openapi.alipay.com", "deep.nested-low.alipay.com"} <= indicators
    assert not indicators & {"corp.alipay.com", "exact-low.alipay.com", "wps.com", "pay.weixin.qq.com"}
    assert any("whole names only" in note for note in rendered.notes)


def test_rpz_ip_triggers_for_address_rules(sigset) -> None:
    rendered = FORMATS["rpz"](build_plan(sigset, Selection("eo13971", "low")), ExportOptions())
    assert "24.0.29.29.119.rpz-ip CNAME ." in rendered.text.splitlines()
    assert "qq.com CNAME ." in rendered.text.splitlines()  # vendor-wide names at low


def test_app_selection_and_header() -> None:
    done = _run("--format", "domains", "--app", "camscanner", "--signatures", str(OVERLAY))
    assert done.returncode == 0, done.stderr
    names = [line for line in done.stdout.splitlines() if line and not line.startswith("#")]
    assert "camscanner.com" in names and "scanner-only.netwatch-export-test.org" in names
    assert "alipay.com" not in names and "medium-only.netwatch-export-test.org" not in names
    header = done.stdout.split("\n", 6)
    assert any("signature set 2026" in line for line in header) and any("camscanner" in line for line in header)
    assert any(f"overlay {OVERLAY}" in line for line in done.stdout.splitlines()[:8])


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "rpz", "--app", "nosuchapp"], "unknown app id"),
    (["--format", "rpz", "--sinkhole-ipv4", "::1"], "is not an IPv4 address"),
    (["--format", "rpz", "--policy", "nosuchpolicy"], "nosuchpolicy"),
    (["--format", "rpz", "-o", "/nonexistent-dir/x.rpz"], "cannot write"),
    (["--format", "nosuchformat"], "nosuchformat"),
    (["--format", "rpz", "--zone-name", "rpz.example\n* CNAME ."], "--zone-name"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    done = _run(*args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_output_file_is_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "list.conf"
    target.write_text("old contents\n")
    done = _run("--format", "dnsmasq", "-o", str(target))
    assert done.returncode == 0 and done.stdout == ""
    text = target.read_text()
    assert "old contents" not in text and "address=/alipay.com/" in text
    assert [p.name for p in tmp_path.iterdir()] == ["list.conf"]
