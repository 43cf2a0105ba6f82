"""`TextPieces`: a text kept as the deltas it arrived in, without a cost per tiny delta.

A model streams its answer in deltas of a few characters, and both the parser (for the
item it sends at the end of the text) and the accumulator (for the answer so far) keep
them. Kept one by one, each costs far more than its characters: in CPython a string
costs about 50 bytes beyond them, each list that holds it 8 more, and the `OutputText`
made of it at the end some 56 (measured: 256 MiB of 8-character deltas took 4.5 GiB).
So runs of small pieces are joined into one string, and the parser and the accumulator
each keep a compact copy (twice the text, at most); a large piece is kept as it is, one
object shared by the event, the parser and the accumulator, never copied.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

__all__ = ["TextPieces"]

# A piece shorter than this costs more in object overhead (about 120 bytes, see above)
# than a copy of its characters.
_SMALL: Final = 128
# How many small pieces in a row are joined into one string.
_RUN: Final = 256


class TextPieces:
    """The pieces of a text, in order: `append` each delta, iterate over the pieces or
    `join` them. Every `_RUN` small pieces in a row become one string, so the pieces are
    not always the deltas; their concatenation always is the text."""

    __slots__ = ("_pieces", "_small")

    def __init__(self) -> None:
        self._pieces: list[str] = []
        self._small = 0  # how many small pieces end the list

    def append(self, piece: str) -> None:
        pieces = self._pieces
        pieces.append(piece)
        if len(piece) >= _SMALL:
            self._small = 0
            return
        self._small += 1
        if self._small == _RUN:
            pieces[-_RUN:] = ["".join(pieces[-_RUN:])]
            self._small = 0

    def join(self) -> str:
        return "".join(self._pieces)

    def __iter__(self) -> Iterator[str]:
        return iter(self._pieces)

    def __len__(self) -> int:
        return len(self._pieces)
