"""Load signature files (bundled set plus overlays), validate them, and build a SignatureSet.

Every problem becomes a Diagnostic with FILE:LINE. `load_signature_set` raises the first error;
`collect_diagnostics` returns all of them for `netwatch signatures check`.

Layers: the base set is layer 0 (the update installed by `netwatch signatures update` when there
is one and it is not older than the bundled set, else the bundled directory), each overlay
directory the next layer. Inside one layer a rule key (match type + pattern) may appear once; a
later layer's rule with the same key replaces the earlier one, and the same holds for exclusions,
apps, policies, resolvers and the manifest.
"""

from __future__ import annotations

import gc
import hashlib
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .errors import Diagnostic, SignatureError
from .matcher import SignatureSet
from .model import CONFIDENCES, ROLES, App, Exclusion, Policy, Resolver, Rule
from .names import hostname_problem, normalize_name
from .store import active_tree
from .yamlread import LineList, LineMap, read_yaml_file

MANIFEST_NAME = "MANIFEST.yaml"
DEFAULT_POLICY_ID = "eo13971"
_ID_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# A source is a URL or a pinned repository path: owner/repo@commit:path (commit 7-40 hex digits).
_URL_RE = re.compile(r"^https?://[^\s/]+\.[^\s]+$")
_REPO_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+@[0-9a-f]{7,40}:\S+$")

_KIND_KEYS = {
    "manifest": {"kind", "version", "description"},
    "app": {"kind", "id", "name", "vendor", "description", "parent_platform", "status", "defaults",
            "rules", "exclude"},
    "rules": {"kind", "id", "vendor", "description", "status", "defaults", "rules", "exclude"},
    "policy": {"kind", "id", "name", "description", "default", "apps", "vendors", "min_confidence",
               "metadata"},
    "encrypted_dns": {"kind", "description", "resolvers"},
}
_RULE_KEYS = {"id", "match", "pattern", "patterns", "cidr", "app", "apps", "vendor", "confidence", "role", "sources",
              "note"}
_DEFAULT_KEYS = {"app", "apps", "vendor", "confidence", "role", "sources", "note"}
_EXCLUDE_KEYS = {"id", "match", "pattern", "cidr", "note", "sources"}
_RESOLVER_KEYS = {"match", "pattern", "operator", "protocols", "sources", "note"}


def bundled_signatures_dir() -> Path:
    """The shipped signature directory: installed package data first, then the source tree."""
    try:
        packaged = Path(str(resources.files("netwatch") / "data" / "signatures")).resolve()
        if (packaged / MANIFEST_NAME).is_file():
            return packaged
    except (ModuleNotFoundError, TypeError, OSError):
        pass
    return Path(__file__).resolve().parents[2] / "signatures"


def active_signatures_dir() -> tuple[Path, str]:
    """The base set every command loads, and where it comes from ("update" or "bundled")."""
    return active_tree(bundled_signatures_dir())


@dataclass
class _Layer:
    """What one directory contributed, before merging."""

    index: int
    rules: dict[tuple[str, str], Rule] = field(default_factory=dict)
    exclusions: dict[tuple[str, str], Exclusion] = field(default_factory=dict)
    apps: dict[str, App] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)
    resolvers: dict[tuple[str, str], Resolver] = field(default_factory=dict)
    version: str | None = None


