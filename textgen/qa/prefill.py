"""Decode after a fixed start of the target: the question after ``answer [SEP]``.

The QA model writes ``answer [SEP] question [SEP]`` (algorithms.md 3). Once the answer is chosen
(sampled, or given by the user), the question is decoded from ``[CLS] passage [SEP] answer [SEP]``.
``generate``'s ``forced_prefix`` cannot express this: ``[SEP]`` is the end token, so forcing it
would end the output. ``TargetPrefix`` instead wraps the UniLM adapter so that ``start`` also runs
each row's target prefix (segment 1, through the KV cache, padded rows masked), and decoding then
continues from it exactly as if the model had generated the prefix itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from textgen.models.adapters import BackboneSeq2Seq


class TargetPrefix:
    """``adapter`` (a UniLM ``BackboneSeq2Seq``) whose outputs continue ``prefixes[i]`` for input i.

    Everything but ``start`` and ``input_limit`` is the wrapped adapter's; positions for the
    prefix are reserved, so a long source is cut as it would be for ``max_new_tokens`` plus the
    longest prefix."""

    def __init__(self, adapter: BackboneSeq2Seq, prefixes: Sequence[Sequence[int]]) -> None:
        if not isinstance(adapter, BackboneSeq2Seq):
            raise TypeError(f"a target prefix needs a UniLM backbone adapter, not {type(adapter).__name__}")
        if not prefixes or any(len(p) == 0 for p in prefixes):
            raise ValueError("every row needs a non-empty target prefix")
        self.adapter = adapter
        self.prefixes = [list(map(int, p)) for p in prefixes]
        self.width = max(len(p) for p in self.prefixes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.adapter, name)

    def input_limit(self, max_new_tokens: int) -> int | None:
        return self.adapter.input_limit(max_new_tokens + self.width)

    def start(self, inputs: Sequence[Sequence[int]], max_new_tokens: int) -> tuple[torch.Tensor, Any]:
        if len(inputs) != len(self.prefixes):
            raise ValueError(f"{len(inputs)} inputs for {len(self.prefixes)} target prefixes")
        _, cache = self.adapter.start(inputs, max_new_tokens + self.width)
        device = self.adapter.device
        ids = torch.full((len(self.prefixes), self.width), self.adapter.pad_token_id, dtype=torch.long)
        mask = torch.zeros(len(self.prefixes), self.width, dtype=torch.bool)
        for row, prefix in enumerate(self.prefixes):
            ids[row, : len(prefix)] = torch.tensor(prefix)
            mask[row, : len(prefix)] = True
        ids, mask = ids.to(device), mask.to(device)
        model = self.adapter.model
        hidden, cache = model.encode(ids, token_type_ids=torch.ones_like(ids), attention_mask=mask, cache=cache, use_cache=True)
        last = hidden[torch.arange(len(ids), device=device), mask.sum(1) - 1]
        return self.adapter._outputs(last, cache)  # the adapter's own outputs: logits, and copy-head tags if any
