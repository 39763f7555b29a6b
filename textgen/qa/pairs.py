"""Question-answer pairs, and what makes two of them the same.

Sampling answers several times per window returns the same likely spans again and again, and
different answers can get the same question. Two pairs are duplicates when their answers are the
same text (compared without case, spaces and punctuation), when their spans overlap by at least
half of the shorter answer (one place of the passage), or when their questions are near-identical:
character-level similarity (``difflib`` ratio, 2 x matched characters / total) of at least
``QUESTION_SIMILARITY``. Pairs are deduplicated best first, so the better of two duplicates stays;
an answer with no letters or digits at all (only punctuation) asks for nothing and is never kept.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Iterable

from textgen.output import QAPair

QUESTION_SIMILARITY = 0.8
QUESTION_MARKS = ("？", "?")


def core_text(text: str) -> str:
    """Text without case, whitespace, punctuation and symbols: what makes two answers the same."""
    return "".join(c for c in text.lower() if not (c.isspace() or unicodedata.category(c)[0] in "PS"))


def same_answer(a: str, b: str) -> bool:
    return core_text(a) == core_text(b)


def question_similarity(a: str, b: str) -> float:
    """Character-level similarity of two questions (0..1), question marks and spaces ignored."""
    return difflib.SequenceMatcher(None, core_text(a), core_text(b), autojunk=False).ratio()


def same_span(a: QAPair, b: QAPair) -> bool:
    """The answers overlap by at least half of the shorter one (nested or shifted pieces of one
    place in the passage: 四川 and 四川、陕西和甘肃三省)."""
    overlap = min(a.start + len(a.answer), b.start + len(b.answer)) - max(a.start, b.start)
    return overlap > 0 and 2 * overlap >= min(len(a.answer), len(b.answer))


def same_place(pair: QAPair, kept: Iterable[QAPair]) -> bool:
    """``pair``'s answer is one of ``kept``'s: the same text, or an overlapping span."""
    return any(same_answer(pair.answer, k.answer) or same_span(pair, k) for k in kept)


def is_duplicate(pair: QAPair, kept: Iterable[QAPair]) -> bool:
    """``pair`` duplicates one of ``kept``: the same answer (``same_place``) or a near-identical question."""
    kept = list(kept)
    return same_place(pair, kept) or any(question_similarity(pair.question, k.question) >= QUESTION_SIMILARITY for k in kept)


def as_question(text: str) -> str:
    """The generated text as a question: clause punctuation cut from both ends, and a question
    mark (full width, as the training questions use) at the end; empty when the text has no
    letters or digits (nothing was asked)."""
    text = text.strip().strip("。，、,.；;：:！!").strip()
    if not core_text(text):
        return ""
    return text if text.endswith(QUESTION_MARKS) else text + "？"
