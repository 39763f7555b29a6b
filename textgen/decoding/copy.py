"""Copy mechanisms: outputs built from the source, and numbers that are never made up.

Two logits processors (one row per input, state that follows its beam through ``reorder``) and a
helper that picks them by mode name, for every seq2seq task (titles, summaries, QA answers)::

    from textgen.decoding import DecodingConfig, generate
    from textgen.decoding.copy import CopyHead, TextCopy, copy_processors

    sources = [adapter.source_ids(article) for article in articles]   # what may be copied, as ids
    hyps = generate(adapter, inputs, config, processors=copy_processors(adapter, sources, "text"))

    # QA: every answer is one contiguous piece of its passage
    span = TextCopy.for_adapter(adapter, [adapter.encode(p) for p in passages], max_pieces=1)

``TextCopy(vocab, sources, *, max_pieces=None, numbers_only=False, max_new_tokens=None)``
  works on the source's TEXT, not on token ids, so it serves our word-unit vocabulary, WordPiece
  and byte-level BPE alike. The source text is the concatenation of the source tokens' surface
  bytes (``adapter.token_texts()``, as the tokenizer spells them: lowercased for BERT vocabularies);
  special and unknown tokens split it. The output is a sequence of *pieces*, each a substring of
  the source:

  * a token is allowed when its text continues the current piece so that the piece stays a
    substring of the source, or starts a new piece that is a substring of the source (a token
    never straddles two pieces); pieces start and end on whole characters, so byte-level tokens
    holding part of a UTF-8 character are matched byte by byte and never glued into a character
    the source does not have;
  * **numbers**: a number is a maximal run of digits (ASCII or full-width) with single ``.`` or
    ``,`` between digit runs (``0.7``, ``2023``, ``1,000``; ``textgen.evaluation.metrics.numbers``
    is the same definition). A piece never starts or ends inside a source number, and a new piece
    never starts with a digit (or ``.``/``,``) right after a digit, nor with a digit right after
    ``digit.``: every number of the output is a whole number of the source, never assembled from
    pieces of different numbers nor cut from a longer one (0.7% cannot become 7% or 3.2%). Where
    the decoder puts spaces between tokens (our vocabulary, WordPiece), a token continuing a
    number must be one the decoder glues on (``##5``), and where the source had a space between
    two numbers the output keeps it;
  * the end token is allowed only where the current piece may legally end (and at the start);
  * ``max_pieces=1`` makes the output one contiguous span of the source;
  * ``numbers_only=True`` leaves text without digits free and applies the rules above only to
    tokens with digits: the number rule without the copy (used with the copy head);
  * ``max_new_tokens``: near the cap only tokens after which the piece can still end in time are
    allowed, so an output cut at the length cap holds no cut number either.

  Per source the index is built once: for every position the vocabulary tokens whose bytes occur
  there (a walk over the sorted token bytes of :class:`textgen.decoding.healing.Vocabulary`), and
  which positions can still reach a legal end, so decoding never walks into a dead end. A step
  costs the size of the row's state (the source positions where its current piece may end), never
  a pass over the vocabulary. The state keeps every way of reading the output as pieces, each with
  the fewest pieces it needs, so ``max_pieces`` is exact.

``CopyHead(sources, eos_token_ids, *, top_k=10)``
  the SPACES copy-head decoding (algorithms.md 2.3) for models whose adapter reports the copy
  head's O/B/I probabilities (``adapter.copy_probs(state)``; our backbone with ``copy_head``):
  per row a copy length n; each step (1) read the tag probabilities of the next token, (2) forbid
  I when n = 0, (3) z = argmax: O -> n = 0, B -> n = 1, I -> n + 1; (4) when n > 0 only tokens that
  extend the last n - 1 output tokens to an n-gram of the source are allowed; when that prefix does
  not occur in the source, back off to n = 1 (any source token). n = 1 is handled explicitly (the
  reference code reached it only through the fallback), and the state follows its beam (the
  reference kept states in their slots while beams moved); (5) keep the ``top_k`` best logits (the
  sparse-softmax consistency of the reference; ``None`` keeps all). The end token counts as the
  source's last token, as in the reference (its source ends with ``[SEP]``). Put a
  ``TextCopy(numbers_only=True)`` BEFORE it so numbers stay faithful in this mode too: when the
  head's candidates and the earlier constraints leave nothing in common, the row decodes under the
  earlier constraints alone (n = 0) instead of failing.

``copy_processors(adapter, sources, mode, *, max_new_tokens=None)``
  the processors of one mode of ``MODES``: ``off`` (none), ``text`` (TextCopy), ``span``
  (TextCopy, one piece), ``head`` (number rule + CopyHead; a ``ValueError`` when the model has no
  copy head).
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from textgen.decoding.healing import Vocabulary
from textgen.decoding.processors import NEG_INF, LogitsProcessor

if TYPE_CHECKING:
    from textgen.models.adapters import Adapter

MODES = ("off", "text", "span", "head")

_SPLIT = 0xFF  # never a byte of UTF-8 text: separates the parts of a source (special tokens, [UNK])
_FULLWIDTH_DIGIT = re.compile(rb"\xef\xbc[\x90-\x99]")
_NUMBER = re.compile(rb"(?:[0-9]|\xef\xbc[\x90-\x99])+(?:[.,](?:[0-9]|\xef\xbc[\x90-\x99])+)*")
_HAS_DIGIT = re.compile(rb"[0-9]|\xef\xbc[\x90-\x99]")
_CONTEXT = 8  # tokens of context the decoder's spacing is judged in
# How a text begins or ends, for the number rules.
_OTHER, _DIGIT, _SEP = 0, 1, 2  # _SEP: "." or "," (at an end: right after a digit)


def _starts_digit(b: bytes, p: int = 0) -> bool:
    return p < len(b) and (48 <= b[p] <= 57 or bool(_FULLWIDTH_DIGIT.match(b, p)))


def _ends_digit(b: bytes, p: int | None = None) -> bool:
    p = len(b) if p is None else p
    return p > 0 and (48 <= b[p - 1] <= 57 or (p >= 3 and bool(_FULLWIDTH_DIGIT.match(b, p - 3))))


def _head_class(b: bytes) -> int:
    if _starts_digit(b):
        return _DIGIT
    return _SEP if b[:1] in (b".", b",") else _OTHER


def _tail_class(b: bytes) -> int:
    if _ends_digit(b):
        return _DIGIT
    if b[-1:] in (b".", b",") and _ends_digit(b, len(b) - 1):
        return _SEP
    return _OTHER


# ---------------------------------------------------------------------- per vocabulary
class CopyVocabulary:
    """What the copy constraint needs to know about a vocabulary, built once per adapter
    (:meth:`for_adapter` caches it): token bytes and prefix queries (healing's
    :class:`~textgen.decoding.healing.Vocabulary`), which tokens hold digits, and whether the
    decoder glues a token onto a preceding digit (``decode`` is called lazily, only for tokens met
    inside numbers)."""

    def __init__(
        self, token_texts: Sequence[str], eos_token_ids: Sequence[int], decode: Callable[[list[int]], str] | None = None
    ) -> None:
        """``decode``: the adapter's ``decode`` (None: a decoder that never adds spaces, as byte-level BPE)."""
        self.vocab = Vocabulary(token_texts)
        self.size = len(self.vocab.token_bytes)
        self.eos = sorted({int(e) for e in eos_token_ids if 0 <= int(e) < self.size})
        self.texts = list(token_texts)
        self._decode = decode
        self._glue: dict[tuple[int, int], bool] = {}
        self._joins: dict[tuple[int, ...], bool] = {}
        # A digit token and a "." token to probe the decoder with.
        self._probe = {}
        for cls, candidates in ((_DIGIT, [b"1", b"0", *(bytes([48 + d]) for d in range(2, 10))]), (_SEP, [b"."])):
            for c in candidates:
                if self.vocab.by_bytes.get(c):
                    self._probe[cls] = self.vocab.by_bytes[c][0]
                    break
        # Free tokens for numbers_only: text without digits, never an end token. A byte-level
        # token ending in the first bytes of a full-width digit (EF, EF BC) is not free: the next
        # token could complete the digit.
        self.free = [bool(b) and not _HAS_DIGIT.search(b) and not b.endswith((b"\xef", b"\xef\xbc"))
                     for b in self.vocab.token_bytes]
        for e in self.eos:
            self.free[e] = False
        self.free_mask = torch.tensor(self.free, dtype=torch.bool)
        self.head = [_head_class(b) if b else _OTHER for b in self.vocab.token_bytes]

    @classmethod
    def for_adapter(cls, adapter: Adapter) -> CopyVocabulary:
        """The adapter's copy vocabulary, built on first use and kept while the adapter lives."""
        vocab = _BY_ADAPTER.get(adapter)
        if vocab is None:
            vocab = cls(adapter.token_texts(), adapter.eos_token_ids, adapter.decode)
            _BY_ADAPTER[adapter] = vocab
        return vocab

    def glued(self, token: int, after: int) -> bool:
        """Whether the decoder writes ``token`` right after a token ending in ``after`` (a digit
        or a separator) with nothing in between. Byte-level decoders always do; WordPiece-style
        decoders put a space before a whole word (``1 5``) but not before ``##5``."""
        key = (token, after)
        if key not in self._glue:
            probe = self._probe.get(after)
            if probe is None or self._decode is None:
                self._glue[key] = True
            else:
                self._glue[key] = self.joins([probe], token)
        return self._glue[key]

    def joins(self, context: Sequence[int], token: int) -> bool:
        """Whether the decoder writes ``token`` right after ``context`` with nothing in between.
        Decoders with spaces decide from context (ours spaces two whole words, ``s222 101``, but
        not ``段222101``), so the caller passes the tokens before (a few are enough)."""
        if self._decode is None or not context:
            return True
        key = (*context, token)
        if key not in self._joins:
            if len(self._joins) > 100_000:
                self._joins.clear()
            context = list(context)
            self._joins[key] = self._decode([*context, token]) == self._decode(context) + self.texts[token]
        return self._joins[key]


