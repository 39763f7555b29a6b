"""A minimum summary length that respects the source.

A minimum length chosen on 4,000-character judgements (``min_new_tokens``, docs/summarize.md) would
pad the summary of a one-sentence document with repetitions. Each summary's minimum is therefore
capped at half its extraction's tokens: a summary may always stop once it is half as long as what
it summarizes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch

from textgen.decoding.processors import NEG_INF, LogitsProcessor


def source_bound_minimums(requested: int, source_lengths: Sequence[int]) -> list[int]:
    """Per input: ``requested``, but at most half the source's tokens."""
    return [min(requested, n // 2) for n in source_lengths]


class MinNewTokensPerRow(LogitsProcessor):
    """Row ``i`` may not end before it has ``minimums[i]`` tokens; the minimums follow their
    beams through ``reorder``."""

    def __init__(self, minimums: Sequence[int], eos_token_ids: Collection[int]) -> None:
        if any(m < 0 for m in minimums):
            raise ValueError("minimum lengths must be >= 0")
        if not eos_token_ids:
            raise ValueError("a minimum length needs the model's end token id(s)")
        self.minimums = torch.tensor(list(minimums), dtype=torch.long)
        self.eos = sorted({int(i) for i in eos_token_ids})

    def __call__(self, generated, logits):
        short = (generated.shape[1] < self.minimums.to(logits.device)).nonzero().squeeze(1)
        if not len(short):
            return logits
        logits = logits.clone()
        logits[short[:, None], torch.tensor(self.eos, device=logits.device)] = NEG_INF
        return logits

    def reorder(self, index):
        self.minimums = self.minimums.index_select(0, index.to(self.minimums.device))
