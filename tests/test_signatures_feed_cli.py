"""`netwatch signatures bundle | verify | diff` and the exit status of `signatures match`."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from netwatch.signatures import bundle as bundle_module
from netwatch.signatures.bundle import BundleError, read_members
from tests.sigfeed import FEED_NAME, build_bundle, cli, make_tree, write_keypair

POLICY = """kind: policy
id: test
name: Test policy
default: true
apps: [{apps}]
"""


def app_file(app_id: str, rules: list[tuple[str, str, str]]) -> str:
    """An app with (pattern, confidence, source) rules."""
    lines = [f"kind: app\nid: {app_id}\nname: {app_id.title()} App\nvendor: Example Vendor\n"
             f"description: test app\nrules:\n"]
    for pattern, confidence, source in rules:
        lines.append(f"  - match: suffix\n    pattern: {pattern}\n    confidence: {confidence}\n    role: client\n"
                     f"    sources: [{source}]\n")
    return "".join(lines)


def small_set(root: Path, version: str, apps: dict[str, list[tuple[str, str, str]]]) -> Path:
    (root / "apps").mkdir(parents=True)
    (root / "policies").mkdir()
    (root / "MANIFEST.yaml").write_text(f'kind: manifest\nversion: "{version}"\n')
    for app_id, rules in apps.items():
        (root / "apps" / f"{app_id}.yaml").write_text(app_file(app_id, rules))
    (root / "policies" / "test.yaml").write_text(POLICY.format(apps=", ".join(apps)))
    return root


SRC_A, SRC_B = "https://a.example.org/list", "https://b.example.org/list"


def test_diff_lists_added_removed_and_changed_rules_per_app(tmp_path: Path) -> None:
    old = small_set(tmp_path / "old", "1.0", {
        "alpha": [("alpha.example", "high", SRC_A), ("old-alpha.example", "medium", SRC_A)],
        "beta": [("beta.example", "medium", SRC_A)],
    })
    new = small_set(tmp_path / "new", "1.1", {
        "alpha": [("alpha.example", "high", SRC_A), ("new-alpha.example", "high", SRC_B)],
        "beta": [("beta.example", "high", SRC_B)],
        "gamma": [("gamma.example", "high", SRC_A)],
    })
    run = cli("signatures", "diff", str(old), str(new))
    assert run.returncode == 1, run.stderr
    text = run.stdout
    assert text.splitlines()[0].startswith("signatures 1.0 (sha256:") and " -> 1.1 (sha256:" in text
    assert "alpha (Alpha App): +1 -1 ~0" in text
    assert "  + suffix new-alpha.example  high client (alpha; 1 source(s))" in text
    assert "  - suffix old-alpha.example  medium client (alpha; 1 source(s))" in text
    assert f"  ~ suffix beta.example: confidence medium -> high; sources +{SRC_B} -{SRC_A}" in text
    assert "gamma (Gamma App) [app added]: +1 -0 ~0" in text
    assert "policy test: +app gamma" in text
    assert "2 rule(s) added, 1 removed, 1 changed" in text

    run = cli("signatures", "diff", str(old), str(new), "--format", "json")
    assert run.returncode == 1
    doc = json.loads(run.stdout)
    assert (doc["old"]["version"], doc["new"]["version"]) == ("1.0", "1.1")
    assert [r["pattern"] for r in doc["apps"]["alpha"]["added"]] == ["new-alpha.example"]
    assert [r["pattern"] for r in doc["apps"]["alpha"]["removed"]] == ["old-alpha.example"]
    [changed] = doc["apps"]["beta"]["changed"]
    assert changed["fields"] == ["confidence", "sources"]
    assert changed["old"] == {"confidence": "medium", "sources": [SRC_A]}
    assert changed["new"] == {"confidence": "high", "sources": [SRC_B]}
    assert doc["apps"]["gamma"]["status"] == "added"
    assert doc["policies"]["test"]["apps_added"] == ["gamma"]
    assert doc["rule_changes"] == {"added": 2, "removed": 1, "changed": 1}

    run = cli("signatures", "diff", str(new), str(old), "--format", "json")  # and backwards
    doc = json.loads(run.stdout)
    assert doc["apps"]["gamma"]["status"] == "removed"
    assert [r["pattern"] for r in doc["apps"]["alpha"]["added"]] == ["old-alpha.example"]

    same = cli("signatures", "diff", str(old), str(old))
    assert same.returncode == 0 and "no differences" in same.stdout


def test_diff_of_a_bundle_against_the_bundled_set(tmp_path: Path) -> None:
    key, pub = write_keypair(tmp_path, "k")
    bundle = tmp_path / "b.tar.gz"
    build_bundle(make_tree(tmp_path / "tree", "2026.12.1"), key, bundle)
    run = cli("signatures", "diff", "bundled", str(bundle), "--trusted-key", str(pub))
    assert run.returncode == 1, run.stderr
    assert f"alipay (Alipay): +1 -0 ~0\n  + exact {FEED_NAME}  high client" in run.stdout
    run = cli("signatures", "diff", "bundled", str(bundle))  # signed by a key netwatch does not trust
    assert run.returncode == 2 and "not trusted" in run.stderr
    run = cli("signatures", "diff", "bundled", str(tmp_path / "nowhere"))
    assert run.returncode == 2 and "no such directory or bundle" in run.stderr


def test_bundle_and_verify(tmp_path: Path) -> None:
    key, pub = write_keypair(tmp_path, "k")
    tree = make_tree(tmp_path / "tree", "2026.12.1")
    out = tmp_path / "b.tar.gz"
    # the key comes from the environment as well as from a file
    run = cli("signatures", "bundle", str(tree), "-o", str(out), "--date", "2026-12-01T00:00:00Z",
              env={"NETWATCH_SIGNING_KEY": key.read_text()})
    assert run.returncode == 0, run.stderr
    assert "signatures 2026.12.1" in run.stdout
    first = out.read_bytes()
    build_bundle(tree, key, out)  # same date and content: byte for byte the same bundle
    assert out.read_bytes() == first
    members = read_members(first)
    assert set(members) >= {"bundle.json", "bundle.sig", "signatures/MANIFEST.yaml", "signatures/apps/alipay.yaml"}
    manifest = json.loads(members["bundle.json"])
    assert manifest["version"] == "2026.12.1" and manifest["min_netwatch"] == "0.1.0"
    assert manifest["date"] == "2026-12-01T00:00:00Z"

    run = cli("signatures", "verify", str(out), "--trusted-key", str(pub))
    assert run.returncode == 0, run.stderr
    assert "good signature" in run.stdout and "all hashes match" in run.stdout
    _, other_pub = write_keypair(tmp_path, "other")
    run = cli("signatures", "verify", str(out), "--trusted-key", str(other_pub))
    assert run.returncode == 2 and "not trusted" in run.stderr


def test_bundle_refuses_without_a_key_or_with_a_bad_set(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", "2026.12.1")
    env = {k: v for k, v in os.environ.items() if k != "NETWATCH_SIGNING_KEY"}
    run = cli("signatures", "bundle", str(tree), "-o", str(tmp_path / "b.tar.gz"), env=env)
    assert run.returncode == 2 and "no signing key" in run.stderr
    key, _ = write_keypair(tmp_path, "k")
    (tree / "vendors" / "feed-test.yaml").write_text("kind: rules\nrules: [{match: exact}]\n")
    run = cli("signatures", "bundle", str(tree), "-o", str(tmp_path / "b.tar.gz"), "--key-file", str(key))
    assert run.returncode == 2 and "feed-test.yaml" in run.stderr and "not signed" in run.stderr
    assert not (tmp_path / "b.tar.gz").exists()
    run = cli("signatures", "bundle", str(make_tree(tmp_path / "t2", "next")), "-o", str(tmp_path / "c.tar.gz"),
              "--key-file", str(key))
    assert run.returncode == 2 and "dotted numbers" in run.stderr
    not_a_key = tmp_path / "not-a-key.pem"
    not_a_key.write_text("hello")
    run = cli("signatures", "bundle", str(make_tree(tmp_path / "t3", "2026.12.3")), "-o", str(tmp_path / "d.tar.gz"),
              "--key-file", str(not_a_key))
    assert run.returncode == 2 and "not a PEM private key" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize("data, message", [
    (b"", "not a signature bundle"),
    (b"\x1f\x8b\x08\x00" + b"\0" * 20, "truncated or corrupt"),
])
def test_read_members_rejects_junk(data: bytes, message: str) -> None:
    with pytest.raises(BundleError, match=message):
        read_members(data)


def _tar(members: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tar.addfile(info, io.BytesIO(member[1]))
    return gzip.compress(out.getvalue())


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


@pytest.mark.parametrize("members, message", [
    ([("signatures/../../etc/cron.d/x", b"boom")], "is not allowed"),
    ([("/etc/passwd", b"boom")], "is not allowed"),
    ([("signatures/.hidden.yaml", b"x")], "is not allowed"),
    ([_symlink("signatures/apps/alipay.yaml", "/etc/shadow")], "not a regular file"),
    ([("bundle.json", b"{}"), ("bundle.json", b"{}")], "appears twice"),
    ([("signatures/MANIFEST.yaml", b"x")], "has no bundle.json"),
])
def test_hostile_bundle_members_are_rejected(members: list, message: str) -> None:
    with pytest.raises(BundleError, match=message):
        read_members(_tar(members))


def test_uncompressed_size_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A small download that inflates without end (a gzip bomb) stops at the bound."""
    monkeypatch.setattr(bundle_module, "MAX_TREE_BYTES", 64 * 1024)
    data = _tar([(f"signatures/f{i}.yaml", b"\0" * 40 * 1024) for i in range(3)])
    assert len(data) < 4096
    with pytest.raises(BundleError, match="larger than"):
        read_members(data)


