"""The matcher: most specific rule wins, exclusions beat everything.

Names: one dict of exact names and one of suffixes. A name is probed as a whole in the exact dict,
then from the most specific suffix to the least (``a.b.c.d``, ``b.c.d``, ``c.d``, ``d``); the first
hit wins. Exclusions are folded into the same dicts at build time as a sentinel, and every rule that
lies under an exclusion suffix is replaced by that sentinel too, so a single walk honours
"exclusions beat everything" without a second pass.

Addresses: per prefix length a dict keyed by the network number; longest prefix wins.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from .model import App, Exclusion, Explanation, NameMatch, Policy, Resolver, Rule
from .names import normalize_name

_EXCLUDED = object()  # sentinel stored where an exclusion wins
_IP_CACHE_SIZE = 8192


def _under(name: str, suffix: str) -> bool:
    return name == suffix or name.endswith("." + suffix)


def _suffix_chain(name: str) -> Iterator[str]:
    """`name` and each parent suffix, most specific first."""
    yield name
    start = name.find(".")
    while start >= 0:
        yield name[start + 1 :]
        start = name.find(".", start + 1)


class SignatureSet:
    """A loaded, validated signature set with one active policy."""

    def __init__(
        self,
        *,
        version: str,
        content_hash: str,
        policy: Policy,
        apps: dict[str, App],
        rules: dict[tuple[str, str], Rule],
        exclusions: dict[tuple[str, str], Exclusion],
        resolvers: dict[tuple[str, str], Resolver],
        policies: dict[str, Policy],
    ) -> None:
        self.version = version
        self.content_hash = content_hash
        self.policy = policy
        self.apps = apps
        self.rules = rules
        self.exclusions = exclusions
        self.resolvers = resolvers
        self.policies = policies
        self._matches: dict[tuple[str, str], NameMatch] = {k: self._to_match(r) for k, r in rules.items()}
        self._build_name_index()
        self._build_ip_index()
        self._res_exact = {r.pattern: r.pattern for r in resolvers.values() if r.match_type == "exact"}
        self._res_suffix = {r.pattern: r.pattern for r in resolvers.values() if r.match_type == "suffix"}

    # -- identity ------------------------------------------------------------------------------
    @property
    def label(self) -> str:
        """``VERSION+sha256:HASH12``: what events carry as rule.version."""
        return f"{self.version}+sha256:{self.content_hash.removeprefix('sha256:')[:12]}"

    # -- building ------------------------------------------------------------------------------
    def _to_match(self, rule: Rule) -> NameMatch:
        apps = rule.apps
        names = [self.apps[a].name for a in apps if a in self.apps]
        vendor = rule.vendor
        if vendor is None and apps and apps[0] in self.apps:
            vendor = self.apps[apps[0]].vendor
        if apps:
            in_policy = any(a in self.policy.apps for a in apps)
        else:
            in_policy = vendor is not None and vendor in self.policy.vendors
        return NameMatch(
            rule_id=rule.rule_id, pattern=rule.pattern, match_type=rule.match_type,
            app=apps[0] if len(apps) == 1 else None, apps=apps,
            app_name=" / ".join(names) if names else None, vendor=vendor, confidence=rule.confidence,
            role=rule.role, note=rule.note, sources=rule.sources, file=rule.file, line=rule.line,
            in_policy=in_policy,
        )

    def _build_name_index(self) -> None:
        """One dict keyed by every pattern and every proper suffix of a pattern.

        Value: [suffix entry, exact entry, has longer patterns below]. An entry is a NameMatch or the
        exclusion sentinel. The walk in match_name goes from the top-level label towards the full name
        and stops as soon as no longer pattern exists, so a miss usually costs one or two probes.
        """
        tree: dict[str, list] = {}

        def node(pattern: str) -> list:
            entry = tree.get(pattern)
            if entry is None:
                entry = tree[pattern] = [None, None, False]
                dot = pattern.find(".")
                while dot >= 0:  # mark every ancestor as having something longer below it
                    parent = tree.get(pattern[dot + 1 :])
                    if parent is None:
                        tree[pattern[dot + 1 :]] = [None, None, True]
                    elif parent[2]:
                        break
                    else:
                        parent[2] = True
                    dot = pattern.find(".", dot + 1)
            return entry

        for (match_type, pattern), match in self._matches.items():
            if match_type == "suffix":
                node(pattern)[0] = match
            elif match_type == "exact":
                node(pattern)[1] = match
        excl_suffixes = set()
        for excl in self.exclusions.values():
            if excl.match_type == "suffix":
                node(excl.pattern)[0] = _EXCLUDED
                excl_suffixes.add(excl.pattern)
            elif excl.match_type == "exact":
                node(excl.pattern)[1] = _EXCLUDED
        if excl_suffixes:
            for pattern, entry in tree.items():
                if (entry[0] is not None or entry[1] is not None) and any(
                    p in excl_suffixes for p in _suffix_chain(pattern)
                ):
                    entry[0] = _EXCLUDED if entry[0] is not None else None
                    entry[1] = _EXCLUDED if entry[1] is not None else None
        self._tree = tree

    def _build_ip_index(self) -> None:
        tables: dict[int, dict[int, dict[int, object]]] = {4: {}, 6: {}}
        nets: list[tuple[object, object]] = []
        for rule in self.rules.values():
            if rule.network is not None:
                nets.append((rule.network, self._matches[rule.key]))
        excl_nets = [e.network for e in self.exclusions.values() if e.network is not None]
        for network, match in nets:
            if any(network.version == x.version and network.subnet_of(x) for x in excl_nets):
                match = _EXCLUDED
            self._ip_put(tables, network, match)
        for network in excl_nets:
            self._ip_put(tables, network, _EXCLUDED)
        self._ip_tables = {
            version: sorted(by_len.items(), key=lambda item: -item[0]) for version, by_len in tables.items()
        }
        self._ip_cache: dict[str, NameMatch | None] = {}

    @staticmethod
    def _ip_put(tables: dict, network: object, value: object) -> None:
        bits = network.max_prefixlen
        key = int(network.network_address) >> (bits - network.prefixlen)
        tables[network.version].setdefault(network.prefixlen, {})[key] = value

    def ip_rule_ranges(self) -> list[tuple[int, int, int]]:
        """(version, first, last) address of every network an address rule covers, exclusions ignored.

        A superset of the addresses match_ip() reports, for a pre-filter (the C core admits the SYNs
        of connections to them at once); match_ip() stays the verdict.
        """
        ranges = []
        for version, by_len in self._ip_tables.items():
            bits = 32 if version == 4 else 128
            for prefixlen, table in by_len:
                span = bits - prefixlen
                for key, hit in table.items():
                    if hit is not _EXCLUDED:
                        first = key << span
                        ranges.append((version, first, first | ((1 << span) - 1)))
        return ranges

    def rule_match(self, key: tuple[str, str]) -> NameMatch:
        """The verdict a rule (by its match type + pattern key) reports when it wins."""
        return self._matches[key]

    # -- matching ------------------------------------------------------------------------------
    def match_name(self, name: str) -> NameMatch | None:
        """Verdict for an already normalised name; None when no rule covers it or it is excluded.

        Most specific wins: an exact rule for the whole name, else the longest matching suffix rule.
        Exclusions were folded into the table, so they beat everything.
        """
        tree = self._tree
        best = None
        dot = name.rfind(".")
        while True:
            entry = tree.get(name[dot + 1 :])
            if entry is None:
                break
            if dot < 0:  # the whole name: an exact rule beats a suffix rule on the same name
                hit = entry[1] if entry[1] is not None else entry[0]
                if hit is not None:
                    best = hit
                break
            if entry[0] is not None:
                best = entry[0]
            if not entry[2]:
                break
            dot = name.rfind(".", 0, dot)
        if best is None or best is _EXCLUDED:
            return None
        return best  # type: ignore[return-value]

    def match_ip(self, ip: str) -> NameMatch | None:
        """Verdict for an IPv4/IPv6 address text; None for no rule, an exclusion or a bad address.

        Every new connection asks this, mostly for the same few servers, so the verdicts of the
        most recent addresses are cached (bounded; a reload builds a new set and a new cache).
        """
        cache = self._ip_cache
        if ip in cache:
            return cache[ip]
        verdict = self._match_ip(ip)
        if len(cache) >= _IP_CACHE_SIZE:
            cache.clear()
        cache[ip] = verdict
        return verdict

    def _match_ip(self, ip: str) -> NameMatch | None:
        try:
            address = ipaddress.ip_address(ip)
        except (ValueError, TypeError):
            return None
        value = int(address)
        bits = address.max_prefixlen
        for prefixlen, table in self._ip_tables[address.version]:
            hit = table.get(value >> (bits - prefixlen))
            if hit is not None:
                return None if hit is _EXCLUDED else hit  # type: ignore[return-value]
        return None

    def encrypted_dns_resolver(self, name: str) -> str | None:
        """The resolver pattern when `name` (normalised) is a known DoH/DoT service name."""
        hit = self._res_exact.get(name)
        if hit is not None:
            return hit
        for candidate in _suffix_chain(name):
            hit = self._res_suffix.get(candidate)
            if hit is not None:
                return hit
        return None

    # -- explaining ----------------------------------------------------------------------------
    def explain(self, name_or_ip: str) -> Explanation:
        """Every rule and exclusion that covers the query, and which one won."""
        text = name_or_ip.strip() if isinstance(name_or_ip, str) else ""
        try:
            address = ipaddress.ip_address(text.strip("[]"))
        except ValueError:
            address = None
        if address is not None:
            return self._explain_ip(text, address)
        normalized = normalize_name(text)
        candidates: list[NameMatch] = []
        excluded: list[Exclusion] = []
        exact_rule = self._matches.get(("exact", normalized))
        if exact_rule is not None:
            candidates.append(exact_rule)
        exact_excl = self.exclusions.get(("exact", normalized))
        if exact_excl is not None:
            excluded.append(exact_excl)
        for candidate in _suffix_chain(normalized) if normalized else ():
            rule = self._matches.get(("suffix", candidate))
            if rule is not None:
                candidates.append(rule)
            excl = self.exclusions.get(("suffix", candidate))
            if excl is not None:
                excluded.append(excl)
        return Explanation(
            query=name_or_ip, normalized=normalized, kind="name", winner=self.match_name(normalized),
            candidates=tuple(candidates), exclusions=tuple(excluded),
            resolver=self.encrypted_dns_resolver(normalized),
        )

    def _explain_ip(self, query: str, address: object) -> Explanation:
        covering = [
            r for r in self.rules.values()
            if r.network is not None and r.network.version == address.version and address in r.network
        ]
        covering.sort(key=lambda r: -r.network.prefixlen)
        excluded = tuple(
            e for e in self.exclusions.values()
            if e.network is not None and e.network.version == address.version and address in e.network
        )
        return Explanation(
            query=query, normalized=str(address), kind="ip", winner=self.match_ip(str(address)),
            candidates=tuple(self._matches[r.key] for r in covering), exclusions=excluded, resolver=None,
        )

    # -- summaries -----------------------------------------------------------------------------
    def rule_counts(self) -> dict[str, dict[str, int]]:
        """Per app id (and "(vendor)" for vendor-contact rules): rule count per confidence tier."""
        counts: dict[str, dict[str, int]] = {}
        for rule in self.rules.values():
            for owner in rule.apps or ("(vendor)",):
                tiers = counts.setdefault(owner, {"high": 0, "medium": 0, "low": 0})
                tiers[rule.confidence] += 1
        return counts
