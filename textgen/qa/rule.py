"""The rule baseline for answer-aware questions: the answer's sentence, the answer replaced by 什么.

"世界第二高山峰是乔戈里峰。" with the answer 乔戈里峰 becomes "世界第二高山峰是什么？". It needs no
model, reuses the passage's wording (which character ROUGE rewards) and is the floor a question
generator has to beat: about 27.6 character ROUGE-L on CMRC2018 questions (issue 12).
"""

from __future__ import annotations

import re

from textgen.qa.pairs import as_question

# A sentence ends after one of these (and any closing quotes or brackets that follow).
_END = re.compile(r"[。！？!?；;\n]+[”’」』）)]*")


def sentence_bounds(passage: str, start: int, end: int) -> tuple[int, int]:
    """The start and end offsets of the sentence(s) holding ``passage[start:end]``."""
    lo = 0
    for m in _END.finditer(passage, 0, start):
        lo = m.end()
    m = _END.search(passage, max(end, lo))
    return lo, (m.start() if m else len(passage))


def rule_question(passage: str, answer: str, start: int) -> str:
    """The answer's sentence with the answer replaced by 什么, ending in a question mark."""
    end = start + len(answer)
    lo, hi = sentence_bounds(passage, start, end)
    return as_question((passage[lo:start] + "什么" + passage[end:hi]).strip())
