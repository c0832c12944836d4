"""Signature loading, validation, name normalisation and matching.

The pipeline uses::

    from netwatch.signatures import load_signature_set, SignatureSet, NameMatch, SignatureError, normalize_name
"""

from __future__ import annotations

from .errors import Diagnostic, SignatureError
from .loader import bundled_signatures_dir, collect, load_signature_set
from .matcher import SignatureSet
from .model import App, Exclusion, Explanation, NameMatch, Policy, Resolver, Rule
from .names import display_name, normalize_name

__all__ = [
    "App",
    "Diagnostic",
    "Exclusion",
    "Explanation",
    "NameMatch",
    "Policy",
    "Resolver",
    "Rule",
    "SignatureError",
    "SignatureSet",
    "bundled_signatures_dir",
    "collect",
    "display_name",
    "load_signature_set",
    "normalize_name",
]
