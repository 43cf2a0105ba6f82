"""`TextPieces`: a text kept as the deltas it arrived in, without a cost per tiny delta.

A model streams its answer in deltas of a few characters, and both the parser (for the
item it sends at the end of the text) and the accumulator (for the answer so far) keep
them. Kept one by one, each costs far more than its characters: in CPython a string
costs about 50 bytes beyond them, each list that holds it 8 more, and the `OutputText`
made of it at the end some 56 (measured: 256 MiB of 8-character deltas took 4.5 GiB).
So every run of `_RUN` deltas that are small on average is joined into one string, and
the parser and the accumulator each keep a compact copy (twice the text, at most); large
deltas are kept as they are, one object shared by the event, the parser and the
accumulator, never copied. The runs are counted in deltas from the start, so the pieces
depend on the deltas alone, never on how the body was split into reads.
"""

from __future__ import annotations

from typing import Final

__all__ = ["TextPieces"]

# Deltas shorter than this on average cost more in object overhead (about 120 bytes, see
# above) than a copy of their characters.
_SMALL: Final = 128
# How many deltas in a row make a run, joined when they are small on average.
_RUN: Final = 256


class TextPieces(list[str]):
    """The pieces of a text, in order: a list whose `append` is the list's own (the
    per-delta cost stays C's). `compact`, called once per read or batch, joins each
    complete run of `_RUN` pieces appended since the runs before it when they are small
    on average. The concatenation of the pieces is always the text."""

    __slots__ = ("_compacted",)

    def __init__(self) -> None:
        super().__init__()
        self._compacted = 0  # where the next run starts

    def compact(self) -> None:
        start = self._compacted
        while len(self) - start >= _RUN:
            run = self[start:start + _RUN]
            if sum(map(len, run)) < _SMALL * _RUN:
                self[start:start + _RUN] = ["".join(run)]
                start += 1
            else:
                start += _RUN
        self._compacted = start
