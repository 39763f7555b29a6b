"""Streaming: the growing token ids of one output, turned into the new text to show.

``generate(..., on_step=...)`` reports the settled ids of input 0's best output as they grow
(``textgen.decoding.search``); ``TextStream`` decodes them and hands each new piece of text to a
writer. Decoding the whole prefix each time (not token by token) keeps tokenizer rules right:
byte-level BPE pieces that end inside a UTF-8 character decode as U+FFFD and wait for the next
token; WordPiece spacing is the decoder's. No torch here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


class TextStream:
    """``stream(ids)`` writes what ``decode(ids)`` adds to the text written so far. ``lead`` is text
    the output re-spells first and the user never sees (token healing's backed-off remainder):
    nothing is written until the output has spelled it."""

    def __init__(self, decode: Callable[[Sequence[int]], str], write: Callable[[str], None], lead: str = "") -> None:
        self.decode, self.write, self.lead = decode, write, lead
        self.written = ""

    def __call__(self, ids: Sequence[int]) -> None:
        text = self.decode(ids).rstrip("\ufffd")
        if self.lead:
            if text.startswith(self.lead):
                text = text[len(self.lead) :]
            elif self.lead.startswith(text):
                return
        if len(text) > len(self.written) and text.startswith(self.written):
            self.write(text[len(self.written) :])
            self.written = text
