"""Source citations of signature rules: their form (offline) and their content (against git mirrors).

Every rule cites where its host name comes from, as a URL or as a pinned repository file
``owner/repo@<40 hex commit>:path``. A pinned citation can be checked by anyone with a copy of that
repository: the commit must exist, the path must exist at that commit, and the file must name the
rule's host (or, for a ``suffix`` rule, a host under it; for an address rule, an address inside it).

Run ``python3 -m netwatch.signatures.citations --mirrors DIR`` with ``DIR/owner/repo`` git clones
(bare or not, e.g. ``git clone --mirror``) to check every pinned citation of the bundled set (plus
``--signatures`` overlays). Citations whose repository has no mirror, and plain URLs, are listed as
not checked; only checked failures make the exit status 1.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .loader import collect
from .matcher import SignatureSet

# owner/repo@commit:path with a full commit id: a short id can become ambiguous and cannot be verified.
PINNED_RE = re.compile(r"^(?P<repo>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)@(?P<commit>[0-9a-f]{40}):(?P<path>\S+)$")
_LOOSE_PINNED_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+@[0-9A-Za-z]+:\S+$")
_URL_RE = re.compile(r"^https://[^\s/]+\.[^\s/]+(/\S*)?$")
# A whole GitHub repository is not a citation: it names no file that could hold the host.
_GITHUB_REPO_ROOT_RE = re.compile(r"^https?://(www\.)?github\.com/[^/\s]+/[^/\s]+/?$", re.IGNORECASE)
_HOST_CHAR = "a-z0-9-"
_IPV4_RE = re.compile(r"(?<![0-9.])(?:\d{1,3}\.){3}\d{1,3}(?![0-9])")
_GIT_TIMEOUT_S = 60


@dataclass(frozen=True)
class PinnedSource:
    """A repository file at a commit."""

    repo: str
    commit: str
    path: str


@dataclass(frozen=True)
class Claim:
    """One rule's (or exclusion's, or resolver's) reliance on one source."""

    source: str
    match_type: str  # exact | suffix | cidr
    pattern: str
    file: str
    line: int


@dataclass(frozen=True)
class Finding:
    """The result of checking one claim: status ok | failed | unchecked."""

    status: str
    claim: Claim
    detail: str

    def line(self) -> str:
        c = self.claim
        return f"{self.status}: {c.source} [{c.match_type} {c.pattern}] at {c.file}:{c.line}: {self.detail}"


def parse_pinned(source: str) -> PinnedSource | None:
    """The pinned repository file a source names, or None for a URL or a malformed source."""
    found = PINNED_RE.match(source)
    if found is None:
        return None
    return PinnedSource(found["repo"], found["commit"], found["path"])


def format_problem(source: str) -> str | None:
    """Why a source is not an acceptable citation, or None when it is.

    A source is an https URL of a page or file, or a pinned repository file. A bare GitHub repository URL
    names no file, and a short commit id can become ambiguous, so both are refused.
    """
    if PINNED_RE.match(source):
        return None
    if _LOOSE_PINNED_RE.match(source):
        return "a pinned source needs the full 40-digit lowercase commit id"
    if _GITHUB_REPO_ROOT_RE.match(source):
        return "a whole repository is not a citation: pin the file as owner/repo@<40-digit commit>:path"
    if _URL_RE.match(source):
        return None
    return "neither an https URL nor owner/repo@<40-digit commit>:path"


def claims(sigset: SignatureSet) -> Iterator[Claim]:
    """Every (source, pattern) pair the loaded set relies on: rules, exclusions and resolvers."""
    for group in (sigset.rules.values(), sigset.exclusions.values(), sigset.resolvers.values()):
        for item in group:
            for source in getattr(item, "sources", None) or ():
                yield Claim(source, item.match_type, item.pattern, item.file, item.line)


def names_host(text: str, match_type: str, pattern: str) -> bool:
    """Whether `text` names `pattern` as a host (exact), a host at or under it (suffix) or an address in it.

    Host names are compared case-insensitively on label boundaries: ``qq.com`` is not named by
    ``qq.com.cn`` or ``myqq.com``; for a suffix rule ``res.wx.qq.com`` names ``wx.qq.com``.
    """
    if match_type == "cidr":
        return _names_address(text, pattern)
    lowered = text.lower()
    left = rf"(?<![{_HOST_CHAR}.])" if match_type == "exact" else rf"(?<![{_HOST_CHAR}])"
    right = rf"(?![{_HOST_CHAR}])(?!\.[{_HOST_CHAR}])"
    return re.search(left + re.escape(pattern.lower()) + right, lowered) is not None


