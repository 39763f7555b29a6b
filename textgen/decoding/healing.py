"""Token healing: let a continuation extend a word the prompt stops inside (algorithms.md 5.4).

With word-level vocabularies a prompt ending in "白云" is tokenized ending in the token 白云,
after which a model trained on "白云机场" (one token) almost never produces "机场": the training
data never showed that split. The fix backs the prompt off to before its last token(s), decodes
with the constraint that the output must first re-spell the backed-off text ``r`` -- any token
whose text extends ``r`` (白云机场) or is a prefix of what remains of ``r`` (白, then 云) -- and
shows the user only what comes after ``r``.

How far to back off (the author leaves ">= 2 tokens" open; our [inferred] rule): the longest run
of trailing tokens whose text is a proper prefix of some vocabulary token. Runs are cut at special
tokens (never backed off), at the start of the prompt, and at byte positions inside a UTF-8
character. Everything is done on bytes, so byte-level BPE pieces (GPT-2) work like whole words.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from textgen.decoding.processors import NEG_INF, LogitsProcessor

if TYPE_CHECKING:
    from textgen.models.adapters import Adapter


def _to_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class Vocabulary:
    """Token surface bytes with the two prefix queries healing needs."""

    def __init__(self, token_texts: Sequence[str]) -> None:
        self.token_bytes = [_to_bytes(t) for t in token_texts]
        self.sorted = sorted((b, i) for i, b in enumerate(self.token_bytes) if b)
        self._keys = [b for b, _ in self.sorted]
        self.by_bytes: dict[bytes, list[int]] = {}
        for i, b in enumerate(self.token_bytes):
            if b:
                self.by_bytes.setdefault(b, []).append(i)
        self.lengths = torch.tensor([len(b) for b in self.token_bytes], dtype=torch.long)
        self.longest = max((len(b) for b in self.token_bytes), default=0)

    def extending(self, prefix: bytes) -> list[int]:
        """Ids whose bytes start with ``prefix`` (including an exact match)."""
        lo = bisect.bisect_left(self._keys, prefix)
        hi = lo
        while hi < len(self._keys) and self._keys[hi].startswith(prefix):
            hi += 1
        return [i for _, i in self.sorted[lo:hi]]

    def has_proper_extension(self, prefix: bytes) -> bool:
        lo = bisect.bisect_right(self._keys, prefix)
        return lo < len(self._keys) and self._keys[lo].startswith(prefix)

    def compatible(self, remaining: bytes) -> list[int]:
        """Ids that keep the output consistent with ``remaining``: they extend it or are a
        prefix of it (so the text can be spelled in pieces)."""
        ids = self.extending(remaining)
        for k in range(1, len(remaining)):
            ids += self.by_bytes.get(remaining[:k], [])
        return ids


@dataclass
class Healed:
    """A prompt split for healing: decode from ``context_ids``; the output re-spells ``remainder``
    (the text of the ``backed_off`` prompt tokens). Re-spelling uses output tokens, so a caller
    may raise ``max_new_tokens`` by ``backed_off`` to keep the length budget of the new text."""

    context_ids: list[int]
    remainder: str
    backed_off: int = 0

    def strip(self, text: str) -> str:
        """The new part of a decoded continuation: ``text`` minus the leading remainder. Spaces a
        decoder inserts between tokens are not part of the match."""
        if not self.remainder:
            return text
        if text.startswith(self.remainder):
            return text[len(self.remainder) :]
        pos = 0
        for ch in self.remainder:
            if ch.isspace():
                continue
            while pos < len(text) and text[pos].isspace() and text[pos] != ch:
                pos += 1
            if pos >= len(text) or text[pos] != ch:
                return text  # the output did not re-spell the remainder; show it whole
            pos += 1
        return text[pos:]


def back_off(vocab: Vocabulary, ids: Sequence[int]) -> tuple[list[int], bytes]:
    """Split ``ids`` into (context, remainder bytes) by the rule in the module docstring."""
    best = 0
    tail = b""
    for j in range(1, len(ids) + 1):
        piece = vocab.token_bytes[ids[-j]]
        if not piece:  # a special token (or one with no text): never back off across it
            break
        tail = piece + tail
        if len(tail) >= vocab.longest:
            break
        if vocab.has_proper_extension(tail) and _whole_characters(tail):
            best = j
    if best == 0:
        return list(ids), b""
    return list(ids[:-best]), b"".join(vocab.token_bytes[i] for i in ids[-best:])


def _whole_characters(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class HealingConstraint(LogitsProcessor):
    """Row i's output must start by re-spelling ``remainders[i]`` (bytes); rows with an empty
    remainder are free. Once a row's generated bytes cover its remainder it is free too."""

    def __init__(self, vocab: Vocabulary, remainders: Sequence[bytes]) -> None:
        self.vocab = vocab
        self.remainders = [bytes(r) for r in remainders]
        self._needed = torch.tensor([len(r) for r in self.remainders], dtype=torch.long)
        self._row = torch.arange(len(self.remainders))  # which remainder each row spells
        self._allowed_cache: dict[bytes, torch.Tensor] = {}

    def __call__(self, generated, logits):
        needed = self._needed.index_select(0, self._row)
        consumed = self.vocab.lengths[generated.cpu()].sum(dim=1) if generated.shape[1] else torch.zeros_like(needed)
        open_rows = (consumed < needed).nonzero().flatten().tolist()
        if not open_rows:
            return logits
        if logits.shape[-1] != len(self.vocab.token_bytes):
            raise ValueError(f"healing vocabulary has {len(self.vocab.token_bytes)} tokens, logits {logits.shape[-1]}")
        keep = torch.ones(logits.shape, dtype=torch.bool)
        for r in open_rows:
            remaining = self.remainders[int(self._row[r])][int(consumed[r]) :]
            keep[r] = False
            keep[r, self._allowed(remaining)] = True
        return logits.masked_fill(~keep.to(logits.device), NEG_INF)

    def _allowed(self, remaining: bytes) -> torch.Tensor:
        ids = self._allowed_cache.get(remaining)
        if ids is None:
            ids = torch.tensor(sorted(set(self.vocab.compatible(remaining))), dtype=torch.long)
            if ids.numel() == 0:
                raise ValueError(f"no vocabulary token can spell {remaining!r}")
            self._allowed_cache[remaining] = ids
        return ids

    def reorder(self, index):
        self._row = self._row.index_select(0, index.cpu())


def heal(
    adapter: Adapter, prompts: Sequence[str], *, enabled: bool = True, vocab: Vocabulary | None = None
) -> tuple[list[Healed], HealingConstraint | None]:
    """Prepare continuation prompts: the healed splits, and the constraint to pass to
    ``generate(..., processors=[constraint])`` (``None`` when nothing needs healing or healing is
    off). Decode each output and call ``healed[i].strip(text)`` to get only the new text.

    ``vocab`` may be passed to reuse the prefix index across calls (building it walks the vocabulary).
    """
    ids = [adapter.encode(p) for p in prompts]
    if not enabled:
        return [Healed(x, "") for x in ids], None
    vocab = vocab or Vocabulary(adapter.token_texts())
    splits = [back_off(vocab, x) for x in ids]
    healed = [Healed(ctx, rest.decode("utf-8"), len(x) - len(ctx)) for x, (ctx, rest) in zip(ids, splits)]
    if not any(rest for _, rest in splits):
        return healed, None
    return healed, HealingConstraint(vocab, [rest for _, rest in splits])