_BY_ADAPTER: weakref.WeakKeyDictionary[Any, CopyVocabulary] = weakref.WeakKeyDictionary()


# ---------------------------------------------------------------------- per source
class SourceIndex:
    """One source's text as bytes, with every vocabulary token occurring at each position.

    ``cont[p]``: token id -> end position, for tokens that may continue a piece at ``p`` (dead
    ends pruned); ``starts[t]``: the (start, end) positions where token ``t`` may begin a new
    piece; ``legal_end[p]``: a piece may end at ``p``; ``dist[p]``: the fewest tokens that take a
    piece from ``p`` to a legal end; ``need[p]``: between two number characters, whether a token
    continuing there must be glued on by the decoder (inside a number) or kept apart (the source
    had a space between two numbers). ``cont`` already applies ``need`` as seen after a lone digit
    or separator; decoding checks it again in each row's own context."""

    def __init__(self, vocab: CopyVocabulary, ids: Sequence[int]) -> None:
        self.vocab = vocab
        text, spaced = self._text(vocab, ids)
        self.text = text
        n = len(text)
        inside = bytearray(n + 1)  # 1: strictly inside a source number
        need = {}  # position -> True (must glue) / False (must not glue), for number characters
        for m in _NUMBER.finditer(text):
            a, b = m.span()
            for p in range(a + 1, b):
                if p in spaced and _ends_digit(text, p) and _starts_digit(text, p):
                    need[p] = False  # "2023 12": two numbers the output must keep apart
                else:
                    inside[p] = 1
                    need[p] = True
        self.need = need
        char_start = [p == n or (text[p] & 0xC0) != 0x80 for p in range(n + 1)]
        self.legal_end = [char_start[p] and not inside[p] for p in range(n + 1)]
        raw = [self._matches(vocab, text, p) for p in range(n)] + [{}]
        matches = list(raw)
        for p, found in enumerate(raw):
            if p in need:  # the decoder must glue (or not) this token onto the digit before
                after = _DIGIT if _ends_digit(text, p) else _SEP
                matches[p] = {t: e for t, e in found.items() if vocab.glued(t, after) == need[p]}
        # dist[p]: the fewest tokens from p to a place where a piece may end (inf: a dead end).
        dist = [math.inf] * (n + 1)
        for p in range(n, -1, -1):
            dist[p] = 0 if self.legal_end[p] else 1 + min((dist[e] for e in matches[p].values()), default=math.inf)
        self.dist = dist
        self.longest_walk = max((d for d in dist if d < math.inf), default=0)
        viable = [d < math.inf for d in dist]
        self.cont = [{t: e for t, e in m.items() if viable[e]} for m in matches]
        self.cont_ids = [list(m) for m in self.cont]
        self.starts: dict[int, list[tuple[int, int]]] = {}
        for p in range(n):
            if char_start[p] and not inside[p] and text[p] != _SPLIT:
                for t, e in raw[p].items():
                    if viable[e]:
                        self.starts.setdefault(t, []).append((p, e))
        self._new_masks: dict[tuple[int, bool, int | None], torch.Tensor] = {}

    @staticmethod
    def _text(vocab: CopyVocabulary, ids: Sequence[int]) -> tuple[bytes, set[int]]:
        """The source bytes (parts split by 0xFF) and the positions where the decoder spaces two
        digit-adjacent tokens apart (the source had a space there)."""
        out = bytearray()
        spaced: set[int] = set()
        part: list[int] = []  # the tokens of the current part so far
        for i in ids:
            i = int(i)
            b = vocab.vocab.token_bytes[i] if 0 <= i < vocab.size else b""
            if not b:
                out.append(_SPLIT)
                part = []
                continue
            if part and _ends_digit(out) and _starts_digit(b) and not vocab.joins(part[-_CONTEXT:], i):
                spaced.add(len(out))
            out += b
            part.append(i)
        return bytes(out), spaced

    @staticmethod
    def _matches(vocab: CopyVocabulary, text: bytes, p: int) -> dict[int, int]:
        """Token id -> end for every vocabulary token whose bytes occur at ``p`` (within one part)."""
        found: dict[int, int] = {}
        v = vocab.vocab
        stop = text.find(bytes([_SPLIT]), p)
        stop = len(text) if stop < 0 else stop
        for end in range(p + 1, min(stop, p + v.longest) + 1):
            chunk = text[p:end]
            for t in v.by_bytes.get(chunk, ()):
                found[t] = end
            if not v.has_proper_extension(chunk):
                break
        return found

    def new_mask(self, tail: int, numbers_only: bool, within: int | None) -> torch.Tensor:
        """Tokens that may start a new piece after an output ending in class ``tail`` (``within``:
        only those after which the piece can end in at most that many more tokens;
        ``numbers_only``: only tokens that are not free)."""
        key = (tail, numbers_only, within)
        mask = self._new_masks.get(key)
        if mask is None:
            mask = torch.zeros(self.vocab.size, dtype=torch.bool)
            ids = [t for t, spots in self.starts.items()
                   if _may_follow(tail, self.vocab.head[t])
                   and not (numbers_only and self.vocab.free[t])
                   and (within is None or any(self.dist[e] <= within for _, e in spots))]
            mask[ids] = True
            self._new_masks[key] = mask
        return mask


