"""Title generation: an article in, a headline out (seq2seq adapters: UniLM backbone, T5, BART...)."""

from __future__ import annotations

from typing import Any, ClassVar

from textgen.tasks.base import Prepared, Task


class TitleTask(Task):
    name = "title"
    kind = "seq2seq"
    summary = "Write a headline for each article."
    # Beam search finds the likeliest short headline; no-repeat 3 stops the loops small models fall into.
    defaults: ClassVar[dict[str, Any]] = {"num_beams": 4, "no_repeat_ngram_size": 3, "max_new_tokens": 32}

    def prepare(self, texts: list[str]) -> Prepared:
        return Prepared([self.adapter.encode(t) for t in texts])
