"""`TextPieces`: runs of small deltas are joined, large ones kept, the text never changed."""

from __future__ import annotations

import random

from llmx_sync._pieces import _RUN, _SMALL, TextPieces


def _pieces_of(deltas: list[str], compact_every: int) -> TextPieces:
    pieces = TextPieces()
    for n, delta in enumerate(deltas, 1):
        pieces.append(delta)
        if n % compact_every == 0:
            pieces.compact()
    pieces.compact()
    return pieces


def test_a_run_of_tiny_deltas_becomes_one_string() -> None:
    pieces = _pieces_of(["ab"] * (_RUN * 3 + 5), 1)
    assert "".join(pieces) == "ab" * (_RUN * 3 + 5)
    assert len(pieces) == 3 + 5  # three joined runs, then the 5 deltas of an unfinished run


def test_large_deltas_are_kept_as_the_same_objects() -> None:
    deltas = ["x" * (_SMALL * 2) + str(n) for n in range(_RUN * 2)]
    pieces = _pieces_of(deltas, 7)
    assert len(pieces) == len(deltas)
    assert all(a is b for a, b in zip(pieces, deltas, strict=True))


def test_the_pieces_do_not_depend_on_when_compact_is_called() -> None:
    rng = random.Random(5)
    deltas = [("y" * rng.choice([1, 3, 40, 500])) for _ in range(_RUN * 6)]
    shapes = {tuple(_pieces_of(deltas, every)) for every in (1, 13, _RUN, len(deltas))}
    assert len(shapes) == 1
    assert "".join(shapes.pop()) == "".join(deltas)