class _Reader:
    """Validates documents of one layer and records diagnostics instead of stopping at the first."""

    def __init__(self, diags: list[Diagnostic]) -> None:
        self.diags = diags

    def error(self, path: str, line: int, message: str) -> None:
        self.diags.append(Diagnostic("error", path, line, message))

    def warn(self, path: str, line: int, message: str) -> None:
        self.diags.append(Diagnostic("warning", path, line, message))

    # -- small typed getters -------------------------------------------------------------------
    def _str(self, path: str, node: LineMap, key: str, *, required: bool = False) -> str | None:
        value = node.get(key)
        if value is None:
            if required:
                self.error(path, node.line, f"missing required key {key!r}")
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            self.error(path, node.line_of(key), f"{key!r} must be a string")
            return None
        return str(value)

    def _str_list(self, path: str, node: LineMap, key: str) -> tuple[str, ...] | None:
        value = node.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.error(path, node.line_of(key), f"{key!r} must be a list of strings")
            return None
        return tuple(value)

    def _check_keys(self, path: str, node: LineMap, allowed: set[str], what: str) -> None:
        for key in node:
            if key not in allowed:
                self.error(path, node.line_of(key), f"unknown key {key!r} in {what} (allowed: "
                           f"{', '.join(sorted(allowed))})")

    def _check_sources(self, path: str, line: int, sources: tuple[str, ...]) -> None:
        for source in sources:
            if not (_URL_RE.match(source) or _REPO_RE.match(source)):
                self.warn(path, line, f"source {source!r} is neither a URL nor owner/repo@commit:path")

    # -- documents -----------------------------------------------------------------------------
    def document(self, path: str, doc: object, layer: _Layer) -> None:
        if not isinstance(doc, LineMap):
            self.error(path, getattr(doc, "line", 1), "a signature file must be a YAML mapping with a 'kind'")
            return
        kind = doc.get("kind")
        if kind not in _KIND_KEYS:
            self.error(path, doc.line_of("kind"), f"'kind' must be one of {', '.join(sorted(_KIND_KEYS))}"
                       f" (got {kind!r})")
            return
        self._check_keys(path, doc, _KIND_KEYS[kind], f"a {kind} file")
        if kind == "manifest":
            version = self._str(path, doc, "version", required=True)
            if version is not None:
                if layer.version is not None:
                    self.error(path, doc.line_of("version"), "more than one manifest in this directory")
                layer.version = version
        elif kind == "app":
            self._app(path, doc, layer)
        elif kind == "rules":
            vendor = self._str(path, doc, "vendor")
            self._rules_and_exclusions(path, doc, layer, app_id=None, vendor=vendor)
        elif kind == "policy":
            self._policy(path, doc, layer)
        else:
            self._resolvers(path, doc, layer)

    def _app(self, path: str, doc: LineMap, layer: _Layer) -> None:
        app_id = self._str(path, doc, "id", required=True)
        name = self._str(path, doc, "name", required=True)
        vendor = self._str(path, doc, "vendor", required=True)
        description = self._str(path, doc, "description", required=True)
        parent = self._str(path, doc, "parent_platform")
        status = self._str(path, doc, "status")
        if app_id is None or name is None or vendor is None or description is None:
            return
        if not _ID_RE.match(app_id):
            self.error(path, doc.line_of("id"), f"app id {app_id!r} must match {_ID_RE.pattern}")
            return
        if app_id in layer.apps:
            first = layer.apps[app_id]
            self.error(path, doc.line_of("id"), f"app {app_id!r} is defined twice (first at {first.file}:"
                       f"{first.line})")
            return
        layer.apps[app_id] = App(app_id, name, vendor, description, parent, status, path, doc.line)
        self._rules_and_exclusions(path, doc, layer, app_id=app_id, vendor=vendor)

    def _rules_and_exclusions(self, path: str, doc: LineMap, layer: _Layer, *, app_id: str | None,
                              vendor: str | None) -> None:
        defaults = doc.get("defaults")
        if defaults is None:
            defaults = LineMap(doc.line)
        elif not isinstance(defaults, LineMap):
            self.error(path, doc.line_of("defaults"), "'defaults' must be a mapping")
            defaults = LineMap(doc.line)
        else:
            self._check_keys(path, defaults, _DEFAULT_KEYS, "defaults")
            default_sources = defaults.get("sources")
            if isinstance(default_sources, list) and all(isinstance(x, str) for x in default_sources):
                self._check_sources(path, defaults.line_of("sources"), tuple(default_sources))
        base: dict = {}
        if app_id is not None:
            base["app"] = app_id
        if vendor is not None:
            base["vendor"] = vendor
        base.update(defaults)
        if "apps" in defaults:
            base.pop("app", None)
        rules = doc.get("rules")
        if rules is not None:
            if not isinstance(rules, LineList):
                self.error(path, doc.line_of("rules"), "'rules' must be a list")
            else:
                for node in rules:
                    self._rule(path, node, layer, base)
        excludes = doc.get("exclude")
        if excludes is not None:
            if not isinstance(excludes, LineList):
                self.error(path, doc.line_of("exclude"), "'exclude' must be a list")
            else:
                for node in excludes:
                    self._exclusion(path, node, layer)

    def _target(
        self, path: str, node: LineMap, *, match: object, pattern: object = None, line: int = 0,
        min_labels: int = 1,
    ) -> tuple[str, str, object] | None:
        """(match type, normalised pattern, network or None) of a rule, exclusion or resolver node.

        `pattern`/`line` are given when the pattern comes from a `patterns:` list item.
        """
        if pattern is None and "cidr" in node:
            if "pattern" in node or "patterns" in node:
                self.error(path, node.line, "give either 'pattern(s)' or 'cidr', not both")
                return None
            if match not in (None, "cidr"):
                self.error(path, node.line_of("match"), "an address rule takes `match: cidr` (or no 'match')")
                return None
            text = node.get("cidr")
            if not isinstance(text, str):
                self.error(path, node.line_of("cidr"), "'cidr' must be a string such as 203.0.113.0/24")
                return None
            try:
                network = ipaddress.ip_network(text, strict=True)
            except ValueError as exc:
                self.error(path, node.line_of("cidr"), f"invalid CIDR {text!r}: {exc}")
                return None
            return ("cidr", str(network), network)
        if pattern is None:
            pattern = node.get("pattern")
            line = node.line_of("pattern")
            if pattern is None:
                self.error(path, node.line, "missing required key 'pattern' (or 'patterns', or 'cidr')")
                return None
        if match != "exact" and match != "suffix":
            self.error(path, node.line_of("match") if "match" in node else node.line,
                       f"'match' must be exact or suffix (got {match!r}); substring and prefix patterns "
                       "are not supported")
            return None
        if not isinstance(pattern, str):
            self.error(path, line, "a pattern must be a string")
            return None
        normalized = normalize_name(pattern)
        problem = hostname_problem(normalized, min_labels=min_labels)
        if problem is not None:
            self.error(path, line, f"invalid host name {pattern!r}: {problem}")
            return None
        return (match, normalized, None)

    def _rule(self, path: str, node: object, layer: _Layer, base: dict) -> None:
        if not isinstance(node, LineMap):
            self.error(path, getattr(node, "line", 0) or 0, "each rule must be a mapping")
            return
        if not node.keys() <= _RULE_KEYS:
            self._check_keys(path, node, _RULE_KEYS, "a rule")
            return
        if "app" in node or "apps" in node:
            merged = {k: v for k, v in base.items() if k != "app" and k != "apps"}
            merged.update(node)
        else:
            merged = {**base, **node}
        line = node.line
        errors_before = len(self.diags)
        if "app" in merged and "apps" in merged:
            self.error(path, line, "give either 'app' or 'apps', not both")
            return
        app = merged.get("app")
        if app is not None:
            if not isinstance(app, str):
                self.error(path, node.line_of("app"), "'app' must be an app id")
                return
            apps: tuple[str, ...] = (app,)
        elif "apps" in merged:
            value = merged["apps"]
            if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
                self.error(path, node.line_of("apps"), "'apps' must be a list of app ids ([] = vendor only)")
                return
            apps = tuple(value)
        else:
            self.error(path, line, "missing 'app' or 'apps' (use `apps: []` with 'vendor' for vendor contact)")
            return
        vendor = merged.get("vendor")
        if not apps and not vendor:
            self.error(path, line, "a vendor-contact rule (`apps: []`) needs a 'vendor'")
        confidence = merged.get("confidence")
        if confidence not in CONFIDENCES:
            self.error(path, node.line_of("confidence"), f"'confidence' must be high, medium or low "
                       f"(got {confidence!r})")
        role = merged.get("role")
        if not isinstance(role, str):
            self.error(path, node.line_of("role"), "missing required key 'role'")
        elif role not in ROLES:
            self.warn(path, node.line_of("role"), f"unknown role {role!r} (known: {', '.join(sorted(ROLES))})")
        sources = merged.get("sources")
        if not isinstance(sources, list) or not sources or not all(isinstance(s, str) and s for s in sources):
            self.error(path, node.line_of("sources"), "every rule needs 'sources': a non-empty list of URLs or "
                       "owner/repo@commit:path")
            sources = None
        elif "sources" in node:  # sources inherited from 'defaults' were checked once there
            self._check_sources(path, node.line_of("sources"), tuple(sources))
        note = merged.get("note")
        if note is not None and not isinstance(note, str):
            self.error(path, node.line_of("note"), "'note' must be a string")
        rule_id = merged.get("id")
        match = merged.get("match")
        if "patterns" in node:
            items = node["patterns"]
            if "pattern" in node or "cidr" in node or rule_id is not None:
                self.error(path, line, "'patterns' (a list) excludes 'pattern', 'cidr' and 'id'")
                return
            if not isinstance(items, LineList) or not items:
                self.error(path, node.line_of("patterns"), "'patterns' must be a non-empty list of host names")
                return
            targets = [self._target(path, node, match=match, pattern=p, line=ln, min_labels=2)
                       for p, ln in zip(items, items.item_lines, strict=True)]
            lines = items.item_lines
        else:
            targets = [self._target(path, node, match=match, min_labels=2)]
            lines = [line]
        if len(self.diags) != errors_before and any(d.severity == "error" for d in self.diags[errors_before:]):
            return
        sources_t = tuple(sources)
        rules = layer.rules
        for target, rule_line in zip(targets, lines, strict=True):
            match_type, pattern, network = target
            rule = Rule(
                match_type=match_type, pattern=pattern, apps=apps, vendor=vendor, confidence=confidence,
                role=role, sources=sources_t, note=note,
                rule_id=str(rule_id) if rule_id is not None else f"{match_type}:{pattern}",
                file=path, line=rule_line, layer=layer.index, network=network,
            )
            key = (match_type, pattern)
            first = rules.get(key)
            if first is not None:
                what = "duplicate" if first.verdict() == rule.verdict() else "conflicting"
                detail = "" if what == "duplicate" else f": {_verdict_text(first)} vs {_verdict_text(rule)}"
                self.error(path, rule_line, f"{what} rule for {match_type} {pattern!r} (first at "
                           f"{first.file}:{first.line}{detail})")
                continue
            rules[key] = rule

    def _exclusion(self, path: str, node: object, layer: _Layer) -> None:
        if not isinstance(node, LineMap):
            self.error(path, getattr(node, "line", 0) or 0, "each exclusion must be a mapping")
            return
        self._check_keys(path, node, _EXCLUDE_KEYS, "an exclusion")
        target = self._target(path, node, match=node.get("match"))
        if target is None:
            return
        match_type, pattern, network = target
        note = node.get("note")
        excl = Exclusion(match_type, pattern, note if isinstance(note, str) else None, path, node.line,
                         layer.index, network)
        first = layer.exclusions.get(excl.key)
        if first is not None:
            self.error(path, node.line, f"duplicate exclusion for {match_type} {pattern!r} (first at "
                       f"{first.file}:{first.line})")
            return
        layer.exclusions[excl.key] = excl

    def _policy(self, path: str, doc: LineMap, layer: _Layer) -> None:
        policy_id = self._str(path, doc, "id", required=True)
        name = self._str(path, doc, "name", required=True)
        apps = self._str_list(path, doc, "apps")
        if "apps" not in doc:
            self.error(path, doc.line, "missing required key 'apps'")
        vendors = self._str_list(path, doc, "vendors") or ()
        min_conf = doc.get("min_confidence", "medium")
        if min_conf not in CONFIDENCES:
            self.error(path, doc.line_of("min_confidence"), "'min_confidence' must be high, medium or low")
            return
        default = doc.get("default", False)
        if not isinstance(default, bool):
            self.error(path, doc.line_of("default"), "'default' must be true or false")
            return
        metadata = doc.get("metadata", {})
        if not isinstance(metadata, dict):
            self.error(path, doc.line_of("metadata"), "'metadata' must be a mapping")
            return
        if policy_id is None or name is None or apps is None:
            return
        if policy_id in layer.policies:
            self.error(path, doc.line_of("id"), f"policy {policy_id!r} is defined twice")
            return
        layer.policies[policy_id] = Policy(policy_id, name, self._str(path, doc, "description"),
                                           frozenset(apps), frozenset(vendors), min_conf, default,
                                           _plain(metadata), path, doc.line)

    def _resolvers(self, path: str, doc: LineMap, layer: _Layer) -> None:
        entries = doc.get("resolvers")
        if not isinstance(entries, LineList):
            self.error(path, doc.line_of("resolvers"), "'resolvers' must be a list")
            return
        for node in entries:
            if not isinstance(node, LineMap):
                self.error(path, getattr(node, "line", doc.line), "each resolver must be a mapping")
                continue
            self._check_keys(path, node, _RESOLVER_KEYS, "a resolver")
            target = self._target(path, node, match=node.get("match"))
            operator = self._str(path, node, "operator", required=True)
            protocols = self._str_list(path, node, "protocols") or ()
            sources = self._str_list(path, node, "sources")
            if not sources:
                self.error(path, node.line_of("sources"), "every resolver needs a non-empty 'sources' list")
                continue
            if target is None or operator is None or target[0] == "cidr":
                if target is not None:
                    self.error(path, node.line, "resolvers are names (exact or suffix), not CIDRs")
                continue
            self._check_sources(path, node.line_of("sources"), sources)
            resolver = Resolver(target[0], target[1], operator, protocols, sources, path, node.line)
            if (target[0], target[1]) in layer.resolvers:
                self.error(path, node.line, f"duplicate resolver {target[1]!r}")
                continue
            layer.resolvers[(target[0], target[1])] = resolver


