"""Read a YAML signature file into plain dicts and lists that remember their line numbers.

PyYAML's composer resolves every plain scalar through a chain of regular expressions in Python,
which made a 100,000-rule overlay take over ten seconds. Signature files need only strings, a few
booleans and integers, so this module walks libyaml's event stream (the C parser when present,
``yaml.SafeLoader``'s parser otherwise) and builds the containers itself. Nothing is ever
constructed from tags, so arbitrary Python objects cannot be created: the safe loader's guarantee.
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


class LineMap(dict):
    """A YAML mapping; `line` is where it starts, `key_lines[key]` where each key is (1-based)."""

    __slots__ = ("key_lines", "line")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
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


def parse_yaml(text: str, path: str) -> object:
    """Parse one YAML document; raise SignatureError(path, line, message) on anything odd."""
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
                raise SignatureError(path, event.start_mark.line + 1, "YAML anchors and aliases are not supported")
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
