"""Read a YAML signature file into plain dicts and lists that remember their line numbers.

PyYAML's composer resolves every plain scalar through a chain of regular expressions in Python,
which made a 100,000-rule overlay take over ten seconds. Signature files need only strings, a few
booleans and integers, so this module walks libyaml's event stream (the C parser when present,
``yaml.SafeLoader``'s parser otherwise) and builds the containers itself. Nothing is ever
constructed from tags, so arbitrary Python objects cannot be created: the safe loader's guarantee.

Even libyaml's event objects cost about a microsecond each, and a rule written as one flow mapping
per line (``- {match: suffix, pattern: a.example, ...}``) is 6-20 events. So such lines are read
with one regular expression each and replaced by an alias placeholder before libyaml sees the
text; libyaml still parses the document structure. The shortcut only ever accepts: any doubt (a
placeholder not met exactly where its line was, a duplicate key, any error) re-parses the original
text event by event, so results and FILE:LINE errors are those of the plain walk.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from yaml import events as ev

from .errors import SignatureError

try:
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _Loader = yaml.SafeLoader

_INT_RE = re.compile(r"[-+]?[0-9]+")
_MISSING = object()
# YAML 1.1 core-schema plain scalars that are not strings (the subset signature files use).
_SPECIAL_PLAIN: dict[str, object] = {
    "": None, "~": None, "null": None, "Null": None, "NULL": None,
    "true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False,
}
_NUMERIC_START = frozenset("+-0123456789")

# -- one-line flow mapping shortcut ----------------------------------------------------------
# A deliberately narrow subset of YAML flow syntax: plain scalars of "safe" characters (a ':' only
# inside, followed by '/' or an alphanumeric, as in URLs), keys that are identifiers, values that
# are such scalars or flow lists of them, the whole mapping on one block-sequence line.
_FLOW_CHARS = "[A-Za-z0-9_./@+~=%-]"
_FLOW_SCALAR = rf"[A-Za-z0-9_]{_FLOW_CHARS}*(?::[A-Za-z0-9_/]{_FLOW_CHARS}*)*"
_FLOW_VALUE = rf"(?:{_FLOW_SCALAR}|\[ *(?:{_FLOW_SCALAR}(?: *, *{_FLOW_SCALAR})*)? *\])"
_FLOW_PAIR = rf"([A-Za-z_][A-Za-z0-9_]*): +({_FLOW_VALUE})"
_FLOW_LINE_RE = re.compile(r"^( *- +)\{([^{}\n]*)\}(?: +#[^\n]*)? *$", re.MULTILINE)
_FLOW_BODY_RE = re.compile(rf" *{_FLOW_PAIR}(?: *, *{_FLOW_PAIR})* *")
_FLOW_SPLIT_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*): +(\[[^\]]*\]|[^, ]+)")
_LIST_SPLIT_RE = re.compile(r" *, *")
_PLACEHOLDER = "nwflow_"  # alias name prefix; the shortcut is skipped if the text contains it
_SHORTCUT_MIN_LINES = 64  # below this the plain walk is as fast and one code path is simpler


class _ShortcutFailed(Exception):
    """The shortcut met something it cannot vouch for; the caller re-parses the original text."""


class LineMap(dict):
    """A YAML mapping; `line` is where it starts, `key_lines[key]` where each key is (1-based)."""

    __slots__ = ("column", "key_lines", "line")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.column = -1  # 0-based column of the opening '{'; only the flow-line shortcut sets it
        self.key_lines: dict[str, int] = {}

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list):
    """A YAML sequence; `line` is where it starts, `item_lines[i]` where item i starts."""

    __slots__ = ("item_lines", "line")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.item_lines: list[int] = []


def _plain_value(text: str) -> object:
    value = _SPECIAL_PLAIN.get(text, _MISSING)
    if value is not _MISSING:
        return value
    if text[0] in _NUMERIC_START and _INT_RE.fullmatch(text):
        return int(text)
    return text


def _flow_list(raw: str, line: int) -> LineList:
    items = LineList(line)
    body = raw[1:-1].strip(" ")
    if body:
        items.extend([_plain_value(item) for item in _LIST_SPLIT_RE.split(body)])
        items.item_lines = [line] * len(items)
    return items


def _flow_mapping(inner: str, line: int, column: int) -> LineMap | None:
    """The LineMap of one shortcut line's `{...}` body, or None when the shortcut cannot read it."""
    if _FLOW_BODY_RE.fullmatch(inner) is None:
        return None
    pairs = _FLOW_SPLIT_RE.findall(inner)  # only ever run on a body the strict pattern accepted
    node = LineMap(line)
    node.update([(key, _flow_list(raw, line) if raw[0] == "[" else _plain_value(raw)) for key, raw in pairs])
    if len(node) != len(pairs):
        return None  # a duplicate key: the plain walk reports it
    node.column = column
    node.key_lines = dict.fromkeys(node, line)
    return node


