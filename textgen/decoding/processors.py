"""Logits processors: one decoding rule per class, chained in a list.

Every processor is called as ``processor(generated, logits) -> logits`` where ``generated`` holds
the ids produced so far for each row (``LongTensor[N, t]``, no prompt) and ``logits`` the next-token
scores (``FloatTensor[N, V]``). A banned token gets ``-inf``. Arguments are validated in the
constructor so a bad option fails before any model runs.

Rows are inputs times beams (or samples). A processor that holds something per row (an allowed
set, a forced prefix, a remainder to spell) implements ``reorder(index)``: row ``i`` of the new
batch is row ``index[i]`` of the old one. Decoders call it when they repeat inputs for beams or
samples, when beams are reordered and when finished rows are dropped, so per-row state always
follows its hypothesis. ``reorder`` *rebinds* attributes to new tensors and never writes into the
old ones: ``generate`` works on shallow copies, so the caller's processor stays reusable.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from textgen.decoding.config import DecodingConfig

NEG_INF = float("-inf")


class NoTokenLeft(ValueError):
    """The constraints left no token that could be generated (every id banned for some row):
    the caller may retry with fewer constraints (summarize retries without copying)."""


class LogitsProcessor:
    """Base class: a stateless rule whose ``reorder`` has nothing to do."""

    def __call__(self, generated: torch.LongTensor, logits: torch.FloatTensor) -> torch.FloatTensor:
        raise NotImplementedError

    def reorder(self, index: torch.LongTensor) -> None:
        """Make row ``i`` hold what row ``index[i]`` held (stateless processors: nothing)."""

    def observe(self, adapter, state) -> None:
        """Called with the adapter state whenever its rows change (start, reorder, step), for rules
        that read more than the logits (the copy head's tag probabilities: ``adapter.copy_probs``)."""


def apply_processors(
    processors: Sequence[LogitsProcessor], generated: torch.LongTensor, logits: torch.FloatTensor
) -> torch.FloatTensor:
    for p in processors:
        logits = p(generated, logits)
    return logits


# ---------------------------------------------------------------------- sampling warpers
class Temperature(LogitsProcessor):
    """Divide logits by T: T < 1 sharpens the distribution, T > 1 flattens it."""

    def __init__(self, temperature: float) -> None:
        if not (isinstance(temperature, (int, float)) and temperature > 0 and math.isfinite(temperature)):
            raise ValueError(f"temperature must be a positive number, not {temperature!r}")
        self.temperature = float(temperature)

    def __call__(self, generated, logits):
        return logits / self.temperature


class TopK(LogitsProcessor):
    """Keep the k highest-scoring tokens (ties with the k-th are kept too)."""

    def __init__(self, k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"top_k must be an integer >= 1, not {k!r}")
        self.k = k

    def __call__(self, generated, logits):
        k = min(self.k, logits.shape[-1])
        kth = logits.topk(k, dim=-1).values[:, -1:]
        return logits.masked_fill(logits < kth, NEG_INF)


class TopP(LogitsProcessor):
    """Nucleus sampling: keep the most probable tokens until their mass reaches p; the token that
    crosses p is kept (algorithms.md 5.3), so at least one token always survives."""

    def __init__(self, p: float) -> None:
        if not (isinstance(p, (int, float)) and 0 < p <= 1):
            raise ValueError(f"top_p must be in (0, 1], not {p!r}")
        self.p = float(p)

    def __call__(self, generated, logits):
        if self.p >= 1.0:
            return logits
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs
        drop_sorted = mass_before >= self.p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        return logits.masked_fill(drop, NEG_INF)


# ---------------------------------------------------------------------- rules on the generated ids
class RepetitionPenalty(LogitsProcessor):
    """CTRL-style penalty on tokens already generated: positive logits are divided by the
    penalty, negative ones multiplied, so a penalty > 1 always makes a repeat less likely."""

    def __init__(self, penalty: float) -> None:
        if not (isinstance(penalty, (int, float)) and penalty > 0 and math.isfinite(penalty)):
            raise ValueError(f"repetition_penalty must be a positive number, not {penalty!r}")
        self.penalty = float(penalty)

    def __call__(self, generated, logits):
        if generated.shape[1] == 0:
            return logits
        seen = logits.gather(1, generated)
        seen = torch.where(seen > 0, seen / self.penalty, seen * self.penalty)
        return logits.scatter(1, generated, seen)


class NoRepeatNGram(LogitsProcessor):
    """Forbid any token that would repeat an n-gram already in the output."""

    def __init__(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"no_repeat_ngram_size must be an integer >= 1, not {n!r}")
        self.n = n

    def __call__(self, generated, logits):
        n, t = self.n, generated.shape[1]
        if t < n:
            return logits
        grams = generated.unfold(1, n, 1)  # [N, t-n+1, n]: every n-gram so far
        if n == 1:
            match = torch.ones(grams.shape[:2], dtype=torch.bool, device=grams.device)
        else:
            last = generated[:, t - n + 1 :]  # the n-1 tokens the next token would extend
            match = (grams[:, :, :-1] == last[:, None, :]).all(dim=-1)
        # scatter_add, not scatter: one token may close several n-grams, matching or not.
        hits = torch.zeros_like(logits).scatter_add_(1, grams[:, :, -1], match.to(logits.dtype))
        return logits.masked_fill(hits > 0, NEG_INF)


class MinNewTokens(LogitsProcessor):
    """Ban the end token(s) until ``min_new`` tokens have been generated."""

    def __init__(self, min_new: int, eos_token_ids: Collection[int]) -> None:
        if isinstance(min_new, bool) or not isinstance(min_new, int) or min_new < 0:
            raise ValueError(f"min_new_tokens must be an integer >= 0, not {min_new!r}")
        if not eos_token_ids:
            raise ValueError("min_new_tokens needs the model's end token id(s)")
        self.min_new = min_new
        self.eos = sorted({int(i) for i in eos_token_ids})

    def __call__(self, generated, logits):
        if generated.shape[1] >= self.min_new:
            return logits
        logits = logits.clone()
        logits[:, self.eos] = NEG_INF
        return logits


class BannedTokens(LogitsProcessor):
    """Never generate these ids (e.g. ``[UNK]``, or tokens a task must not produce)."""

    def __init__(self, token_ids: Collection[int]) -> None:
        ids = sorted({int(i) for i in token_ids})
        if not ids or ids[0] < 0:
            raise ValueError(f"banned token ids must be a non-empty set of ids >= 0, not {token_ids!r}")
        self.ids = ids

    def __call__(self, generated, logits):
        _check_ids_fit(self.ids[-1], logits, "banned token")
        logits = logits.clone()
        logits[:, self.ids] = NEG_INF
        return logits


# ---------------------------------------------------------------------- per-row constraints
class AllowedTokens(LogitsProcessor):
    """Per-row allowed sets: row i may only produce ids in ``allowed[i]`` (``None`` = anything).

    The hook for copy and answer-span constraints: a task builds one set per input (e.g. the ids
    of the passage plus the end token) and the rows follow their beams through ``reorder``.
    """

    def __init__(self, allowed: Sequence[Collection[int] | None], vocab_size: int) -> None:
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
            raise ValueError(f"vocab_size must be a positive integer, not {vocab_size!r}")
        mask = torch.ones(len(allowed), vocab_size, dtype=torch.bool)
        for row, ids in enumerate(allowed):
            if ids is None:
                continue
            ids = sorted({int(i) for i in ids})
            if not ids:
                raise NoTokenLeft(f"allowed set for row {row} is empty: nothing could be generated")
            if ids[0] < 0 or ids[-1] >= vocab_size:
                raise ValueError(f"allowed set for row {row} holds ids outside [0, {vocab_size})")
            mask[row] = False
            mask[row, ids] = True
        self.mask = mask

    def __call__(self, generated, logits):
        if self.mask.shape != logits.shape:
            raise ValueError(f"allowed-token mask is {tuple(self.mask.shape)} but logits are {tuple(logits.shape)}")
        return logits.masked_fill(~self.mask.to(logits.device), NEG_INF)

    def reorder(self, index):
        self.mask = self.mask.index_select(0, index.to(self.mask.device))


def _check_ids_fit(max_id: int, logits: torch.Tensor, what: str) -> None:
    if max_id >= logits.shape[-1]:
        raise ValueError(f"{what} id {max_id} is outside the model's vocabulary of {logits.shape[-1]}")


def rule_processors(config: DecodingConfig, eos_token_ids: Collection[int]) -> list[LogitsProcessor]:
    """The rules a :class:`DecodingConfig` asks for, in every strategy."""
    rules: list[LogitsProcessor] = []
    if config.repetition_penalty != 1.0:
        rules.append(RepetitionPenalty(config.repetition_penalty))
    if config.no_repeat_ngram_size:
        rules.append(NoRepeatNGram(config.no_repeat_ngram_size))
    if config.min_new_tokens:
        rules.append(MinNewTokens(config.min_new_tokens, eos_token_ids))
    if config.banned_token_ids:
        rules.append(BannedTokens(config.banned_token_ids))
    return rules


def sampling_warpers(config: DecodingConfig) -> list[LogitsProcessor]:
    """Temperature, then top-k, then top-p (the order algorithms.md 5.3 and HF use); sampling only."""
    warpers: list[LogitsProcessor] = []
    if config.temperature != 1.0:
        warpers.append(Temperature(config.temperature))
    if config.top_k:
        warpers.append(TopK(config.top_k))
    if config.top_p < 1.0:
        warpers.append(TopP(config.top_p))
    return warpers