def _names_address(text: str, cidr: str) -> bool:
    network = ipaddress.ip_network(cidr, strict=False)
    if cidr in text or str(network) in text:
        return True
    if network.version == 4:
        for literal in _IPV4_RE.findall(text):
            try:
                if ipaddress.IPv4Address(literal) in network:
                    return True
            except ValueError:
                continue
        return False
    for token in re.findall(r"[0-9A-Fa-f:]{3,}", text):
        try:
            if ipaddress.IPv6Address(token) in network:
                return True
        except ValueError:
            continue
    return False


class GitMirrors:
    """Read files at commits from local clones laid out as ``ROOT/owner/repo`` (or ``owner/repo.git``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def clone_of(self, repo: str) -> Path | None:
        for candidate in (self.root / repo, self.root / f"{repo}.git"):
            if candidate.is_dir():
                return candidate
        return None

    def read(self, pinned: PinnedSource) -> tuple[str | None, str]:
        """(file text, "") or (None, why not)."""
        clone = self.clone_of(pinned.repo)
        if clone is None:
            return None, "no mirror"
        if self._git(clone, "cat-file", "-e", f"{pinned.commit}^{{commit}}").returncode != 0:
            return None, f"commit {pinned.commit} is not in {pinned.repo}"
        shown = self._git(clone, "show", f"{pinned.commit}:{pinned.path}")
        if shown.returncode != 0:
            return None, f"{pinned.path} does not exist at {pinned.commit[:12]}"
        return shown.stdout.decode("utf-8", "replace"), ""

    @staticmethod
    def _git(clone: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["git", "-C", str(clone), *args], capture_output=True, timeout=_GIT_TIMEOUT_S,
                              check=False)


def verify(all_claims: Iterable[Claim], mirrors: GitMirrors) -> list[Finding]:
    """Check every claim: each distinct pinned file is read once."""
    texts: dict[PinnedSource, tuple[str | None, str]] = {}
    findings: list[Finding] = []
    for claim in all_claims:
        problem = format_problem(claim.source)
        if problem is not None:
            findings.append(Finding("failed", claim, problem))
            continue
        pinned = parse_pinned(claim.source)
        if pinned is None:
            findings.append(Finding("unchecked", claim, "URL (not a repository file)"))
            continue
        if pinned not in texts:
            texts[pinned] = mirrors.read(pinned)
        text, why = texts[pinned]
        if text is None:
            findings.append(Finding("unchecked" if why == "no mirror" else "failed", claim, why))
        elif names_host(text, claim.match_type, claim.pattern):
            findings.append(Finding("ok", claim, "names it"))
        else:
            findings.append(Finding("failed", claim, f"the file does not name {claim.pattern}"))
    return findings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m netwatch.signatures.citations",
        description="Check that every pinned source (owner/repo@commit:path) of the signature set exists "
                    "in a local git mirror and names the rule's host.",
    )
    parser.add_argument("--mirrors", type=Path, required=True, help="directory holding owner/repo git clones")
    parser.add_argument("--signatures", type=Path, action="append", default=[], help="overlay directory (repeatable)")
    parser.add_argument("--no-bundled", action="store_true", help="check only the --signatures directories")
    parser.add_argument("--quiet", action="store_true", help="print failures only")
    args = parser.parse_args(argv)
    if not args.mirrors.is_dir():
        print(f"netwatch: {args.mirrors}: not a directory", file=sys.stderr)
        return 2
    sigset, diags = collect(args.signatures, include_bundled=not args.no_bundled)
    if sigset is None:
        for diag in diags:
            if diag.severity == "error":
                print(f"netwatch: {diag.to_error()}", file=sys.stderr)
        return 2
    findings = verify(claims(sigset), GitMirrors(args.mirrors))
    counts = {"ok": 0, "failed": 0, "unchecked": 0}
    for finding in sorted(findings, key=lambda f: (f.status != "failed", f.claim.file, f.claim.line)):
        counts[finding.status] += 1
        if finding.status == "failed" or not args.quiet:
            print(finding.line())
    print(f"{counts['ok']} ok, {counts['failed']} failed, {counts['unchecked']} not checked")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
