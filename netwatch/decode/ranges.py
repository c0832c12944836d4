"""Byte ranges shared by IP fragment and TCP segment reassembly (first data wins)."""

from __future__ import annotations

Piece = tuple[int, int, bytes]  # (start, end, data), kept sorted by start


def uncovered(pieces: list[Piece], start: int, end: int) -> tuple[list[tuple[int, int]], list[Piece]]:
    """The parts of [start, end) no held piece covers, and the held pieces that overlap it.

    New data only fills the holes: what arrived first is kept (the "first" overlap policy of
    Snort/Suricata). The caller decides what an overlap means (counted always, or only when the
    bytes disagree).
    """
    cursor = start
    holes: list[tuple[int, int]] = []
    overlapping: list[Piece] = []
    for piece in pieces:
        piece_start, piece_end, _ = piece
        if piece_end <= cursor:
            continue
        if piece_start >= end:
            break
        overlapping.append(piece)
        if piece_start > cursor:
            holes.append((cursor, piece_start))
        cursor = max(cursor, piece_end)
        if cursor >= end:
            break
    if cursor < end:
        holes.append((cursor, end))
    return holes, overlapping
