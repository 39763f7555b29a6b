"""Training objectives as batch builders plus one loss.

The UniLM recipe (algorithms.md section 0): one backbone, three masks. Every builder returns a
:class:`Batch` whose ``labels`` are already aligned with the position that predicts them (-100 where
nothing is predicted), so a single :func:`token_loss` serves masked LM, causal LM and seq2seq, and
the LM head is only applied where a label exists (a large saving for seq2seq and masked LM).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

IGNORE = -100


@dataclass
class Batch:
    mode: str
    input_ids: torch.Tensor
    token_type_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    copy_labels: torch.Tensor | None = None  # B/I/O per position (seq2seq pairs with copy tags), IGNORE elsewhere

    def to(self, device: torch.device | str) -> Batch:
        copy = None if self.copy_labels is None else self.copy_labels.to(device)
        return Batch(self.mode, *(t.to(device) for t in (self.input_ids, self.token_type_ids, self.attention_mask, self.labels)), copy)


@dataclass(frozen=True)
class Specials:
    pad: int
    cls: int
    sep: int
    mask: int
    vocab_size: int


def _pad(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([list(r) + [value] * (width - len(r)) for r in rows], dtype=torch.long)


def _finish(
    mode: str, ids: list[list[int]], segs: list[list[int]], labels: list[list[int]], sp: Specials,
    copy: list[list[int]] | None = None,
) -> Batch:
    input_ids = _pad(ids, sp.pad)
    return Batch(mode, input_ids, _pad(segs, 0), input_ids.ne(sp.pad), _pad(labels, IGNORE),
                 None if copy is None else _pad(copy, IGNORE))


def causal_batch(windows: Sequence[Sequence[int]], sp: Specials, ends: Sequence[bool] | None = None) -> Batch:
    """``[CLS] w_1..w_n ([SEP])``: position t predicts token t+1. ``[SEP]`` closes a window that
    ends its document, so the model learns where text stops."""
    ids, segs, labels = [], [], []
    for k, w in enumerate(windows):
        seq = [sp.cls, *w] + ([sp.sep] if ends is None or ends[k] else [])
        ids.append(seq)
        segs.append([0] * len(seq))
        labels.append(seq[1:] + [IGNORE])
    return _finish("causal", ids, segs, labels, sp)


def seq2seq_batch(pairs: Sequence[Sequence[Sequence[int]]], sp: Specials) -> Batch:
    """UniLM packing ``[CLS] src [SEP] tgt [SEP]``, segment 1 on ``tgt [SEP]``; the loss covers every
    target token and the closing ``[SEP]``, the first predicted from the source ``[SEP]``.

    A pair may carry copy tags, ``(src, tgt, src_tags, tgt_tags)`` (:mod:`copy_labels`): source
    positions are labelled with their own tag, target positions (like their tokens) with the tag
    of the token they predict, the closing ``[SEP]`` with O. A batch has copy labels only when
    every pair has tags."""
    ids, segs, labels, copy = [], [], [], []
    for src, tgt, *tags in pairs:
        seq = [sp.cls, *src, sp.sep, *tgt, sp.sep]
        n_src = len(src) + 2
        ids.append(seq)
        segs.append([0] * n_src + [1] * (len(tgt) + 1))
        labels.append([IGNORE] * (n_src - 1) + list(tgt) + [sp.sep] + [IGNORE])
        if tags:
            copy.append([IGNORE, *tags[0], *tags[1], 0, IGNORE])
    return _finish("unilm", ids, segs, labels, sp, copy if len(copy) == len(ids) else None)


def masked_batch(windows: Sequence[Sequence[int]], sp: Specials, rng: random.Random, prob: float = 0.15) -> Batch:
    """BERT masking: ``prob`` of the tokens are predicted; of those 80% become ``[MASK]``, 10% a
    random token and 10% stay. At least one token per row is predicted."""
    ids, segs, labels = [], [], []
    for w in windows:
        seq = [sp.cls, *w, sp.sep]
        lab = [IGNORE] * len(seq)
        picks = [i for i in range(1, len(seq) - 1) if rng.random() < prob] or [rng.randrange(1, len(seq) - 1)]
        for i in picks:
            lab[i] = seq[i]
            r = rng.random()
            if r < 0.8:
                seq[i] = sp.mask
            elif r < 0.9:
                seq[i] = rng.randrange(5, sp.vocab_size)
        ids.append(seq)
        segs.append([0] * len(seq))
        labels.append(lab)
    return _finish("bidirectional", ids, segs, labels, sp)


def replace_noise(batch: Batch, prob: float, generator: torch.Generator | None = None) -> Batch:
    """Exposure-bias remedy (algorithms.md 2.3): each real token is replaced with probability
    ``prob`` by a token drawn uniformly from the same sequence; labels keep the original ids."""
    if prob <= 0:
        return batch
    ids = batch.input_ids.clone()
    real = batch.attention_mask
    hit = (torch.rand(ids.shape, generator=generator) < prob) & real
    lengths = real.sum(1, keepdim=True).clamp(min=1)
    src_pos = (torch.rand(ids.shape, generator=generator) * lengths).long()
    ids[hit] = ids.gather(1, src_pos)[hit]
    return Batch(batch.mode, ids, batch.token_type_ids, batch.attention_mask, batch.labels, batch.copy_labels)


def sparse_softmax_loss(logits: torch.Tensor, target: torch.Tensor, k: int) -> torch.Tensor:
    """Sparse Softmax (algorithms.md 2.3): ``logsumexp(top-k logits) - s_target`` per row; the target
    need not be in the top k; logits outside top-k and the target get no gradient."""
    top = logits.topk(min(k, logits.shape[-1]), dim=-1).values
    return top.logsumexp(-1) - logits.gather(-1, target[:, None]).squeeze(-1)


class LossModel(nn.Module):
    """Wraps a backbone so that one ``forward`` returns the loss of a batch: the unit that DDP wraps
    (gradients are only synchronised for work done inside ``forward``)."""

    def __init__(self, backbone: nn.Module, sparse_k: int = 0):
        super().__init__()
        self.backbone = backbone
        self.sparse_k = sparse_k

    def forward(self, mode: str, input_ids, token_type_ids, attention_mask, labels, copy_labels=None) -> torch.Tensor:
        """Mean cross-entropy (or sparse softmax when ``sparse_k`` > 0) over labelled positions,
        plus ``COPY_WEIGHT`` x the copy head's cross-entropy where the batch has copy labels and the
        backbone a copy head (SPACES: token loss + 2 x copy loss)."""
        hidden, _ = self.backbone.encode(input_ids, mode=mode, token_type_ids=token_type_ids, attention_mask=attention_mask)
        where = labels.ne(IGNORE)
        logits = self.backbone.lm_logits(hidden[where]).float()
        target = labels[where]
        if self.sparse_k > 0:
            loss = sparse_softmax_loss(logits, target, self.sparse_k).mean()
        else:
            loss = F.cross_entropy(logits, target)
        if copy_labels is not None and self.backbone.copy_head is not None:
            tagged = copy_labels.ne(IGNORE)
            tag_logits = self.backbone.copy_logits(hidden[tagged]).float()
            loss = loss + COPY_WEIGHT * F.cross_entropy(tag_logits, copy_labels[tagged])
        return loss


COPY_WEIGHT = 2.0


def batch_loss(loss_model: nn.Module, batch: Batch) -> torch.Tensor:
    return loss_model(batch.mode, batch.input_ids, batch.token_type_ids, batch.attention_mask, batch.labels,
                      batch.copy_labels)