def _substitute_flow_lines(text: str) -> tuple[str, dict[str, LineMap]]:
    """Replace each shortcut line's `{...}` by an alias placeholder; return the text and the maps."""
    maps: dict[str, LineMap] = {}
    if _PLACEHOLDER in text or "\r" in text:
        return text, maps
    pieces: list[str] = []
    done = 0
    line = 1
    for found in _FLOW_LINE_RE.finditer(text):
        start = found.start()
        line += text.count("\n", done, start)
        node = _flow_mapping(found.group(2), line, len(found.group(1)))
        if node is None:  # valid YAML the shortcut does not read (or a duplicate key): leave it
            continue
        name = f"{_PLACEHOLDER}{len(maps)}"
        maps[name] = node
        pieces.append(text[done:start])
        pieces.append(f"{found.group(1)}*{name}")
        done = found.end()
    if len(maps) < _SHORTCUT_MIN_LINES:
        return text, {}
    pieces.append(text[done:])
    return "".join(pieces), maps


def parse_yaml(text: str, path: str) -> object:
    """Parse one YAML document; raise SignatureError(path, line, message) on anything odd."""
    try:
        shortened, placeholders = _substitute_flow_lines(text)
        if placeholders:
            return _walk(shortened, path, placeholders)
    except (_ShortcutFailed, SignatureError):
        pass  # the plain walk below reports the real problem (or proves there is none)
    return _walk(text, path, {})


def _walk(text: str, path: str, placeholders: dict[str, LineMap]) -> object:
    """Build containers from libyaml's events; an alias named in `placeholders` stands for its map."""
    stack: list[list] = []  # frames: [container, is_map, pending_key, pending_key_line]
    root: object = None
    documents = 0
    loader = _Loader(text)
    get_event = loader.get_event
    scalar_event = ev.ScalarEvent
    plain_value = _plain_value
    try:
        while True:
            event = get_event()
            kind = type(event)
            if kind is scalar_event:
                line = event.start_mark.line + 1
                implicit = event.implicit
                if event.tag is not None and not (implicit[0] or implicit[1]):
                    raise SignatureError(path, line, f"YAML tags are not supported ({event.tag})")
                value = plain_value(event.value) if implicit[0] and not event.style else event.value
                if not stack:
                    root = value
                    continue
                frame = stack[-1]
                if frame[1]:
                    if frame[2] is None:
                        if not isinstance(value, str):
                            value = event.value
                        if value in frame[0]:
                            raise SignatureError(path, line, f"duplicate key {value!r} in this mapping")
                        frame[2] = value
                        frame[3] = line
                        continue
                    frame[0][frame[2]] = value
                    frame[0].key_lines[frame[2]] = frame[3]
                    frame[2] = None
                else:
                    frame[0].append(value)
                    frame[0].item_lines.append(line)
            elif kind is ev.MappingStartEvent or kind is ev.SequenceStartEvent:
                line = event.start_mark.line + 1
                if event.tag is not None and not event.implicit:
                    raise SignatureError(path, line, f"YAML tags are not supported ({event.tag})")
                if event.anchor is not None:
                    raise SignatureError(path, line, "YAML anchors and aliases are not supported")
                container = LineMap(line) if kind is ev.MappingStartEvent else LineList(line)
                if stack and stack[-1][1] and stack[-1][2] is None:
                    raise SignatureError(path, line, "mapping keys must be plain strings")
                stack.append([container, kind is ev.MappingStartEvent, None, 0])
            elif kind is ev.MappingEndEvent or kind is ev.SequenceEndEvent:
                container = stack.pop()[0]
                if not stack:
                    root = container
                    continue
                frame = stack[-1]
                if frame[1]:
                    frame[0][frame[2]] = container
                    frame[0].key_lines[frame[2]] = frame[3]
                    frame[2] = None
                else:
                    frame[0].append(container)
                    frame[0].item_lines.append(container.line)
            elif kind is ev.AliasEvent:
                if not placeholders:
                    raise SignatureError(path, event.start_mark.line + 1,
                                         "YAML anchors and aliases are not supported")
                mark = event.start_mark
                node = placeholders.pop(event.anchor, None)
                if node is None or node.line != mark.line + 1 or node.column != mark.column or not stack:
                    raise _ShortcutFailed
                frame = stack[-1]
                if frame[1]:
                    raise _ShortcutFailed  # only ever written as a sequence item
                frame[0].append(node)
                frame[0].item_lines.append(node.line)
            elif kind is ev.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise SignatureError(path, event.start_mark.line + 1, "only one YAML document per file")
            elif kind is ev.StreamEndEvent:
                break
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "invalid YAML"
        raise SignatureError(path, line, f"YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise SignatureError(path, 1, f"YAML error: {exc}") from None
    finally:
        loader.dispose()
    if placeholders:  # one was not met as a node: it sat inside a scalar, so the text meant otherwise
        raise _ShortcutFailed
    return root


def read_yaml_file(path: Path) -> tuple[object, bytes]:
    """Return (parsed document, raw bytes); the bytes feed the set's content hash."""
    shown = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SignatureError(shown, 0, f"cannot read file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SignatureError(shown, line, "file is not valid UTF-8") from None
    return parse_yaml(text, shown), raw
