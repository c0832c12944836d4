"""Host name normalisation shared by the loader and the matcher.

Names reach the matcher from DNS, SNI and HTTP Host in presentation form (parsers render odd bytes
as ``\\DDD`` escapes). Signatures are written in lowercase A-label form, so every observed name is
brought into the same form once, here, and matching is then plain string comparison.
"""

from __future__ import annotations

import contextlib
import re

try:  # IDNA 2008 + UTS 46, as browsers do; the stdlib codec (IDNA 2003) is the fallback
    import idna

    _IDNA_ERRORS: tuple[type[BaseException], ...] = (idna.IDNAError, UnicodeError, ValueError, IndexError)

    def _to_ascii(name: str) -> str:
        return idna.encode(name, uts46=True, transitional=False).decode("ascii")

    def _to_unicode(label: str) -> str:
        return idna.decode(label)

except ImportError:  # pragma: no cover - idna is a declared dependency
    _IDNA_ERRORS = (UnicodeError, ValueError, IndexError)

    def _to_ascii(name: str) -> str:
        return name.encode("idna").decode("ascii")

    def _to_unicode(label: str) -> str:
        return label.encode("ascii").decode("idna")

# Longer inputs cannot be host names (RFC 1035: 255 octets on the wire); they are only lowercased,
# so a hostile 1 MB "name" costs one pass over it and never reaches the IDNA codec.
MAX_IDNA_INPUT = 1024

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_LABEL_RE = re.compile(_LABEL)
_HOSTNAME_RE = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")


def normalize_name(raw: str) -> str:
    """Lowercase, drop trailing dots, convert IDN U-labels to A-labels (punycode).

    Never raises. A name the IDNA codec rejects is kept as its lowercase text (minus trailing
    dots), so matching still works on the ASCII parts and nothing is lost for display.
    ``\\DDD`` presentation escapes are ASCII and pass through unchanged.
    """
    if not isinstance(raw, str):
        return ""
    name = raw.lower()
    if name.isascii():
        return name.rstrip(".")
    if len(name) > MAX_IDNA_INPUT:
        return name.rstrip(".")
    try:
        # UTS 46 mapping also folds the ideographic full stops (U+3002, U+FF0E, U+FF61) to '.'.
        encoded = _to_ascii(name.rstrip("."))
    except _IDNA_ERRORS:
        return name.rstrip(".")
    return encoded.rstrip(".")


def host_name_tail(name: str) -> str | None:
    """The part of a normalised name after its last label that holds a `\\` escape.

    Names from the wire keep their odd bytes as `\\DDD` / `\\X` escapes (DNS tunnels, hostile
    input); such a label is not a host-name label, and its escape text must not be read as label
    separators (`x\\.alipay.com` is the two labels `x.alipay` and `com`). None when no label after
    the last escape is left.
    """
    position, escape_end = 0, -1
    while (position := name.find("\\", position)) >= 0:
        position += 4 if name[position + 1 : position + 2].isdigit() else 2
        escape_end = position
    if escape_end < 0:
        return name
    dot = name.find(".", escape_end)
    return name[dot + 1 :] or None if dot >= 0 else None


def display_name(normalized: str) -> str:
    """Render an A-label name in Unicode for people; fall back to the input on any failure."""
    if "xn--" not in normalized:
        return normalized
    labels = []
    for label in normalized.split("."):
        if label.startswith("xn--"):
            with contextlib.suppress(*_IDNA_ERRORS):
                label = _to_unicode(label)
        labels.append(label)
    return ".".join(labels)


def hostname_problem(pattern: str, *, min_labels: int = 1) -> str | None:
    """Why `pattern` is not a valid host name in normalised form, or None when it is.

    Underscores are accepted because real service names use them (``_dmarc``, SRV owners).
    """
    if len(pattern) <= 253 and _HOSTNAME_RE.fullmatch(pattern) and pattern.count(".") + 1 >= min_labels:
        return None  # the common case: one regex, no per-label work
    if not pattern:
        return "empty host name"
    if len(pattern) > 253:
        return f"host name longer than 253 characters ({len(pattern)})"
    if pattern.startswith("*"):
        return "wildcards are not allowed; use `match: suffix` with the parent name"
    if pattern.endswith(".") or pattern.startswith("."):
        return "host name must not start or end with a dot"
    labels = pattern.split(".")
    if len(labels) < min_labels:
        return f"pattern needs at least {min_labels} labels (a bare top-level domain matches too much)"
    for label in labels:
        if not _LABEL_RE.fullmatch(label):
            return f"invalid label {label!r} (letters, digits, '-', '_'; 1-63 characters; no edge '-')"
    return None
