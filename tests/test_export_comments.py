"""Signature text (app names, notes, overlay paths) reaches every export as comments: a line break
in it must not end the comment and add a zone record or resolver directive of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from netwatch.export import FORMATS, ExportOptions, Selection, build_plan
from netwatch.signatures import load_signature_set

REPO = Path(__file__).resolve().parents[1]
LINEBREAKS = REPO / "tests" / "data" / "export-linebreaks"
SMUGGLED = ("$INCLUDE", "$ORIGIN", 'local-zone: "com."', "address=/#/", "server=/#/", "||*^")


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_line_breaks_in_signature_text_stay_in_comments(fmt: str) -> None:
    sigset = load_signature_set(overlay_dirs=(LINEBREAKS,))
    text = FORMATS[fmt](build_plan(sigset, Selection("eo13971", "medium")), ExportOptions()).text
    assert "linebreak.netwatch-export-test.org" in text
    lines = [line.strip() for line in text.splitlines()]
    assert not [line for line in lines if line.startswith(SMUGGLED)]
    assert not [line for line in lines if "\r" in line]
