"""Traditional Chinese passages: the model reads simplified text, users get their own script back.

The model was trained on simplified Chinese (DRCD was converted with OpenCC ``t2s``). A passage
with traditional characters is converted for the model; because answers must be spans of the
passage the user gave, the conversion has to keep every character at its offset. OpenCC's ``t2s``
does so in practice (checked on all 1,000 DRCD dev passages, 449k characters: no length changed);
when it would not, each character is converted on its own, which cannot shift offsets. Generated
questions go back to traditional characters with ``s2t``.

Whether a passage is traditional is decided on the whole passage, never by one character: a
simplified passage holding one character that ``t2s`` changes (於 as a surname, a rare variant)
is read as it is, and its questions stay simplified. A passage is traditional when at least
``MIN_CHANGED`` of its Chinese characters change and they are at least ``MIN_SHARE`` of them
(traditional prose changes a fifth to a third of its characters), or, for a text too short for
that (an answer such as 圖書館), when at least half of its Chinese characters change.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache


MIN_CHANGED = 3  # Chinese characters t2s must change before a passage counts as traditional ...
MIN_SHARE = 0.05  # ... and the share of its Chinese characters they must be


@lru_cache(maxsize=2)
def _converter(config: str):
    import opencc

    return opencc.OpenCC(config).convert


@dataclass(frozen=True)
class Script:
    """A passage as the model reads it (``text``, character-aligned with ``original``)."""

    original: str
    text: str

    @property
    def traditional(self) -> bool:
        return self.text != self.original

    def question(self, question: str) -> str:
        """A generated question in the passage's own script."""
        return _converter("s2t")(question) if self.traditional else question


def simplify(passage: str) -> Script:
    """``passage`` in simplified characters, offsets unchanged, when it is written in traditional
    characters; else ``passage`` as it is (see the module docstring)."""
    t2s = _converter("t2s")
    text = t2s(passage)
    if len(text) != len(passage):
        text = "".join(c if len(c := t2s(ch)) == 1 else ch for ch in passage)
    return Script(passage, text if looks_traditional(passage, text) else passage)


def looks_traditional(original: str, converted: str) -> bool:
    """Whether ``original`` is written in traditional characters, judged by how many of its
    Chinese characters its character-aligned t2s conversion ``converted`` changes."""
    han = changed = 0
    for a, b in zip(original, converted):
        if _is_han(a):
            han += 1
            changed += a != b
    if not changed:
        return False
    return (changed >= MIN_CHANGED and changed >= MIN_SHARE * han) or 2 * changed >= han


def _is_han(ch: str) -> bool:
    """A CJK ideograph (the unified blocks and their extensions, and compatibility ideographs)."""
    cp = ord(ch)
    return 0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0xF900 <= cp <= 0xFAFF or 0x20000 <= cp <= 0x3134F