def test_match_exit_status_is_grep_like(tmp_path: Path) -> None:
    assert cli("signatures", "match", "api.mch.weixin.qq.com").returncode == 0
    assert cli("signatures", "match", "nothing.example", "api.mch.weixin.qq.com").returncode == 0
    none = cli("signatures", "match", "nothing.example", "--format", "json")
    assert none.returncode == 1 and json.loads(none.stdout)[0]["winner"] is None
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.yaml").write_text("kind: nonsense\n")
    run = cli("signatures", "match", "qq.com", "--signatures", str(broken))
    assert run.returncode == 2 and run.stderr.startswith("netwatch: ") and "x.yaml" in run.stderr



def test_systemd_units_are_valid_and_run_the_update(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    contrib = Path(__file__).resolve().parents[1] / "contrib" / "systemd"
    service = (contrib / "netwatch-signatures-update.service").read_text()
    [exec_start] = [line for line in service.splitlines() if line.startswith("ExecStart=")]
    argv = exec_start.removeprefix("ExecStart=").split()
    assert argv[1:4] == ["signatures", "update", "$NETWATCH_UPDATE_ARGS"]
    assert cli(*argv[1:3], "--help").returncode == 0
    # verify with the binary path replaced by one that exists here (the unit names the installed one)
    (tmp_path / "netwatch-signatures-update.service").write_text(service.replace(argv[0], shutil.which("true")))
    shutil.copy(contrib / "netwatch-signatures-update.timer", tmp_path)
    run = subprocess.run([analyze, "verify", str(tmp_path / "netwatch-signatures-update.timer"),
                          str(tmp_path / "netwatch-signatures-update.service")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "OnCalendar=daily" in (contrib / "netwatch-signatures-update.timer").read_text()


def test_the_shipped_release_key_verifies_a_release_bundle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The trust anchor in the package is a real key: a bundle signed by the project verifies with
    the default keyring (no pinning), and a single changed byte does not."""
    from netwatch.signatures.bundle import open_bundle, trusted_keys

    monkeypatch.setenv("NETWATCH_SIGNATURE_KEYS_DIR", str(tmp_path))  # no admin keys: the shipped ones only
    data = (Path(__file__).parent / "data" / "signatures-2026.11.28.tar.gz").read_bytes()
    keys = trusted_keys()
    assert [k.source.endswith("netwatch/data/keys/netwatch-signatures-2026.pub") for k in keys] == [True]
    bundle = open_bundle(data, keys)
    assert bundle.signer.key_id == "a631d3b8de518aa7"
    assert bundle.manifest.version == "2026.11.28" and "policies/eo13971.yaml" in bundle.manifest.files
    members = read_members(data)
    forged = _tar([*((n, b) for n, b in members.items() if n != "bundle.json"),
                   ("bundle.json", members["bundle.json"].replace(b"2026.11.28", b"2026.11.29"))])
    with pytest.raises(BundleError, match="bad signature"):
        open_bundle(forged, keys)
