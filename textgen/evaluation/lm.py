"""Language-model quality of a ``BertBackbone``: bits per character (causal) and masked-token accuracy.

Bits per character, not perplexity per token: a word-vocabulary model has fewer, harder tokens
than a character model, so per-token numbers cannot be compared across tokenizers. Dividing the
total cost of a text by its number of characters can.

Definitions (shared with the n-gram baseline in ``ngram.py``):

* **Characters counted**: the non-whitespace characters of the text as given (``counted_chars``).
  Whitespace carries almost no information in Chinese and the tokenizer drops it anyway.
* **Cost**: each text is the sequence ``[CLS] t_1 .. t_n [SEP]``; every token after ``[CLS]`` is
  predicted from its prefix in the causal attention mode, **including the final ``[SEP]``**: a
  model must also pay for saying where the text ends, which makes the cost a proper code length
  over whole texts. The n-gram model pays for its end-of-text symbol the same way.
* **Long texts** are cut into windows of at most ``max_len`` tokens, each starting afresh with
  ``[CLS]`` (no context carried across windows), so choose ``max_len`` above typical lengths.
* A tokenizer that maps a character to ``[UNK]`` or lowercases it pays only for the ``[UNK]`` or
  the lowercase token, so the number is slightly optimistic for such text; the n-gram model's
  unknown symbol has the same bias. Report the unknown rate beside the number when it matters.

torch is imported inside the functions: ``ngram.py`` and the baseline script share the
definitions above without needing torch.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from textgen.models.backbone import BertBackbone
    from textgen.tokenizer import ChineseTokenizer


def counted_chars(text: str) -> str:
    """The characters bits/char divides by: the text without any whitespace."""
    return "".join(text.split())


@dataclass(frozen=True)
class LMCost:
    """Total cost in bits of some texts, with the counts it is divided by."""

    bits: float
    chars: int  # counted characters (non-whitespace)
    tokens: int  # predicted symbols: the tokens plus one end symbol per text

    @property
    def bits_per_char(self) -> float:
        if not self.chars:
            raise ValueError("no characters to score")
        return self.bits / self.chars

    @property
    def bits_per_token(self) -> float:
        return self.bits / self.tokens


@dataclass(frozen=True)
class MaskedLMScore:
    """How many masked tokens the bidirectional model restored exactly (argmax)."""

    correct: int
    masked: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.masked if self.masked else float("nan")


def _max_len(backbone: BertBackbone, max_len: int | None) -> int:
    limit = backbone.config.max_position_embeddings
    if max_len is None:
        return limit
    if not 2 < max_len <= limit:
        raise ValueError(f"max_len must be in 3..{limit} (the model's positions), not {max_len}")
    return max_len


def _batched_logits(
    backbone: BertBackbone, windows: Sequence[list[int]], mode: str, batch_size: int, pad_id: int
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """(window indices, logits [B, T, V]) for the windows, padded on the right; windows of similar
    length go together so little compute is spent on padding. Eval mode, no gradients."""
    import torch

    device = next(backbone.parameters()).device
    order = sorted(range(len(windows)), key=lambda i: len(windows[i]), reverse=True)
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                width = len(windows[idx[0]])
                ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.bool)
                for row, i in enumerate(idx):
                    ids[row, : len(windows[i])] = torch.tensor(windows[i])
                    mask[row, : len(windows[i])] = True
                hidden, _ = backbone.encode(ids.to(device), mode=mode, attention_mask=mask.to(device))
                yield idx, backbone.lm_logits(hidden).float()
    finally:
        backbone.train(was_training)


def lm_cost(
    backbone: BertBackbone,
    tokenizer: ChineseTokenizer,
    texts: Sequence[str],
    *,
    max_len: int | None = None,
    batch_size: int = 8,
) -> LMCost:
    """Total negative log-likelihood in bits of ``texts`` under the causal mode (module docstring)."""
    import torch

    max_len = _max_len(backbone, max_len)
    inputs: list[list[int]] = []
    targets: list[list[int]] = []
    chars = 0
    for text in texts:
        chars += len(counted_chars(text))
        stream = tokenizer.encode(text) + [tokenizer.sep_id]
        # Window k predicts stream[k*max_len : (k+1)*max_len] from [CLS] plus that chunk's prefix.
        for start in range(0, len(stream), max_len):
            chunk = stream[start : start + max_len]
            inputs.append([tokenizer.cls_id, *chunk[:-1]])
            targets.append(chunk)
    nats = 0.0
    for idx, logits in _batched_logits(backbone, inputs, "causal", batch_size, tokenizer.pad_id):
        logp = torch.log_softmax(logits, dim=-1)
        for row, i in enumerate(idx):
            y = torch.tensor(targets[i], device=logp.device)
            nats -= float(logp[row, : len(y)].gather(1, y[:, None]).double().sum())
    return LMCost(bits=nats / math.log(2), chars=chars, tokens=sum(map(len, targets)))


def masked_lm_score(
    backbone: BertBackbone,
    tokenizer: ChineseTokenizer,
    texts: Sequence[str],
    *,
    mask_prob: float = 0.15,
    seed: int = 0,
    max_len: int | None = None,
    batch_size: int = 8,
) -> MaskedLMScore:
    """Mask ``round(mask_prob * n)`` (at least one) of the n ordinary tokens of each window
    ``[CLS] chunk [SEP]`` with ``[MASK]`` and count exact argmax restorations in the bidirectional mode.

    Every chosen token becomes ``[MASK]`` (no BERT 80/10/10 noise: this measures, it does not
    train). Special tokens, ``[UNK]`` included, are never targets. The positions depend only on
    ``seed`` and the token ids, so two models sharing a tokenizer are scored on the same blanks.
    """
    if not 0 < mask_prob < 1:
        raise ValueError(f"mask_prob must be in (0, 1), not {mask_prob}")
    max_len = _max_len(backbone, max_len)
    rng = random.Random(seed)
    inputs: list[list[int]] = []
    answers: list[dict[int, int]] = []  # position -> original id, per window
    for text in texts:
        ids = tokenizer.encode(text)
        for start in range(0, len(ids), max_len - 2):
            window = [tokenizer.cls_id, *ids[start : start + max_len - 2], tokenizer.sep_id]
            candidates = [p for p in range(1, len(window) - 1) if window[p] not in tokenizer.special_ids]
            if not candidates:
                continue
            k = max(1, round(mask_prob * len(candidates)))
            chosen = sorted(rng.sample(candidates, k))
            answers.append({p: window[p] for p in chosen})
            for p in chosen:
                window[p] = tokenizer.mask_id
            inputs.append(window)
    correct = 0
    for idx, logits in _batched_logits(backbone, inputs, "bidirectional", batch_size, tokenizer.pad_id):
        predicted = logits.argmax(-1)
        for row, i in enumerate(idx):
            correct += sum(int(predicted[row, p]) == y for p, y in answers[i].items())
    return MaskedLMScore(correct=correct, masked=sum(map(len, answers)))
