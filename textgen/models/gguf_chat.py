"""GGUF files (llama.cpp, ollama, LM Studio) as a model family: every task on one loaded file.

``load_gguf_model`` opens the file with llama.cpp (``textgen.models.gguf``) and, when its metadata
holds a chat template (``tokenizer.chat_template``), wraps it in ``GGUFChat``: the same
``ChatPrompts`` the Hugging Face chat adapter uses, with the template rendered in a sandboxed
Jinja environment (``textgen.models.chat_template``: the template is untrusted input). A GGUF file
without a template is a plain causal model (continue, search).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textgen.models.chat import ChatPrompts
from textgen.models.gguf import GGUFCausal, load_gguf

if TYPE_CHECKING:
    from textgen.models.families import LoadOptions
    from textgen.models.model_dir import ModelDir


class GGUFChat(ChatPrompts, GGUFCausal):
    """A GGUF chat model behind the step interface (raw text for continue and search, the task's
    prompt rendered with the file's own template for the others)."""

    def _tokens(self, text: str) -> list[int]:
        # Rendered templates hold special tokens as text (<|im_start|>): parse them as tokens.
        return self.tokenize(text, special=True) if text else []

    def source_ids(self, text: str) -> list[int]:
        # The input itself: its text never becomes a special token, whatever it holds.
        return self.tokenize(text) if text else []

    def render(self, messages: list[dict[str, str]]) -> str:
        return self.render_chat(messages, add_generation_prompt=True)

    def start(self, inputs: Any, max_new_tokens: int) -> Any:
        return super().start(self.fit_inputs(inputs, max_new_tokens), max_new_tokens)


def load_gguf_model(model_dir: ModelDir, options: LoadOptions) -> GGUFCausal:
    """The adapter of a ``.gguf`` file: ``GGUFChat`` when it has a chat template, else ``GGUFCausal``."""
    from textgen.models.gguf import read_metadata

    chat = bool(read_metadata(model_dir.path).get("tokenizer.chat_template"))
    adapter = load_gguf(model_dir.path, n_threads=options.threads, cls=GGUFChat if chat else GGUFCausal)
    if isinstance(adapter, GGUFChat):
        adapter._init_chat(adapter.bos_token_id if adapter.add_bos else None, set(adapter.special_ids))
        if adapter.bos_token_id is not None:
            # A file may name a BOS it does not add (Qwen: <|endoftext|>, which separates its training
            # documents): an empty raw text starts after it, as the Hugging Face Qwen does.
            adapter.doc_start = adapter.bos_token_id
    return adapter