def _may_follow(tail: int, head: int) -> bool:
    """The adjacency rule at a piece boundary: a digit never follows a digit or ``digit.``, and a
    ``.``/``,`` never follows a digit (it could go on with digits and assemble a number)."""
    if tail == _DIGIT:
        return head == _OTHER
    if tail == _SEP:
        return head != _DIGIT
    return True


# ---------------------------------------------------------------------- the text constraint
class _Row:
    """One row's reading of its output: ``ends`` (source position where the current piece may end
    -> fewest pieces used), ``closed`` (fewest pieces of a reading with no open piece, or None),
    and the output's last bytes. Never mutated, so rows share them freely."""

    __slots__ = ("source", "ends", "closed", "tail")

    def __init__(self, source: int, ends: dict[int, int], closed: int | None, tail: bytes) -> None:
        self.source, self.ends, self.closed, self.tail = source, ends, closed, tail


class TextCopy(LogitsProcessor):
    """Outputs made of pieces of the source text, numbers whole (see the module docstring)."""

    def __init__(
        self,
        vocab: CopyVocabulary,
        sources: Sequence[Sequence[int]],
        *,
        max_pieces: int | None = None,
        numbers_only: bool = False,
        max_new_tokens: int | None = None,
    ) -> None:
        if max_pieces is not None and (isinstance(max_pieces, bool) or not isinstance(max_pieces, int) or max_pieces < 1):
            raise ValueError(f"max_pieces must be an integer >= 1 or None, not {max_pieces!r}")
        if numbers_only and max_pieces is not None:
            raise ValueError("max_pieces limits copied pieces; numbers_only copies only numbers: give one of them")
        if max_new_tokens is not None and (isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1):
            raise ValueError(f"max_new_tokens must be an integer >= 1 or None, not {max_new_tokens!r}")
        self.vocab = vocab
        self.max_pieces = max_pieces
        self.numbers_only = numbers_only
        self.max_new_tokens = max_new_tokens
        self.sources = [SourceIndex(vocab, ids) for ids in sources]
        self.rows = [_Row(i, {}, 0, b"") for i in range(len(self.sources))]
        self._t = 0

    @classmethod
    def for_adapter(cls, adapter: Adapter, sources: Sequence[Sequence[int] | str], **options: Any) -> TextCopy:
        """A constraint over ``sources`` (token ids, or texts that ``adapter.source_ids`` turns into ids)."""
        ids = [adapter.source_ids(s) if isinstance(s, str) else list(s) for s in sources]
        return cls(CopyVocabulary.for_adapter(adapter), ids, **options)

    def reorder(self, index):
        self.rows = [self.rows[i] for i in index.tolist()]

    def __call__(self, generated, logits):
        if logits.shape[-1] != self.vocab.size:
            raise ValueError(f"copy vocabulary has {self.vocab.size} tokens, logits {logits.shape[-1]}")
        t = generated.shape[1]
        if t > self._t:  # the rows chose their last token: read it
            last = generated[:, -1].tolist()
            self.rows = [self._advance(row, tok, generated[r, :-1]) for r, (row, tok) in enumerate(zip(self.rows, last))]
            self._t = t
        # Tokens left after this one: near the cap, only tokens from which a piece can still end.
        left = None if self.max_new_tokens is None else self.max_new_tokens - t - 1
        allowed = torch.zeros(logits.shape, dtype=torch.bool)
        rows: list[int] = []
        ids: list[int] = []
        for r, row in enumerate(self.rows):
            index = self.sources[row.source]
            within = left if left is not None and left < index.longest_walk else None
            for p in row.ends:
                if within is None and p not in index.need:
                    ids += index.cont_ids[p]
                else:
                    ids += [tok for tok, e in self._continuing(index, p, generated[r]).items()
                            if within is None or index.dist[e] <= within]
            k = self._start_pieces(row)
            if k is not None:  # the output may end here: end token, new pieces, free text
                ids += self.vocab.eos
                if self.max_pieces is None or k < self.max_pieces:
                    allowed[r] |= index.new_mask(_tail_class(row.tail), self.numbers_only, within)
                if self.numbers_only:
                    allowed[r] |= self.vocab.free_mask
            rows += [r] * (len(ids) - len(rows))
        if ids:
            allowed[rows, ids] = True
        return logits.masked_fill(~allowed.to(logits.device), NEG_INF)

    def _start_pieces(self, row: _Row) -> int | None:
        """The fewest pieces of a reading of the output that may end here (None: none may)."""
        index = self.sources[row.source]
        ks = [k for p, k in row.ends.items() if index.legal_end[p]]
        if row.closed is not None:
            ks.append(row.closed)
        return min(ks) if ks else None

    def _continuing(self, index: SourceIndex, p: int, before: torch.Tensor) -> dict[int, int]:
        """Tokens that may continue a piece at ``p`` after the row's tokens ``before``: between two
        digits, only those the decoder glues on (or keeps apart) as the source requires."""
        if p not in index.need:
            return index.cont[p]
        context = before[-_CONTEXT:].tolist()
        return {tok: e for tok, e in index.cont[p].items() if self.vocab.joins(context, tok) == index.need[p]}

    def _advance(self, row: _Row, tok: int, before: torch.Tensor) -> _Row:
        index = self.sources[row.source]
        tail = (row.tail + self.vocab.vocab.token_bytes[tok])[-4:]
        k = self._start_pieces(row)
        if self.numbers_only and k is not None and self.vocab.free[tok]:
            return _Row(row.source, {}, 0, tail)  # free text after a complete number
        ends: dict[int, int] = {}
        for p, pieces in row.ends.items():
            e = self._continuing(index, p, before).get(tok)
            if e is not None and pieces < ends.get(e, math.inf):
                ends[e] = pieces
        new_piece = k is not None and (self.max_pieces is None or k < self.max_pieces)
        if new_piece and _may_follow(_tail_class(row.tail), self.vocab.head[tok]):
            for _, e in index.starts.get(tok, ()):
                if k + 1 < ends.get(e, math.inf):
                    ends[e] = k + 1
        return _Row(row.source, ends, None, tail)


