"""Token data for training and the batch source the trainer draws from.

Documents become windows of at most ``window`` tokens; source/target pairs become id pairs with
the source truncated. :class:`MixedBatches` interleaves objectives by step (a fixed schedule such as
causal, causal, masked, span, pairs), and each step's batch is a pure function of (seed, step, rank),
so a resumed run continues with the same data and each rank draws only from its own shard.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from textgen.tokenizer import ChineseTokenizer
from textgen.training.objectives import Batch, Specials, causal_batch, masked_batch, replace_noise, seq2seq_batch

OBJECTIVES = ("causal", "masked", "span", "pairs")


def specials_of(tok: ChineseTokenizer) -> Specials:
    return Specials(tok.pad_id, tok.cls_id, tok.sep_id, tok.mask_id, len(tok))


@dataclass
class TokenData:
    windows: list[list[int]] = field(default_factory=list)
    ends: list[bool] = field(default_factory=list)  # window closes its document
    pairs: list[tuple[list[int], list[int]]] = field(default_factory=list)
    # Named pair pools for multitask training (title, summary, qa ...): a schedule item that names a
    # pool draws its batch from it. Pairs may carry copy tags: (src, tgt, src_tags, tgt_tags).
    pools: dict[str, list[tuple[list[int], ...]]] = field(default_factory=dict)


def text_windows(tok: ChineseTokenizer, texts: Iterable[str], window: int) -> tuple[list[list[int]], list[bool]]:
    """Cut each document's ids into consecutive windows of at most ``window`` tokens."""
    windows, ends = [], []
    for text in texts:
        ids = tok.encode(text)
        for start in range(0, len(ids), window):
            chunk = ids[start : start + window]
            if len(chunk) >= 2:
                windows.append(chunk)
                ends.append(start + window >= len(ids))
    return windows, ends


_WORKER_TOKENIZER: ChineseTokenizer | None = None


def _encode_in_worker(text: str) -> list[int]:
    return _WORKER_TOKENIZER.encode(text)  # type: ignore[union-attr]


def encode_all(tok: ChineseTokenizer, texts: Sequence[str], workers: int = 1) -> Iterable[list[int]]:
    """``tok.encode`` over ``texts`` in order; with ``workers`` > 1 in forked processes (jieba is
    pure Python, so tokenizing a large corpus is CPU-bound)."""
    if workers <= 1:
        return map(tok.encode, texts)
    import multiprocessing as mp

    global _WORKER_TOKENIZER
    _WORKER_TOKENIZER = tok
    with mp.get_context("fork").Pool(workers) as pool:
        return pool.map(_encode_in_worker, texts, chunksize=64)


def packed_windows(tok: ChineseTokenizer, texts: Sequence[str], window: int, *, workers: int = 1) -> list[list[int]]:
    """Documents joined into one stream (each closed by ``[SEP]``) and cut into windows of exactly
    ``window`` tokens: no step pays for padding, and the model still learns where a text ends
    (``causal_batch(..., ends=[False] * n)`` adds no further ``[SEP]``)."""
    from array import array

    stream = array("i")
    for ids in encode_all(tok, texts, workers):
        stream.extend(ids)
        stream.append(tok.sep_id)
    return [stream[i : i + window] for i in range(0, len(stream) - window + 1, window)]


def pair_ids(
    tok: ChineseTokenizer, pairs: Iterable[tuple[str, str]], max_source: int, max_target: int
) -> list[tuple[list[int], list[int]]]:
    """Tokenised (source, target) pairs; sources keep their first ``max_source`` tokens (the lead of
    an article carries its title), targets their first ``max_target``."""
    out = []
    for src, tgt in pairs:
        s, t = tok.encode(src)[:max_source], tok.encode(tgt)[:max_target]
        if s and t:
            out.append((s, t))
    return out


class MixedBatches:
    """Callable ``(step, rank, world) -> Batch`` for :class:`textgen.training.trainer.Trainer`."""

    def __init__(
        self,
        data: TokenData,
        specials: Specials,
        batch_size: int,
        schedule: Sequence[str],
        *,
        seed: int = 0,
        noise: float = 0.0,
    ):
        unknown = [s for s in schedule if s not in OBJECTIVES and s not in data.pools]
        if unknown or not schedule:
            raise ValueError(f"schedule items must be among {OBJECTIVES} or the data's pools {sorted(data.pools)}, "
                             f"got {list(schedule)}")
        if any(s in ("causal", "masked", "span") for s in schedule) and not data.windows:
            raise ValueError("the schedule needs text windows but the data has none")
        if "pairs" in schedule and not data.pairs:
            raise ValueError("the schedule needs source/target pairs but the data has none")
        self.data, self.sp, self.batch_size = data, specials, batch_size
        self.schedule, self.seed, self.noise = list(schedule), seed, noise
        # Pools are drawn in length buckets (sorted by length, cut into runs of 8 batches): a
        # batch's pairs have similar lengths, so little of a step is spent on padding.
        self.buckets = {name: self._buckets(pairs) for name, pairs in data.pools.items()}

    def _buckets(self, pairs: list) -> list[list[int]]:
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        size = max(8 * self.batch_size, 1)
        return [order[i : i + size] for i in range(0, len(order), size)]

    @staticmethod
    def _pick(rng: random.Random, n: int, rank: int, world: int) -> int:
        """A random index from this rank's shard (indices congruent to ``rank`` modulo ``world``)."""
        shard = (n - rank + world - 1) // world
        return rank + world * rng.randrange(shard)

    def __call__(self, step: int, rank: int = 0, world: int = 1) -> Batch:
        import torch

        kind = self.schedule[step % len(self.schedule)]
        rng = random.Random(f"{self.seed}:{step}:{rank}")
        if kind in self.data.pools:
            pool, buckets = self.data.pools[kind], self.buckets[kind]
            bucket = buckets[self._pick(rng, len(buckets), rank, world) if len(buckets) >= world else rng.randrange(len(buckets))]
            pairs = [pool[bucket[rng.randrange(len(bucket))]] for _ in range(self.batch_size)]
            batch = seq2seq_batch(pairs, self.sp)
        elif kind == "pairs":
            pairs = [self.data.pairs[self._pick(rng, len(self.data.pairs), rank, world)] for _ in range(self.batch_size)]
            batch = seq2seq_batch(pairs, self.sp)
        else:
            idx = [self._pick(rng, len(self.data.windows), rank, world) for _ in range(self.batch_size)]
            windows = [self.data.windows[i] for i in idx]
            if kind == "causal":
                batch = causal_batch(windows, self.sp, [self.data.ends[i] for i in idx])
            elif kind == "masked":
                batch = masked_batch(windows, self.sp, rng)
            else:  # span: UniLM seq2seq on text, the window's tail generated from its head
                pairs = []
                for w in windows:
                    if len(w) < 4:
                        w = w * 2
                    cut = len(w) - rng.randint(2, max(2, min(32, len(w) // 2)))
                    pairs.append((w[:cut], w[cut:]))
                batch = seq2seq_batch(pairs, self.sp)
        if self.noise > 0 and (kind in ("pairs", "span") or kind in self.data.pools):
            batch = replace_noise(batch, self.noise, torch.Generator().manual_seed(rng.randrange(2**31)))
        return batch
