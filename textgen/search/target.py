"""Target scores: the unnormalised log ρ(x) the samplers climb (algorithms.md 4.1).

* ``Fluency``: ``log ρ(x) = γ · log p(x)`` under the fluency LM, for keywords and infill. The hard
  constraints (keywords present, text around blanks kept) are not scored: the moves never break
  them; the sampler zeroes ρ of a sentence that repeats an added word (``Problem.distinct_words``).
  γ < 1 flattens the LM's preference for short sentences (algorithms.md 4.4).
* ``Rewrite``: fluency, plus ``β · log sim(x, source)`` (cosine of the mean input embeddings of
  their tokens, floored at 0.01) so that the meaning stays, minus ``δ · copy(x, source)`` (the
  share of the source's token bigrams that ``x`` still contains) so that the wording changes.

A sampler tempers the target itself: it samples from ``ρ^(1/T)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from textgen.search.lm import BackboneLM


class Fluency:
    def __init__(self, gamma: float) -> None:
        if not gamma > 0:
            raise ValueError(f"gamma must be > 0, not {gamma!r}")
        self.gamma = gamma

    def __call__(self, rows: Sequence[Sequence[int]], logp: torch.Tensor) -> torch.Tensor:
        """log ρ for candidate token rows with fluency log-probabilities ``logp``."""
        return self.gamma * logp


def _bigrams(ids: Sequence[int]) -> set[tuple[int, int]]:
    return set(zip(ids, ids[1:]))


class Rewrite(Fluency):
    def __init__(
        self, lm: BackboneLM, source: Sequence[int], *, gamma: float, similarity: float = 8.0, novelty: float = 6.0
    ) -> None:
        super().__init__(gamma)
        self.lm = lm
        self.similarity = similarity
        self.novelty = novelty
        self.source_vector = lm.embed([list(source)])[0]
        self.source_bigrams = _bigrams(list(source))

    def copy_share(self, ids: Sequence[int]) -> float:
        if not self.source_bigrams:
            return 0.0
        return len(_bigrams(ids) & self.source_bigrams) / len(self.source_bigrams)

    def __call__(self, rows: Sequence[Sequence[int]], logp: torch.Tensor) -> torch.Tensor:
        sim = (self.lm.embed(rows) @ self.source_vector).clamp(min=0.01)
        copy = torch.tensor([self.copy_share(r) for r in rows], dtype=torch.float32)
        return self.gamma * logp + self.similarity * sim.log().cpu() - self.novelty * copy


def log_softmax(values: Sequence[float]) -> list[float]:
    """Plain-Python log-softmax for the handful of candidates of one proposal."""
    top = max(values)
    total = top + math.log(sum(math.exp(v - top) for v in values))
    return [v - total for v in values]