# ---------------------------------------------------------------------- the SPACES copy head
class CopyHead(LogitsProcessor):
    """SPACES copy-head decoding (algorithms.md 2.3, steps 1-6; see the module docstring)."""

    def __init__(self, sources: Sequence[Sequence[int]], eos_token_ids: Sequence[int], *, top_k: int | None = 10) -> None:
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be an integer >= 1 or None, not {top_k!r}")
        if not eos_token_ids:
            raise ValueError("the copy head needs the model's end token id(s)")
        self.top_k = top_k
        self.eos = sorted({int(e) for e in eos_token_ids})
        self.sources = [[int(i) for i in s] for s in sources]
        self.positions = []  # per source: token -> the positions it occupies
        for src in self.sources:
            where: dict[int, list[int]] = {}
            for j, tok in enumerate(src):
                where.setdefault(tok, []).append(j)
            self.positions.append(where)
        self.unigrams = [sorted(set(src) | set(self.eos)) for src in self.sources]
        self.row_source = list(range(len(self.sources)))
        # Per row: copy length n and the source positions whose token may come next (None: any
        # source token, n = 1; position len(source) stands for the end token).
        self.n = [0] * len(self.sources)
        self.next_at: list[frozenset[int] | None] = [None] * len(self.sources)
        self.probs: torch.Tensor | None = None
        self._t = 0

    def observe(self, adapter, state) -> None:
        self.probs = adapter.copy_probs(state)

    def reorder(self, index):
        order = index.tolist()
        self.row_source = [self.row_source[i] for i in order]
        self.n = [self.n[i] for i in order]
        self.next_at = [self.next_at[i] for i in order]

    def __call__(self, generated, logits):
        if self.probs is None:
            raise ValueError("copy=head needs a model with a copy head (config.json \"copy_head\": true)")
        t = generated.shape[1]
        last = generated[:, -1].tolist() if t > self._t else None
        self._t = t
        q = self.probs.detach().float().cpu().clone()
        if q.shape[0] != logits.shape[0]:
            raise ValueError(f"copy head gave {q.shape[0]} rows for {logits.shape[0]} rows of logits")
        tags = self._tags(q, last)
        keep = torch.zeros(logits.shape, dtype=torch.bool)
        rows, ids = [], []
        for r, z in enumerate(tags):
            if z == 0:
                keep[r] = True
                continue
            found = self._candidates(r)
            rows += [r] * len(found)
            ids += found
        if ids:
            keep[rows, ids] = True
        out = logits.masked_fill(~keep.to(logits.device), NEG_INF)
        # A row whose copy candidates were all banned by earlier constraints decodes without the copy rule.
        dead = ~torch.isfinite(out).any(dim=-1)
        if bool(dead.any()):
            for r in dead.nonzero().flatten().tolist():
                self.n[r], self.next_at[r] = 0, None
            out = torch.where(dead[:, None], logits, out)
        if self.top_k is not None and self.top_k < out.shape[-1]:
            kth = out.topk(self.top_k, dim=-1).values[:, -1:]
            out = out.masked_fill(out < kth, NEG_INF)
        return out

    def _tags(self, q: torch.Tensor, last: list[int] | None) -> list[int]:
        """Steps 2-4 for every row: the tag of the next token, and the row's new copy state."""
        prev_n = torch.tensor(self.n)
        q[:, 2] = torch.where(prev_n == 0, -q[:, 2], q[:, 2])  # no I right after O (or at the start)
        tags = q.argmax(dim=-1).tolist()
        for r, z in enumerate(tags):
            src = self.sources[self.row_source[r]]
            if z == 0:
                self.n[r], self.next_at[r] = 0, None
            elif z == 1:
                self.n[r], self.next_at[r] = 1, None
            else:
                tok = last[r] if last is not None else None
                before = self.next_at[r]
                if before is None:  # n was 1: the span so far is one token, anywhere in the source
                    spots = self.positions[self.row_source[r]].get(tok, [])
                    follow = frozenset(j + 1 for j in spots)
                else:
                    follow = frozenset(j + 1 for j in before if j < len(src) and src[j] == tok)
                if follow:
                    self.n[r], self.next_at[r] = self.n[r] + 1, follow
                else:  # the (n-1)-gram never occurs in the source: back off to n = 1
                    self.n[r], self.next_at[r] = 1, None
        return tags

    def _candidates(self, r: int) -> list[int]:
        s = self.row_source[r]
        spots = self.next_at[r]
        if spots is None:
            return self.unigrams[s]
        src = self.sources[s]
        return sorted({src[j] for j in spots if j < len(src)} | (set(self.eos) if len(src) in spots else set()))


# ---------------------------------------------------------------------- by mode
def copy_processors(
    adapter: Adapter, sources: Sequence[Sequence[int]], mode: str, *, max_new_tokens: int | None = None
) -> list[LogitsProcessor]:
    """The processors of copy mode ``mode`` (``MODES``) over ``sources`` (one id list per input)."""
    if mode not in MODES:
        raise ValueError(f"copy must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "off":
        return []
    if mode == "head" and not getattr(adapter, "has_copy_head", False):
        raise ValueError(f"copy=head needs a model with a copy head; {adapter.name} has none (use copy=text)")
    vocab = CopyVocabulary.for_adapter(adapter)
    if mode == "head":
        return [TextCopy(vocab, sources, numbers_only=True, max_new_tokens=max_new_tokens),
                CopyHead(sources, adapter.eos_token_ids)]
    return [TextCopy(vocab, sources, max_pieces=1 if mode == "span" else None, max_new_tokens=max_new_tokens)]
