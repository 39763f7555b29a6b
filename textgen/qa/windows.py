"""Passage windows: what the model reads around an answer, and the tiles that cover a long passage.

The multitask model learned QA from windows of at most ``QA_WINDOW`` characters around the answer
(``qa_window``, which the multitask training uses too), so inference reads the same windows: a question is
asked from the window centred on its answer, and free generation samples answers from windows
(tiles) that cover the whole passage, so answers come from every part of a long passage. Offsets
are always kept in the whole passage.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

QA_WINDOW = 200  # passage characters around the answer (what the multitask model trains on)


def qa_window(passage: str, start: int, length: int, size: int = QA_WINDOW, rng: random.Random | None = None) -> tuple[str, int]:
    """At most ``size`` characters of ``passage`` holding the span ``[start, start+length)``; with
    ``rng`` the span sits at a random place in the window, else in its middle. Returns the window
    and the span's offset in it."""
    if len(passage) <= size:
        return passage, start
    room = max(size - length, 0)
    before = rng.randint(0, room) if rng else room // 2
    lo = max(0, min(start - before, len(passage) - size))
    return passage[lo : lo + size], start - lo



@dataclass(frozen=True)
class Window:
    """``text`` is ``passage[offset : offset + len(text)]``."""

    text: str
    offset: int


def answer_window(passage: str, start: int, length: int, size: int = QA_WINDOW) -> Window:
    """The window training would show for the answer at ``[start, start + length)``, centred on it."""
    text, local = qa_window(passage, start, length, size)
    return Window(text, start - local)


def tiles(passage: str, size: int = QA_WINDOW, overlap: int = QA_WINDOW // 4) -> list[Window]:
    """Windows of ``size`` characters covering ``passage``, neighbours sharing about ``overlap``
    characters (an answer cut by one tile's edge is whole in the next); one window when it fits."""
    if len(passage) <= size:
        return [Window(passage, 0)]
    count = math.ceil((len(passage) - overlap) / (size - overlap))
    span = len(passage) - size  # offsets run from 0 to span
    # The training window function, centred on evenly spaced points, places each tile.
    return [answer_window(passage, size // 2 + round(i * span / (count - 1)), 0, size) for i in range(count)]