def _plain(value: object) -> object:
    """Strip line bookkeeping so metadata is ordinary dicts and lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _verdict_text(rule: Rule) -> str:
    who = ",".join(rule.apps) if rule.apps else f"vendor {rule.vendor}"
    return f"{who} {rule.confidence} {rule.role}"


def _yaml_files(directory: Path) -> list[Path]:
    files = [p for p in directory.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()]
    return sorted(files, key=lambda p: p.relative_to(directory).as_posix())


def _load_layer(directory: Path, index: int, reader: _Reader, digest: hashlib._Hash) -> _Layer:
    layer = _Layer(index)
    if not directory.is_dir():
        reader.error(str(directory), 0, "signature directory does not exist")
        return layer
    for path in _yaml_files(directory):
        try:
            doc, raw = read_yaml_file(path)
        except SignatureError as exc:
            reader.error(exc.path, exc.line, exc.message)
            continue
        digest.update(f"{index}:{path.relative_to(directory).as_posix()}\0".encode())
        digest.update(raw.replace(b"\r\n", b"\n"))
        digest.update(b"\0")
        reader.document(str(path), doc, layer)
    return layer


def collect(
    overlay_dirs: Sequence[Path] = (),
    policy: str | None = None,
    bundled_dir: Path | None = None,
    *,
    include_bundled: bool = True,
) -> tuple[SignatureSet | None, list[Diagnostic]]:
    """Load and validate everything; return the set (None if errors made it unusable) and findings.

    The cyclic garbage collector is paused meanwhile: a 100,000-rule overlay allocates around a
    million acyclic objects, and the collections they trigger cost a third of the load time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _collect(overlay_dirs, policy, bundled_dir, include_bundled=include_bundled)
    finally:
        if was_enabled:
            gc.enable()


