"""From what a user typed to a search problem: the initial state and the moves of each mode.

* **keywords**: ``图书馆 开放、市民`` (spaces, commas or 、 between keywords) or a list. The start
  is the keywords in the given order, each a locked segment, with an empty free segment before
  each and a locked final 。 (the reference code's start, algorithms.md 4.4): ``_ kw1 _ kw2 _ 。``.
* **infill**: the text with blanks. ``[MASK]`` and ``＿`` are one character each (fixed length,
  filled by Gibbs sampling with the masked LM); ``__`` (two or more ASCII underscores) is a blank
  of any length (filled by insert/delete/replace moves). Everything else is kept verbatim.
* **rewrite**: the text becomes free tokens, except the ``--keep`` words, which are locked.

Bad input raises ``SearchInputError`` with a one-line message (the task's error record).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from textgen.search.state import FIXED, FREE, LOCKED, Segment, State, free_count, token_ids

MODES = ("keywords", "infill", "rewrite")
CGMH_MOVES = {"insert": 1 / 3, "delete": 1 / 3, "replace": 1 / 3}
REWRITE_MOVES = {"insert": 1 / 3, "delete": 1 / 3, "mlm_replace": 1 / 3}
SEPARATORS = re.compile(r"[\s,，、]+")
BLANKS = re.compile(r"\[MASK\]|＿|__+", re.IGNORECASE)
END = "。"


class SearchInputError(ValueError):
    """The input cannot be searched; the message says why in one line."""


@dataclass
class Start:
    state: State
    moves: dict[str, float]
    warnings: list[str] = field(default_factory=list)


def split_keywords(text: str) -> list[str]:
    """Keywords separated by whitespace, commas (, or ，) or 、."""
    return [k for k in SEPARATORS.split(text) if k]


def _locked(encode, text: str, what: str, warnings: list[str], unk: int) -> Segment:
    tokens = tuple(encode(text))
    if unk in tokens:
        warnings.append(f"{what} {text!r} has characters the model does not know; it is kept as written, "
                        "but the model reads them as [UNK]")
    return Segment(LOCKED, tokens, text)


def keywords_start(keywords: Sequence[str], encode, unk: int) -> Start:
    if not keywords:
        raise SearchInputError("no keywords: give one or more, separated by spaces, commas or 、")
    warnings: list[str] = []
    segments: list[Segment] = []
    for kw in keywords:
        if not isinstance(kw, str) or not kw.strip():
            raise SearchInputError(f"keywords must be non-empty strings, not {kw!r}")
        seg = _locked(encode, kw.strip(), "keyword", warnings, unk)
        if not seg.tokens:
            raise SearchInputError(f"keyword {kw!r} has no characters the model can read")
        segments += [Segment(FREE, ()), seg]
    segments += [Segment(FREE, ()), Segment(LOCKED, tuple(encode(END)), END)]
    return Start(tuple(segments), dict(CGMH_MOVES), warnings)


def infill_start(text: str, encode, unk: int, mask: int) -> Start:
    warnings: list[str] = []
    segments: list[Segment] = []
    at = 0
    for m in BLANKS.finditer(text):
        if m.start() > at:
            segments.append(_locked(encode, text[at : m.start()], "text", warnings, unk))
        kind = FREE if m.group().startswith("_") else FIXED
        if kind == FIXED and segments and segments[-1].kind == FIXED:  # [MASK][MASK]: one 2-character blank
            segments[-1] = Segment(FIXED, (*segments[-1].tokens, mask))
        elif kind == FREE and segments and segments[-1].kind == FREE:
            pass  # ____ is one blank however it is matched
        else:
            segments.append(Segment(kind, (mask,) if kind == FIXED else ()))
        at = m.end()
    if at < len(text):
        segments.append(_locked(encode, text[at:], "text", warnings, unk))
    kinds = {s.kind for s in segments}
    if FIXED not in kinds and FREE not in kinds:
        raise SearchInputError("no blank to fill: mark blanks with [MASK] or ＿ (one character each) or __ (any length)")
    if FIXED in kinds and FREE in kinds:
        moves = {"gibbs": 0.5, **{k: v / 2 for k, v in CGMH_MOVES.items()}}
    else:
        moves = {"gibbs": 1.0} if FIXED in kinds else dict(CGMH_MOVES)
    return Start(tuple(segments), moves, warnings)


def rewrite_start(text: str, keep: Sequence[str], encode, unk: int) -> Start:
    warnings: list[str] = []
    words = sorted({k for k in keep if k}, key=len, reverse=True)
    missing = [w for w in words if w not in text]
    if missing:
        raise SearchInputError(f"--keep word(s) not in the text: {', '.join(missing)}")
    segments: list[Segment] = []
    at = 0
    if words:
        for m in re.finditer("|".join(map(re.escape, words)), text):
            segments.append(Segment(FREE, tuple(encode(text[at : m.start()]))))
            segments.append(_locked(encode, m.group(), "--keep word", warnings, unk))
            at = m.end()
    segments.append(Segment(FREE, tuple(encode(text[at:]))))
    state = tuple(segments)
    if not free_count(state):
        raise SearchInputError("nothing to rewrite: the text is only --keep words")
    return Start(state, dict(REWRITE_MOVES), warnings)


def check_length(state: State, limit: int, max_new: int) -> int:
    """The free tokens a chain may hold so that every sentence fits ``limit`` tokens; a start that
    does not fit at all is a ``SearchInputError``."""
    n = len(token_ids(state))
    if n > limit:
        raise SearchInputError(f"the input takes {n} tokens; the model reads at most {limit}")
    return free_count(state) + min(max_new, limit - n)
