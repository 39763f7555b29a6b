"""Traditional Chinese passages: the model reads simplified text, users get their own script back.

The model was trained on simplified Chinese (DRCD was converted with OpenCC ``t2s``). A passage
with traditional characters is converted for the model; because answers must be spans of the
passage the user gave, the conversion has to keep every character at its offset. OpenCC's ``t2s``
does so in practice (checked on all 1,000 DRCD dev passages, 449k characters: no length changed);
when it would not, each character is converted on its own, which cannot shift offsets. Generated
questions go back to traditional characters with ``s2t``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache


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
    """``passage`` in simplified characters, offsets unchanged (see the module docstring)."""
    t2s = _converter("t2s")
    text = t2s(passage)
    if len(text) != len(passage):
        text = "".join(c if len(c := t2s(ch)) == 1 else ch for ch in passage)
    return Script(passage, text)
