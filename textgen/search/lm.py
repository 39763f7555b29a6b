"""The language models the samplers ask: sentence log-probabilities, forward-LM candidates and
masked-LM distributions, always for a whole batch at once.

``BackboneLM`` wraps our ``BertBackbone`` (algorithms.md 0): the causal mode scores sentences
``[CLS] x [SEP]`` (the end is paid for, as in ``textgen eval lm``) and ranks the next token after a
prefix; the bidirectional mode gives the masked-LM distribution at a position. Its two-pass
scoring is what keeps CGMH cheap: a proposal's K candidate sentences share everything before the
edited position, so the prefix is encoded once (with a KV cache) and only the K suffixes are run,
all in one batch. The language-model head, the larger half of the work for a 17k vocabulary, runs
only on real (unpadded) positions.

``HFScorer`` scores whole sentences with any Hugging Face causal LM (GPT-2 style, or the model
inside a chat adapter): ``<bos> text <eos>``, right-padded, in row chunks that bound the logits'
memory for large vocabularies.

On CPUs with native bf16 instructions (and on CUDA) the passes run under bf16 autocast (measured
1.7x faster here on mini-zh-sized batches); log-softmax and sums stay in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch

from textgen.tokenizer import is_cjk, is_punctuation

SENTENCE_ENDS = "。！？!?…"

if TYPE_CHECKING:
    from textgen.models.backbone import BertBackbone, KVCache
    from textgen.tokenizer import ChineseTokenizer


def _pad(rows: Sequence[Sequence[int]], pad: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(1, max(len(r) for r in rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(list(r), dtype=torch.long)
        mask[i, : len(r)] = True
    return ids.to(device), mask.to(device)


def _length_buckets(rows: list[int], lengths: Sequence[int], waste: float = 1.25) -> list[list[int]]:
    """``rows`` in groups whose padded size stays within ``waste`` times their real size, longest first."""
    buckets: list[list[int]] = []
    real = 0
    for i in sorted(rows, key=lambda i: -lengths[i]):
        if buckets and (len(buckets[-1]) + 1) * lengths[buckets[-1][0]] <= waste * (real + lengths[i]):
            buckets[-1].append(i)
            real += lengths[i]
        else:
            buckets.append([i])
            real = lengths[i]
    return buckets


def _autocast(device: torch.device, bf16: bool | None) -> str | None:
    if bf16 is None:
        from textgen.training.trainer import cpu_has_bf16

        bf16 = device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())
    return device.type if bf16 else None


@dataclass
class Prefix:
    """The encoded prefixes of a batch: their cache, the next-token log-probabilities after each
    (``[R, V]``) and each prefix's own log-probability after ``[CLS]`` (``[R]``)."""

    cache: KVCache
    next_logprobs: torch.Tensor
    logp: torch.Tensor


