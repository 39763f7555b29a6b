"""Answers that are spans of the passage, by construction.

``answer_constraint`` is the decoding constraint: the text-level copy constraint of
``textgen.decoding.copy`` with one piece (``TextCopy``, ``max_pieces=1``), so an answer can only be
one contiguous piece of its window's text, and a number in it is a whole number of the window.
``locate`` then finds that piece in the window the user gave. The constraint matches the text as
the tokenizer spells it (lowercased, accents and spaces dropped, a few characters replaced, e.g.
curly quotes), so the window is spelled the same way, character by character, keeping each
character's offset.
"""

from __future__ import annotations

from collections.abc import Sequence

from textgen.decoding.copy import TextCopy
from textgen.decoding.processors import LogitsProcessor
from textgen.models.adapters import BackboneSeq2Seq


def answer_constraint(adapter: BackboneSeq2Seq, windows: Sequence[str], max_new_tokens: int) -> LogitsProcessor:
    """Row i may only write one contiguous piece of ``windows[i]``, then the end token."""
    return TextCopy.for_adapter(adapter, windows, max_pieces=1, max_new_tokens=max_new_tokens)


def _spelled(adapter: BackboneSeq2Seq, window: str) -> tuple[str, list[int]]:
    """``window`` as its tokens spell it, and the offset in ``window`` of each spelled character.
    A character the vocabulary lacks ([UNK]) spells nothing: no answer can hold it."""
    tok = adapter.tokenizer
    spelling: dict[str, str] = {}
    chars, owner = [], []
    for i, ch in enumerate(window):
        if ch not in spelling:
            spelling[ch] = "".join(tok.token_text(t) for t in tok.encode(ch))
        for c in spelling[ch]:
            chars.append(c)
            owner.append(i)
    return "".join(chars), owner


# Clause punctuation and spaces at either end of a span are not part of an answer (brackets and
# quotes are: 《战国无双3》).
_LOOSE = " \t\n\r\u3000，。、；：！？,.;:!?"


def locate(adapter: BackboneSeq2Seq, window: str, ids: Sequence[int]) -> tuple[int, int] | None:
    """The span ``(lo, hi)`` of ``window`` that the answer tokens ``ids`` spell (their first
    occurrence) without clause punctuation at its ends, or None when they spell no piece of it
    (or only punctuation)."""
    answer = "".join(adapter.tokenizer.token_text(int(i)) for i in ids)
    spelled, owner = _spelled(adapter, window)
    at = spelled.find(answer) if answer else -1
    if at < 0:
        return None
    lo, hi = owner[at], owner[at + len(answer) - 1] + 1
    while lo < hi and window[lo] in _LOOSE:
        lo += 1
    while hi > lo and window[hi - 1] in _LOOSE:
        hi -= 1
    return (lo, hi) if lo < hi else None