def _collect(
    overlay_dirs: Sequence[Path], policy: str | None, bundled_dir: Path | None, *, include_bundled: bool,
) -> tuple[SignatureSet | None, list[Diagnostic]]:
    diags: list[Diagnostic] = []
    reader = _Reader(diags)
    digest = hashlib.sha256()
    directories: list[Path] = []
    if include_bundled:
        directories.append(Path(bundled_dir) if bundled_dir is not None else active_signatures_dir()[0])
    directories.extend(Path(d) for d in overlay_dirs)
    layers = [_load_layer(d, i, reader, digest) for i, d in enumerate(directories)]

    apps: dict[str, App] = {}
    rules: dict[tuple[str, str], Rule] = {}
    exclusions: dict[tuple[str, str], Exclusion] = {}
    policies: dict[str, Policy] = {}
    resolvers: dict[tuple[str, str], Resolver] = {}
    version: str | None = None
    default_policy: Policy | None = None
    for layer in layers:
        apps.update(layer.apps)
        rules.update(layer.rules)
        exclusions.update(layer.exclusions)
        policies.update(layer.policies)
        resolvers.update(layer.resolvers)
        if layer.version is not None:
            version = layer.version
        defaults = [p for p in layer.policies.values() if p.default]
        if len(defaults) > 1:
            reader.error(defaults[1].file, defaults[1].line, f"more than one default policy in this directory "
                         f"(also {defaults[0].file}:{defaults[0].line})")
        elif defaults:
            default_policy = defaults[0]

    for rule in rules.values():
        for app_id in rule.apps:
            if app_id not in apps:
                reader.error(rule.file, rule.line, f"rule names unknown app {app_id!r} (known: "
                             f"{', '.join(sorted(apps)) or 'none'})")
    for pol in policies.values():
        for app_id in sorted(pol.apps - apps.keys()):
            reader.error(pol.file, pol.line, f"policy {pol.id!r} names unknown app {app_id!r}")

    if policy is not None:
        chosen = policies.get(policy)
        if chosen is None:
            reader.error("<policy>", 0, f"unknown policy {policy!r} (known: {', '.join(sorted(policies)) or 'none'})")
    else:
        chosen = default_policy or policies.get(DEFAULT_POLICY_ID)
        if chosen is None and policies:
            chosen = policies[sorted(policies)[0]]
    if chosen is None:
        chosen = Policy("none", "No policy", None, frozenset(), frozenset(), "medium", True, {}, "<none>", 0)
    if version is None and include_bundled:
        first_dir = str(directories[0] / MANIFEST_NAME)
        reader.error(first_dir, 0, "the signature set has no manifest with a 'version'")

    if any(d.severity == "error" for d in diags):
        return None, diags
    content_hash = "sha256:" + digest.hexdigest()
    sigset = SignatureSet(
        version=version or "unversioned", content_hash=content_hash, policy=chosen, apps=apps,
        rules=rules, exclusions=exclusions, resolvers=resolvers, policies=policies,
    )
    return sigset, diags


def load_signature_set(
    overlay_dirs: Sequence[Path] = (),
    policy: str | None = None,
    bundled_dir: Path | None = None,
) -> SignatureSet:
    """Load the bundled set plus overlays; raise SignatureError (FILE:LINE: ...) on the first error."""
    sigset, diags = collect(overlay_dirs, policy, bundled_dir)
    for diag in diags:
        if diag.severity == "error":
            raise diag.to_error()
    assert sigset is not None
    return sigset