class BackboneLM:
    """Causal and masked LM of one ``BertBackbone`` with its tokenizer.

    ``window`` is the longest sequence the model was trained on, ``[CLS]`` and ``[SEP]`` included
    (textgen.json's ``max_context_tokens``); ``bf16`` None means autocast where it is native."""

    def __init__(
        self,
        model: BertBackbone,
        tokenizer: ChineseTokenizer,
        *,
        name: str = "",
        window: int | None = None,
        bf16: bool | None = None,
        head_rows: int | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.device = next(model.parameters()).device
        positions = model.config.max_position_embeddings
        self.window = min(window or positions, positions)
        self.autocast = _autocast(self.device, bf16)
        # Rows per vocabulary projection: bf16 logits of 32 rows stay in L2; fp32 prefers bigger blocks.
        self.head_rows = head_rows or (32 if self.autocast else 128)
        self._bf16_weight: torch.Tensor | None = None
        self._bf16_source: torch.Tensor | None = None
        vocab = model.config.vocab_size
        texts = [tokenizer.token_text(i) if i < len(tokenizer) else "" for i in range(vocab)]
        banned = set(tokenizer.special_ids) | {tokenizer.unk_id}
        # Tokens a sampler may propose: real text (no specials, no [UNK]).
        self.proposable = torch.tensor([bool(t) and i not in banned for i, t in enumerate(texts)], device=self.device)
        # Punctuation may not open a sentence; sentence ends may not appear inside a keyword sentence.
        self.punctuation = torch.tensor([bool(t) and all(map(is_punctuation, t)) for t in texts], device=self.device)
        # Fixed-length blanks take exactly one character (not a punctuation mark) per blank.
        self.single_char = self.proposable & ~self.punctuation & torch.tensor([len(t) == 1 for t in texts], device=self.device)
        self.sentence_end = torch.tensor([bool(t) and t[-1] in SENTENCE_ENDS for t in texts], device=self.device)
        # Words (two or more CJK characters): a searched sentence should not say one twice.
        self.words = frozenset(i for i, t in enumerate(texts) if len(t) > 1 and all(map(is_cjk, t)))

    # ------------------------------------------------------------------ text
    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids)

    @property
    def max_tokens(self) -> int:
        """The longest sentence (without ``[CLS]``/``[SEP]``) the model reads."""
        return self.window - 2

    # ------------------------------------------------------------------ passes
    def _context(self) -> ExitStack:
        stack = ExitStack()
        stack.enter_context(torch.inference_mode())
        if self.autocast is not None:
            stack.enter_context(torch.autocast(self.autocast, dtype=torch.bfloat16))
        return stack

    def _token_logp(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """log p(target) at each row of ``hidden`` ``[P, H]``. The vocabulary projection runs in
        row chunks small enough for the logits to stay in cache (2x faster than one big block
        here), in bf16 when autocast is on; the log-sum-exp in float32."""
        from textgen.decoding.search import chosen_log_prob

        weight, bias = self._head_weight(), self.model.head_bias
        out = []
        for start in range(0, len(hidden), self.head_rows):
            states = self.model.head_states(hidden[start : start + self.head_rows])
            logits = torch.nn.functional.linear(states.to(weight.dtype), weight).float() + bias
            out.append(chosen_log_prob(logits, targets[start : start + self.head_rows]))
        return torch.cat(out) if out else hidden.new_zeros(0, dtype=torch.float32)

    def _head_weight(self) -> torch.Tensor:
        """The output projection (tied word embeddings), cast once to bf16 under autocast."""
        weight = self.model.word_embeddings.weight
        if self.autocast is None:
            return weight
        if self._bf16_weight is None or self._bf16_source is not weight:
            self._bf16_weight, self._bf16_source = weight.detach().to(torch.bfloat16), weight
        return self._bf16_weight

    def _row_sums(self, values: torch.Tensor, rows: torch.Tensor, n: int) -> torch.Tensor:
        return torch.zeros(n, dtype=torch.float32, device=self.device).index_add_(0, rows, values)

    def prefix(self, rows: Sequence[Sequence[int]]) -> Prefix:
        """Encode ``[CLS] row`` causally for every row (one batch)."""
        t = self.tokenizer
        ids, mask = _pad([[t.cls_id, *r] for r in rows], t.pad_id, self.device)
        with self._context():
            hidden, cache = self.model.encode(
                ids, mode="causal", token_type_ids=torch.zeros_like(ids), attention_mask=mask, use_cache=True
            )
            last = mask.sum(1) - 1
            rows_idx = torch.arange(len(rows), device=self.device)
            next_logprobs = self.model.lm_logits(hidden[rows_idx, last]).float().log_softmax(-1)
            inner = mask.clone()
            inner[rows_idx, last] = False  # positions that predict a token of the prefix
            targets = ids[:, 1:][inner[:, :-1]]
            logp = self._row_sums(self._token_logp(hidden[inner], targets), inner.nonzero()[:, 0], len(rows))
        return Prefix(cache, next_logprobs, logp)

    def suffix_logp(self, prefix: Prefix, owner: Sequence[int], suffixes: Sequence[Sequence[int]]) -> torch.Tensor:
        """log p(suffix ``[SEP]`` | prefix ``owner[i]``) for each suffix (``[N]``): the first token
        from the prefix's next-token distribution, the rest through the prefix's cache, in
        batches of similar length (a proposal's candidates share one length, so padding to the
        longest suffix of all chains would waste a third of the encoder's work)."""
        sep = self.tokenizer.sep_id
        owner_t = torch.tensor(list(owner), dtype=torch.long, device=self.device)
        first = torch.tensor([s[0] if s else sep for s in suffixes], dtype=torch.long, device=self.device)
        out = prefix.next_logprobs[owner_t, first].clone()
        for bucket in _length_buckets([i for i, s in enumerate(suffixes) if s], [len(s) for s in suffixes]):
            ids, mask = _pad([suffixes[i] for i in bucket], self.tokenizer.pad_id, self.device)
            targets = torch.cat([ids[:, 1:], torch.full_like(ids[:, :1], self.tokenizer.pad_id)], dim=1)
            targets[torch.arange(len(bucket), device=self.device), mask.sum(1) - 1] = sep
            rows = torch.tensor(bucket, dtype=torch.long, device=self.device)
            with self._context():
                cache = prefix.cache.reorder(owner_t[rows])
                hidden, _ = self.model.encode(ids, token_type_ids=torch.zeros_like(ids), attention_mask=mask, cache=cache)
                logp = self._token_logp(hidden[mask], targets[mask])
            out.index_add_(0, rows, self._row_sums(logp, mask.nonzero()[:, 0], len(bucket)))
        return out

    def sentence_logp(self, rows: Sequence[Sequence[int]]) -> torch.Tensor:
        """log p(``[CLS] row [SEP]``) for each row, the end included."""
        p = self.prefix(rows)
        return p.logp + p.next_logprobs[:, self.tokenizer.sep_id]

    def masked_logprobs(self, rows: Sequence[Sequence[int]], positions: Sequence[int]) -> torch.Tensor:
        """The masked LM's log-distribution ``[R, V]`` at ``positions[i]`` of row i, that token
        replaced by ``[MASK]`` and the rest of the row visible (``[CLS] row [SEP]``)."""
        t = self.tokenizer
        seqs = []
        for r, p in zip(rows, positions):
            seq = [t.cls_id, *r, t.sep_id]
            seq[p + 1] = t.mask_id
            seqs.append(seq)
        ids, mask = _pad(seqs, t.pad_id, self.device)
        at = torch.tensor([p + 1 for p in positions], dtype=torch.long, device=self.device)
        with self._context():
            hidden, _ = self.model.encode(ids, mode="bidirectional", token_type_ids=torch.zeros_like(ids), attention_mask=mask)
            return self.model.lm_logits(hidden[torch.arange(len(rows), device=self.device), at]).float().log_softmax(-1)

    def embed(self, rows: Sequence[Sequence[int]]) -> torch.Tensor:
        """Unit-length bag-of-words vectors ``[N, H]``: the mean of the rows' input embeddings.
        No forward pass, so a rewrite can compare every candidate with its source for free;
        trained embeddings put words of similar meaning close together."""
        ids, mask = _pad(rows, self.tokenizer.pad_id, self.device)
        with torch.inference_mode():
            vectors = self.model.word_embeddings(ids).float() * mask[..., None]
            pooled = vectors.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return torch.nn.functional.normalize(pooled, dim=-1)


class TextScorer(Protocol):
    """A fluency scorer that reads text (another tokenizer than the proposal model's)."""

    name: str
    window: int | None  # the longest sequence it reads, in its own tokens

    def length(self, text: str) -> int: ...

    def sentence_logp(self, texts: Sequence[str]) -> torch.Tensor: ...


class HFScorer:
    """Sentence log-probabilities ``log p(text <eos> | <bos>)`` under a Hugging Face causal LM.

    Models with neither a BOS nor an EOS token to start from get the first token for free."""

    def __init__(self, model: Any, tokenizer: Any, *, name: str = "", max_logits: int = 1 << 26) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.device = next(model.parameters()).device
        gen = getattr(model, "generation_config", None)
        eos = getattr(gen, "eos_token_id", None)
        eos = eos if eos is not None else tokenizer.eos_token_id
        self.eos = eos[0] if isinstance(eos, list) else eos
        bos = getattr(gen, "bos_token_id", None)
        self.bos = bos if bos is not None else (tokenizer.bos_token_id if tokenizer.bos_token_id is not None else self.eos)
        pad = tokenizer.pad_token_id
        self.pad = pad if pad is not None else (self.eos if self.eos is not None else 0)
        n = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
        self.window = int(n) if n else None
        self.vocab = model.get_output_embeddings().weight.shape[0]
        self.max_logits = max_logits

    def ids(self, text: str) -> list[int]:
        body = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ([self.bos] if self.bos is not None else []) + body + ([self.eos] if self.eos is not None else [])

    def length(self, text: str) -> int:
        return len(self.ids(text))

    def sentence_logp(self, texts: Sequence[str]) -> torch.Tensor:
        rows = [self.ids(t) for t in texts]
        out = torch.zeros(len(rows), dtype=torch.float32)
        width = max(len(r) for r in rows)
        chunk = max(1, self.max_logits // max(1, width * self.vocab))
        with torch.inference_mode():
            for start in range(0, len(rows), chunk):
                part = rows[start : start + chunk]
                ids, mask = _pad(part, self.pad, self.device)
                logits = self.model(input_ids=ids, attention_mask=mask.long()).logits[:, :-1].float()
                logp = logits.log_softmax(-1).gather(2, ids[:, 1:, None]).squeeze(2)
                out[start : start + len(part)] = (logp * mask[:, 1:]).sum(1).cpu()
        return out


class StepScorer:
    """Sentence log-probabilities ``log p(text <end> | <start>)`` under any causal adapter of the
    step interface (a GGUF model on llama.cpp): all sentences in one batch, fed a token at a time
    (``start`` with the start token, then ``step``), the log-probability of each next token summed.

    ``<start>`` is the model's BOS, else the end token that separates its training documents (as
    a raw continuation starts); ``<end>`` is that same document end."""

    def __init__(self, adapter: Any, *, name: str = "") -> None:
        self.adapter = adapter
        self.name = name or adapter.name
        bos = getattr(adapter, "bos_token_id", None)
        # A chat adapter knows the token between its training documents (Qwen's <|endoftext|>);
        # its turn end (<|im_end|>) ends a chat answer, not a sentence.
        self.end = getattr(adapter, "doc_start", None) or adapter.eos_token_ids[0]
        self.begin = getattr(adapter, "doc_start", None) or (bos if bos is not None else self.end)
        self.window = adapter.input_limit(1)

    def ids(self, text: str) -> list[int]:
        return [self.begin, *self.adapter.source_ids(text), self.end]

    def length(self, text: str) -> int:
        return len(self.ids(text))

    def sentence_logp(self, texts: Sequence[str]) -> torch.Tensor:
        rows = [self.ids(t) for t in texts]
        width = max(len(r) for r in rows)
        pad = self.adapter.pad_token_id
        total = torch.zeros(len(rows), dtype=torch.float32)
        with torch.inference_mode():
            logits, state = self.adapter.start([[r[0]] for r in rows], width)
            for j in range(1, width):
                tokens = torch.tensor([r[j] if j < len(r) else pad for r in rows], dtype=torch.long)
                live = torch.tensor([j < len(r) for r in rows])
                logp = logits.float().log_softmax(-1).gather(1, tokens[:, None]).squeeze(1)
                total += torch.where(live, logp, torch.zeros_like(logp))
                if j < width - 1:
                    logits, state = self.adapter.step(state, tokens)
        return total
