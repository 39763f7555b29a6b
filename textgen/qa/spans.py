"""Answers that are spans of the passage, by construction.

``answer_constraint`` is the decoding constraint: the text-level copy constraint of
``textgen.decoding.copy`` with one piece (``TextCopy``, ``max_pieces=1``), so an answer can only be
one contiguous piece of its window's text, and a number in it is a whole number of the window.
``Spelling.locate`` then finds that piece in the window the user gave (``DecodedSpelling`` for a
byte-level BPE, whose decoded text is exactly the window's). The constraint matches the
text as the tokenizer spells it (lowercased, accents and spaces dropped, a few characters replaced,
e.g. curly quotes), so the window is spelled the same way, character by character, keeping each
character's offset.
"""

from __future__ import annotations

from collections.abc import Sequence

from textgen.decoding.copy import TextCopy
from textgen.decoding.processors import LogitsProcessor
from textgen.models.adapters import Adapter, BackboneSeq2Seq


def answer_constraint(adapter: Adapter, windows: Sequence[str], max_new_tokens: int) -> LogitsProcessor:
    """Row i may only write one contiguous piece of ``windows[i]``, then the end token."""
    return TextCopy.for_adapter(adapter, windows, max_pieces=1, max_new_tokens=max_new_tokens)


# Clause punctuation and spaces at either end of a span are not part of an answer (brackets and
# quotes are: 《战国无双3》).
_LOOSE = " \t\n\r\u3000，。、；：！？,.;:!?"


class Spelling:
    """A window as its tokens spell it, to find answers in it.

    ``text`` is the window spelled character by character as the tokenizer spells it (a character
    the vocabulary lacks spells nothing, so no answer holds it) and ``owner[j]`` the window offset of
    spelled character j. ``cuts`` are the window offsets where the window's own tokens start and
    end: the copy constraint lets a piece start inside a word (江堰 out of 都江堰), and such an answer
    is widened to the whole words it touches."""

    def __init__(self, adapter: BackboneSeq2Seq, window: str) -> None:
        tok = adapter.tokenizer
        self.window = window
        spelling: dict[str, str] = {}
        chars, owner = [], []
        for i, ch in enumerate(window):
            if ch not in spelling:
                spelling[ch] = "".join(tok.token_text(t) for t in tok.encode(ch))
            chars += spelling[ch]
            owner += [i] * len(spelling[ch])
        self.text, self.owner = "".join(chars), owner
        self.cuts = {0, len(window)}
        at = 0
        for t in tok.encode(window):
            piece = tok.token_text(t)
            if not self.text.startswith(piece, at):
                break  # the window's tokens spell it differently from its characters: no cuts beyond here
            if piece:
                self.cuts |= {owner[at], owner[at + len(piece) - 1] + 1}
            at += len(piece)

    def locate(self, adapter: BackboneSeq2Seq, ids: Sequence[int]) -> tuple[int, int] | None:
        """The span ``(lo, hi)`` of the window that the answer tokens ``ids`` spell: its first
        occurrence on token boundaries, else its first occurrence widened to them, without clause
        punctuation at its ends; None when they spell no piece of the window (or only punctuation)."""
        answer = "".join(adapter.tokenizer.token_text(int(i)) for i in ids)
        spans = []
        at = self.text.find(answer) if answer else -1
        while at >= 0:
            spans.append((self.owner[at], self.owner[at + len(answer) - 1] + 1))
            at = self.text.find(answer, at + 1)
        if not spans:
            return None
        aligned = [(lo, hi) for lo, hi in spans if lo in self.cuts and hi in self.cuts]
        lo, hi = aligned[0] if aligned else spans[0]
        lo, hi = max(c for c in self.cuts if c <= lo), min(c for c in self.cuts if c >= hi)
        return _trimmed(self.window, lo, hi)


class DecodedSpelling:
    """``Spelling`` for tokenizers that spell text exactly (byte-level BPE: Qwen, Llama 3, GPT-2):
    an answer's decoded text is found in the window as it is. Such tokens do not follow word
    boundaries, so an answer is not widened to them."""

    def __init__(self, window: str) -> None:
        self.window = window

    def locate(self, adapter: Adapter, ids: Sequence[int]) -> tuple[int, int] | None:
        answer = adapter.decode(ids)
        at = self.window.find(answer) if answer else -1
        return _trimmed(self.window, at, at + len(answer)) if at >= 0 else None


def _trimmed(window: str, lo: int, hi: int) -> tuple[int, int] | None:
    """``(lo, hi)`` without clause punctuation or spaces at its ends; None when nothing is left."""
    while lo < hi and window[lo] in _LOOSE:
        lo += 1
    while hi > lo and window[hi - 1] in _LOOSE:
        hi -= 1
    return (lo, hi) if lo < hi else None
