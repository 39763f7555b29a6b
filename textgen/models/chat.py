"""Any chat LLM a user has drives every task: the prompt-rendering half of a chat adapter.

A chat model is a causal model plus a chat template. ``ChatPrompts`` is what both chat families
share (Hugging Face directories here, GGUF files in ``textgen.models.gguf_chat``): the task hands it
a ``Prompt`` (``textgen.prompts``; the task owns its prompts, so one loaded model serves every task)
and the values to fill in, and gets the ids of the rendered prompt followed by the prompt's
``answer_start``. ``encode(text)`` stays the raw text (continue, search). The input's place inside
the prompt is remembered, so a prompt longer than the window is cut inside the input text, never in
the instructions or the template's generation prompt (``fit_prompt``).

``ChatAdapter`` is ``HFCausal`` (left padding, KV cache, ``generate()``'s positions, so greedy and
beam output are token-identical to ``generate()``) plus ``ChatPrompts`` over the tokenizer's own
template (``apply_chat_template``, which transformers renders in a sandboxed Jinja environment).
Loading reads local files only and never runs remote code.

* ``adapter.encode_prompt(prompt, text=..., answer=..., question=...)``: the ids of a prompt.
* ``adapter.source_ids(text)``: the input's own tokens, without template or instructions. Build
  token-level copy or span constraints from these (or from the text), never from a prompt's ids.
* ``is_chat(adapter)``: whether an adapter renders prompts (duck-typed).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from textgen.models.adapters import HFCausal, hf_model, hf_tokenizer, special_ids

if TYPE_CHECKING:
    from textgen.models.families import LoadOptions
    from textgen.models.model_dir import ModelDir
    from textgen.prompts import Prompt

# Stands for the input while a template is rendered, so the input's place in the prompt is known.
_SLOT = "\ue000TEXTGEN\ue001"


def load_chat(model_dir: ModelDir, options: LoadOptions) -> ChatAdapter:
    """The chat adapter over a Hugging Face directory whose tokenizer has a chat template."""
    model = hf_model(model_dir.path, "causal", options)
    return ChatAdapter(model, hf_tokenizer(model_dir.path), model_dir.name, options.device)


def is_chat(adapter: Any) -> bool:
    return hasattr(adapter, "encode_prompt")


class ChatPrompts:
    """Prompt rendering for chat models. The host class calls ``_init_chat`` once it knows its
    tokens, and provides ``_tokens(text)`` (ids of plain text, no specials), ``render(messages)``
    (the template with the generation prompt), ``input_limit`` and ``eos_token_ids``."""

    _tokens: Callable[[str], list[int]]

    def render(self, messages: list[dict[str, str]]) -> str:
        raise NotImplementedError

    def _init_chat(self, bos_id: int | None, special: set[int]) -> None:
        # Raw text starts with BOS where the model has one (Llama, Gemma), as in training; an empty
        # text for Qwen-style models, which have none, starts after the end token that separates
        # their training documents.
        self.bos_ids = [int(bos_id)] if bos_id is not None else []
        self.doc_start = int(bos_id) if bos_id is not None else self.eos_token_ids[0]
        self.turn_end_ids = self._turn_end(special)
        self.eos_token_ids = sorted({*self.eos_token_ids, *self.turn_end_ids})
        self._layouts: OrderedDict[tuple[int, ...], tuple[int, int]] = OrderedDict()

    # ------------------------------------------------------------------ prompts
    def encode(self, text: str) -> list[int]:
        """The raw text's ids (continue and search read text as it is, no template)."""
        return [*self.bos_ids, *self.source_ids(text)] if text or self.bos_ids else [self.doc_start]

    def encode_prompt(self, prompt: Prompt, **values: str) -> list[int]:
        """The ids of ``prompt`` with ``values`` (``text``, ``answer``, ``question``), rendered
        with the chat template, followed by the prompt's answer start."""
        head, source, tail, answer = self._parts(prompt, values)
        ids = head + source + tail + answer
        self._remember(ids, len(head), len(tail) + len(answer))
        return ids

    def source_ids(self, text: str) -> list[int]:
        """The tokens of ``text`` alone, as they appear inside a prompt."""
        return self._tokens(text)

    def encode_messages(self, messages: list[dict[str, str]]) -> list[int]:
        """The ids of a whole conversation rendered with the template, ready for the answer
        (OpenAI-style chat completions: ``textgen.serve.openai``)."""
        return self._tokens(self.render(messages))

    def _template(self, prompt: Prompt, values: Mapping[str, str]) -> str:
        messages = prompt.messages(**values)
        try:
            return self.render(messages)
        except Exception:  # noqa: BLE001 -- jinja raises its own errors; some templates refuse a system role
            if len(messages) == 1:
                raise
            folded = messages[0]["content"] + "\n\n" + messages[1]["content"]
            return self.render([{"role": "user", "content": folded}])

    def _parts(self, prompt: Prompt, values: Mapping[str, str]) -> tuple[list[int], list[int], list[int], list[int]]:
        """(template before the input, the input, template after it, answer start) as ids. Each
        part is tokenized alone, so their boundaries are known; chat templates put the input
        between special tokens and newlines, where a byte-level BPE would split anyway."""
        text = values.get("text", "")
        rendered = self._template(prompt, {**values, "text": _SLOT})
        before, slot, after = rendered.partition(_SLOT)
        answer = self._tokens(prompt.answer_start)
        if not slot:  # the template rewrote the message (stripped it, ...): no place to cut
            return self._tokens(self._template(prompt, values)), [], [], answer
        return self._tokens(before), self.source_ids(text), self._tokens(after), answer

    def _remember(self, ids: list[int], head: int, tail: int) -> None:
        """Where the input sits in a prompt, so that ``start`` can cut inside it (a few thousand
        recent prompts are kept; a forgotten one is cut at its beginning, as raw prompts are)."""
        self._layouts[tuple(ids)] = (head, tail)
        while len(self._layouts) > 4096:
            self._layouts.popitem(last=False)

    def _turn_end(self, special: set[int]) -> list[int]:
        """The special token that closes a turn (Qwen's <|im_end|>, Llama 3's <|eot_id|>): the first
        special token after the content of a rendered user message. A chat model's answer ends
        with it, whatever its generation config lists."""
        try:
            rendered = self.render([{"role": "user", "content": _SLOT}])
        except Exception:  # noqa: BLE001 -- a template that cannot render a lone user turn
            return []
        after = self._tokens(rendered.partition(_SLOT)[2])
        return next(([i] for i in after if i in special), [])

    def fit_prompt(self, ids: list[int], room: int) -> list[int]:
        """``ids`` cut to ``room`` tokens inside the input text, keeping the instructions and the
        template's end (a prompt this adapter did not render recently is returned as it is)."""
        layout = self._layouts.get(tuple(ids))
        if len(ids) <= room or layout is None or sum(layout) >= room:
            return ids
        head, tail = layout
        return ids[: room - tail] + ids[len(ids) - tail :]

    def fit_inputs(self, inputs: Any, max_new_tokens: int) -> Any:
        """Prompts longer than the window lose the end of their input text rather than their
        beginning (the instructions)."""
        room = self.input_limit(max_new_tokens)
        return inputs if room is None else [self.fit_prompt(list(x), room) for x in inputs]


class ChatAdapter(ChatPrompts, HFCausal):
    """A Hugging Face chat model behind the step interface."""

    def __init__(self, model, tokenizer, name: str, device) -> None:
        HFCausal.__init__(self, model, tokenizer, name, device)
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"{name}: the tokenizer has no chat template")
        self._init_chat(tokenizer.bos_token_id, special_ids(tokenizer))

    def _tokens(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def render(self, messages: list[dict[str, str]]) -> str:
        # enable_thinking=False: Qwen3-style templates then open the answer without a reasoning
        # block; templates that do not know the variable ignore it.
        return self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False, enable_thinking=False
        )

    def start(self, inputs, max_new_tokens):
        return super().start(self.fit_inputs(inputs, max_new_tokens), max_new_tokens)

    def token_texts(self) -> list[str]:
        return list(self._token_texts)

    @cached_property
    def _token_texts(self) -> list[str]:
        return super().token_texts()  # walks a 150k vocabulary: once


__all__ = ["ChatAdapter", "ChatPrompts", "is_chat", "load_chat"]
