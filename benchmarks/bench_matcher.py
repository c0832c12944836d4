"""Matcher throughput and overlay load time.

Usage: PYTHONPATH=. python benchmarks/bench_matcher.py [--names N] [--overlay-rules N]

Prints names/s through SignatureSet.match_name (uncached: every call walks the dicts) for the bundled set
and for the bundled set plus a generated overlay, and the time to load that overlay. The overlay is written
three times into a temporary directory, so every load time is visible: as one rule group with a
`patterns:` list (the form for bulk feeds), with file-level `defaults` and one flow mapping per rule,
and with every rule spelling out all its keys.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from netwatch.signatures import load_signature_set, normalize_name

_SOURCE = "https://example.org/generated-feed"

# A realistic mix: hits at several depths, shared-vendor names, and misses (most traffic is not banned).
_SAMPLE = [
    "api.mch.weixin.qq.com", "short.weixin.qq.com", "hkextshort.weixin.qq.com", "mobilegw.alipay.com",
    "v.qq.com", "mail.qq.com", "g.alicdn.com", "www.google.com", "clients4.google.com", "example.com",
    "cdn.jsdelivr.net", "a.b.c.d.e.f.example.org", "msfwifi.3g.qq.com", "api.dalyfeds.com", "www.wps.cn",
    "static.intsig.net", "login.microsoftonline.com", "www.bbc.co.uk", "devmate.com", "x.y.z.vmate.com",
]


def _names(count: int) -> list[str]:
    rng = random.Random(7)
    names = []
    for i in range(count):
        base = _SAMPLE[i % len(_SAMPLE)]
        names.append(f"h{rng.randrange(1000)}.{base}" if i % 3 == 0 else base)
    return names


def _throughput(match, names: list[str]) -> float:
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for name in names:
            match(name)
        elapsed = time.perf_counter() - start
        best = max(best, len(names) / elapsed)
    return best


def _write_overlay(directory: Path, rules: int, *, form: str) -> None:
    lines = ["kind: rules", "vendor: Example", "description: generated benchmark overlay"]
    patterns = [f"host{i}.zone{i % 997}.example" for i in range(rules)]
    if form == "patterns":
        lines += ["rules:", "  - match: suffix", "    apps: []", "    confidence: low", "    role: web",
                  f"    sources: [{_SOURCE}]", "    patterns:"]
        lines += [f"      - {p}" for p in patterns]
    elif form == "defaults":
        lines += ["defaults:", "  apps: []", "  confidence: low", "  role: web", f"  sources: [{_SOURCE}]", "rules:"]
        lines += [f"  - {{match: suffix, pattern: {p}}}" for p in patterns]
    else:
        lines.append("rules:")
        lines += [
            f"  - {{match: suffix, pattern: {p}, apps: [], vendor: Example, confidence: low, role: web, "
            f"sources: [{_SOURCE}]}}"
            for p in patterns
        ]
    (directory / "overlay.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=300_000)
    parser.add_argument("--overlay-rules", type=int, default=100_000)
    args = parser.parse_args()

    start = time.perf_counter()
    bundled = load_signature_set()
    print(f"bundled set {bundled.label}: {len(bundled.rules)} rules, loaded in {time.perf_counter() - start:.3f} s")
    names = [normalize_name(n) for n in _names(args.names)]
    print(f"bundled, match_name (uncached): {_throughput(bundled.match_name, names):,.0f} names/s")
    raw = _names(args.names // 3)
    rate = _throughput(lambda n: bundled.match_name(normalize_name(n)), raw)
    print(f"bundled, normalize_name + match_name: {rate:,.0f} names/s")

    with tempfile.TemporaryDirectory(prefix="netwatch-bench-") as tmp:
        for form, label in (("patterns", "one group with a patterns list"),
                            ("defaults", "file defaults + one mapping per rule"),
                            ("full", "every key on every rule")):
            overlay = Path(tmp) / form
            overlay.mkdir()
            _write_overlay(overlay, args.overlay_rules, form=form)
            start = time.perf_counter()
            sigset = load_signature_set([overlay])
            load = time.perf_counter() - start
            print(f"overlay {args.overlay_rules:,} rules, {label}: loaded in {load:.3f} s "
                  f"({len(sigset.rules):,} rules in set)")
        mixed = names[: len(names) // 2] + [f"host{i}.zone{i % 997}.example" for i in range(len(names) // 2)]
        print(f"bundled + overlay, match_name (uncached): {_throughput(sigset.match_name, mixed):,.0f} names/s")


if __name__ == "__main__":
    main()
