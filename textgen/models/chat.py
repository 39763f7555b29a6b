"""Any chat LLM a user has (Qwen, Llama, ... an ``AutoModelForCausalLM`` directory whose tokenizer
has a chat template) drives every task.

``ChatAdapter`` is ``HFCausal`` (left padding, KV cache, ``generate()``'s positions, so greedy and
beam output are token-identical to ``generate()``) plus prompts: for ``title``, ``summarize`` and
``qa`` the input is wrapped in the task's Chinese prompt (``textgen/prompts/chat.toml``, data the
user can override) and rendered with the model's own chat template
(``apply_chat_template(messages, add_generation_prompt=True)``); the prompt's ``answer_start``, if
any, follows as the start of the assistant's answer (a forced prefix given as context). ``continue``
and ``search`` use the raw text, no template. ``load_adapter`` picks this adapter for such a
directory; loading reads local files only and never runs remote code.

Hook for tasks (``title`` and ``continue`` use it as they are; summarize, qa and search can too):

* ``load_task(name, ...)`` passes the task's name to ``load_adapter(..., task=name)``, and
  ``adapter.encode(text)`` returns the ids of that task's prompt around ``text``. A task written
  against ``encode`` needs nothing else. (The backbone's ``source_prefix`` does not apply here.)
* ``adapter.encode_prompt(key, text=..., answer=..., question=...)``: another prompt of the same
  model, e.g. ``qa_question`` (passage and answer -> question) or ``qa_check`` (passage and
  question -> answer, for round trips); ``PROMPT_KEYS`` lists them.
* ``adapter.source_ids(text)``: the input's own tokens, without template or instructions. Build
  token-level copy or span constraints from these (or from the text), never from ``encode``'s ids,
  which hold the instructions too.
* ``is_chat(adapter)``: whether an adapter is one of these (duck-typed, no import needed:
  ``hasattr(adapter, "encode_prompt")``).
* search's fluency scorer: ``textgen.search.lm.HFScorer(adapter.model, adapter.tokenizer)`` scores
  whole sentences in batches with any Hugging Face causal model, this one included (loaded for
  ``search`` it reads raw text). The next-token distribution after a prefix is
  ``adapter.start([prefix], 1)``.
* ``adapter.heal(texts)``: token healing. In raw mode it backs off the end of the text, exactly as
  ``textgen.decoding.healing.heal``; with a template only the ``answer_start`` can be backed off,
  never the template's own tokens.

A prompt longer than the model's window is cut inside the input text (keeping its beginning), so
the instructions and the template's generation prompt are never lost.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from textgen.decoding.healing import Healed, HealingConstraint, Vocabulary, back_off
from textgen.models.adapters import HFCausal, hf_model, hf_tokenizer, special_ids
from textgen.prompts import PROMPT_KEYS, RAW_TASKS, Prompt, load_prompts

# Stands for the input while a template is rendered, so the input's place in the prompt is known.
_SLOT = "\ue000TEXTGEN\ue001"


def load_chat(
    path: Path,
    name: str,
    *,
    task: str | None = None,
    device: str | torch.device = "cpu",
    dtype: str | None = None,
    allow_pickle: bool = False,
    prompts: Mapping[str, Prompt] | None = None,
) -> ChatAdapter:
    """The chat adapter over a model directory (``load_adapter`` calls this for chat models)."""
    model = hf_model(path, "causal", device, allow_pickle, dtype)
    return ChatAdapter(model, hf_tokenizer(path), name, device, task=task, prompts=prompts)


def is_chat(adapter: Any) -> bool:
    return hasattr(adapter, "encode_prompt")


class ChatAdapter(HFCausal):
    """A chat model behind the step interface; ``task`` chooses what ``encode`` renders."""

    def __init__(
        self, model, tokenizer, name: str, device, *, task: str | None = None, prompts: Mapping[str, Prompt] | None = None
    ) -> None:
        super().__init__(model, tokenizer, name, device)
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"{name}: the tokenizer has no chat template")
        self.prompts = dict(prompts) if prompts is not None else load_prompts()
        if task is not None and task not in RAW_TASKS and task not in self.prompts:
            raise ValueError(f"{name}: no prompt for task {task!r} (prompts: {', '.join(self.prompts)})")
        self.task = task
        bos = tokenizer.bos_token_id
        # Raw text starts with BOS where the model has one (Llama, Gemma), as in training; an empty
        # text for Qwen-style models, which have none, starts after the end token that separates
        # their training documents.
        self.bos_ids = [int(bos)] if bos is not None else []
        self.doc_start = int(bos) if bos is not None else self.eos_token_ids[0]
        self.turn_end_ids = self._turn_end()
        self.eos_token_ids = sorted({*self.eos_token_ids, *self.turn_end_ids})
        self._layouts: OrderedDict[tuple[int, ...], tuple[int, int]] = OrderedDict()

    @property
    def raw(self) -> bool:
        """True when ``encode`` feeds the text itself (continue, search, or no task)."""
        return self.task is None or self.task in RAW_TASKS

    # ------------------------------------------------------------------ prompts
    def encode(self, text: str) -> list[int]:
        if self.raw:
            return self._raw_ids(text)
        return self.encode_prompt(self.task, text=text)

    def encode_prompt(self, key: str, **values: str) -> list[int]:
        """The ids of prompt ``key`` with ``values`` (``text``, ``answer``, ``question``), rendered
        with the chat template, followed by the prompt's answer start."""
        head, source, tail, answer = self._parts(key, values)
        ids = head + source + tail + answer
        self._remember(ids, len(head), len(tail) + len(answer))
        return ids

    def source_ids(self, text: str) -> list[int]:
        """The tokens of ``text`` alone, as they appear inside a prompt."""
        return self._tokens(text)

    def _raw_ids(self, text: str) -> list[int]:
        return [*self.bos_ids, *self._tokens(text)] if text or self.bos_ids else [self.doc_start]

    def _tokens(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def _template(self, key: str, values: Mapping[str, str]) -> str:
        if key not in self.prompts:
            raise ValueError(f"no prompt {key!r} (prompts: {', '.join(self.prompts)})")
        messages = self.prompts[key].messages(**values)
        # enable_thinking=False: Qwen3-style templates then open the answer without a reasoning
        # block; templates that do not know the variable ignore it.
        kw = {"add_generation_prompt": True, "tokenize": False, "enable_thinking": False}
        try:
            return self.tokenizer.apply_chat_template(messages, **kw)
        except Exception:  # noqa: BLE001 -- jinja raises its own errors; some templates refuse a system role
            if len(messages) == 1:
                raise
            folded = messages[0]["content"] + "\n\n" + messages[1]["content"]
            return self.tokenizer.apply_chat_template([{"role": "user", "content": folded}], **kw)

    def _parts(self, key: str, values: Mapping[str, str]) -> tuple[list[int], list[int], list[int], list[int]]:
        """(template before the input, the input, template after it, answer start) as ids. Each
        part is tokenized alone, so their boundaries are known; chat templates put the input
        between special tokens and newlines, where a byte-level BPE would split anyway."""
        text = values.get("text", "")
        rendered = self._template(key, {**values, "text": _SLOT})
        before, slot, after = rendered.partition(_SLOT)
        if not slot:  # the template rewrote the message (stripped it, ...): no place to cut
            return self._tokens(self._template(key, values)), [], [], self._tokens(self.prompts[key].answer_start)
        return self._tokens(before), self._tokens(text), self._tokens(after), self._tokens(self.prompts[key].answer_start)

    def _remember(self, ids: list[int], head: int, tail: int) -> None:
        """Where the input sits in a prompt, so that ``start`` can cut inside it (a few thousand
        recent prompts are kept; a forgotten one is cut at its beginning, as raw prompts are)."""
        self._layouts[tuple(ids)] = (head, tail)
        while len(self._layouts) > 4096:
            self._layouts.popitem(last=False)

    def _turn_end(self) -> list[int]:
        """The special token that closes a turn (Qwen's <|im_end|>, Llama 3's <|eot_id|>): the first
        special token after the content of a rendered user message. A chat model's answer ends
        with it, whatever its generation config lists."""
        special = special_ids(self.tokenizer)
        try:
            rendered = self.tokenizer.apply_chat_template([{"role": "user", "content": _SLOT}], tokenize=False)
        except Exception:  # noqa: BLE001 -- a template that cannot render a lone user turn
            return []
        after = self._tokens(rendered.partition(_SLOT)[2])
        return next(([i] for i in after if i in special), [])

    # ------------------------------------------------------------------ decoding
    def start(self, inputs, max_new_tokens):
        """``HFCausal.start``, except that a prompt longer than the window loses the end of its
        input text rather than its beginning (the instructions)."""
        room = self.input_limit(max_new_tokens)
        if room is not None:
            inputs = [self.fit_prompt(list(x), room) for x in inputs]
        return super().start(inputs, max_new_tokens)

    def fit_prompt(self, ids: list[int], room: int) -> list[int]:
        """``ids`` cut to ``room`` tokens inside the input text, keeping the instructions and the
        template's end (a prompt this adapter did not render recently is returned as it is)."""
        layout = self._layouts.get(tuple(ids))
        if len(ids) <= room or layout is None or sum(layout) >= room:
            return ids
        head, tail = layout
        return ids[: room - tail] + ids[len(ids) - tail :]

    def token_texts(self) -> list[str]:
        return list(self._token_texts)

    @cached_property
    def _token_texts(self) -> list[str]:
        return super().token_texts()  # walks a 150k vocabulary: once

    @cached_property
    def vocabulary(self) -> Vocabulary:
        """The healing prefix index over this model's tokens (built once)."""
        return Vocabulary(self._token_texts)

    def heal(
        self, texts: Sequence[str], *, enabled: bool = True, vocab: Vocabulary | None = None
    ) -> tuple[list[Healed], HealingConstraint | None]:
        """Token healing (``textgen.decoding.healing``) for this adapter's prompts: the end of a raw
        text, or the prompt's ``answer_start``, may be backed off and re-spelled by the output;
        template tokens never are. Returns the splits and the constraint for ``generate``."""
        # Only the last `movable` tokens of a prompt may be backed off: all of a raw text, or the answer start.
        movable = None if self.raw else len(self._tokens(self.prompts[self.task].answer_start))
        prompts = [self.encode(t) for t in texts]
        cut = [0 if movable is None else len(ids) - movable for ids in prompts]
        fixed = [ids[:c] for ids, c in zip(prompts, cut)]
        open_ids = [ids[c:] for ids, c in zip(prompts, cut)]
        if not enabled:
            return [Healed(f + o, "") for f, o in zip(fixed, open_ids)], None
        vocab = vocab or self.vocabulary
        splits = [back_off(vocab, o) for o in open_ids]
        healed = [Healed(f + ctx, rest.decode("utf-8"), len(o) - len(ctx)) for f, o, (ctx, rest) in zip(fixed, open_ids, splits)]
        for h, ids in zip(healed, (f + o for f, o in zip(fixed, open_ids))):
            if layout := self._layouts.get(tuple(ids)):  # the cut point in the shortened prompt
                self._remember(h.context_ids, layout[0], max(layout[1] - h.backed_off, 0))
        if not any(rest for _, rest in splits):
            return healed, None
        return healed, HealingConstraint(vocab, [rest for _, rest in splits])


__all__ = ["PROMPT_KEYS", "ChatAdapter", "is_chat", "load_chat"]
