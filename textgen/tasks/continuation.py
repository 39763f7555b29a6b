"""Continuation: a prompt in, what follows it out (causal adapters).

Token healing (``textgen.decoding.healing``; on by default, ``heal=False`` turns it off): the
prompt's last, possibly partial, token is backed off and the output is constrained to re-spell the
removed text, so a prompt that ends inside a word continues the word. Only the continuation is
returned, never the prompt or the re-spelled remainder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textgen.tasks.base import Prepared, Task

if TYPE_CHECKING:
    from textgen.decoding.config import DecodingConfig


class ContinuationTask(Task):
    name = "continue"
    kind = "causal"
    summary = "Continue each text; prints only the continuation."
    default_model = "mini-zh-lm"
    # Sampling with a nucleus cut-off reads better than greedy text, which loops.
    defaults: ClassVar[dict[str, Any]] = {
        "do_sample": True,
        "top_p": 0.9,
        "repetition_penalty": 1.1,
        "max_new_tokens": 64,
    }
    options: ClassVar[dict[str, Any]] = {"heal": True}
    option_help: ClassVar[dict[str, str]] = {
        "heal": "Token healing: back off the prompt's last token and make the output re-create it, so a "
        "prompt that ends inside a word continues that word."
    }

    def vocabulary(self) -> Any:
        """The healing prefix index; building it walks the vocabulary (150k tokens for Qwen), so
        it is built once per model and shared by every run on it."""
        from textgen.decoding.healing import Vocabulary

        return self.model.cached("healing-vocabulary", lambda: Vocabulary(self.adapter.token_texts()))

    def prepare(self, texts: list[str], config: DecodingConfig) -> Prepared:
        from textgen.decoding.healing import heal

        enabled = self.settings["heal"]
        healed, constraint = heal(self.adapter, texts, enabled=enabled, vocab=self.vocabulary() if enabled else None)
        return Prepared(
            [h.context_ids for h in healed],
            [constraint] if constraint else [],
            lambda i, text: healed[i].strip(text),
            hidden_lead=[h.remainder for h in healed],
        )
