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
    # copy: the title may only use tokens of the article (the "copy prior" of algorithms.md 1b, made
    # hard). Headlines mostly reuse the article's words, so a weak model gains a lot from it.
    options: ClassVar[dict[str, Any]] = {"copy": False}
    option_help: ClassVar[dict[str, str]] = {"copy": "Build the title only from tokens of the article (a hard copy constraint)."}

    def prepare(self, texts: list[str]) -> Prepared:
        inputs = [self.adapter.encode(t) for t in texts]
        if not self.settings["copy"]:
            return Prepared(inputs)
        from textgen.decoding.processors import AllowedTokens

        ends = set(self.adapter.eos_token_ids)
        allowed = [(set(ids) | ends) - {self.adapter.pad_token_id} for ids in inputs]
        return Prepared(inputs, [AllowedTokens(allowed, self.adapter.vocab_size)])
