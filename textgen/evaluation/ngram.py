"""A character trigram language model with interpolated Kneser-Ney smoothing: the baseline that
any neural model's bits per character should beat.

It predicts exactly what ``lm.py`` charges a neural model for: the counted (non-whitespace)
characters of each text, then an end-of-text symbol. Contexts at the start of a text are padded
with a begin symbol that is never predicted.

Smoothing (Chen & Goodman 1998, interpolated KN with one fixed discount D per order)::

    P3(w|uv) = (max(c(uvw) - D, 0) + D * T3(uv) * P2(w|v)) / c(uv.)
    P2(w|v)  = (max(N(.vw) - D, 0) + D * T2(v) * P1(w)) / N(.v.)
    P1(w)    = (max(N(.w) - D, 0) + D * T1 / |V|) / N(..)

c counts trigram tokens; N(.vw) counts the distinct u seen before vw and N(.w) the distinct v
before w (continuation counts); T is the number of distinct words following a context at that
level. A context never seen falls through to the next order. Because every count is at least
1 > D, each level sums to exactly 1 over the vocabulary V = training characters + unknown + end.

Characters seen fewer than ``min_count`` times are trained as the unknown symbol, so it gets real
counts rather than a guess. Predicting the unknown symbol costs only its own probability (the
spelling of the unknown character is free), the same optimism as a neural model's ``[UNK]``.

Plain dicts of string keys (a trigram is a 3-character string): training on ~10 M characters takes
well under a minute.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

from textgen.evaluation.lm import LMCost, counted_chars

# Whitespace never survives counted_chars(), so whitespace characters are free to be the symbols.
BOS, EOS, UNK = "\t", "\n", " "


class TrigramKN:
    """Character trigram model; build it with ``TrigramKN.train(texts)``."""

    def __init__(self, trigrams: Counter[str], vocab: frozenset[str], discount: float) -> None:
        if not 0 < discount < 1:
            raise ValueError(f"discount must be in (0, 1), not {discount}")
        self.discount = discount
        self.vocab = vocab  # the characters the model knows (not the symbols)
        self.symbols = frozenset(vocab | {UNK, EOS})  # what it predicts
        self.tri = trigrams
        self.tri_total: Counter[str] = Counter()  # c(uv.)
        self.tri_types: Counter[str] = Counter()  # T3(uv)
        self.bi_cont: Counter[str] = Counter()  # N(.vw)
        for uvw, n in trigrams.items():
            self.tri_total[uvw[:2]] += n
            self.tri_types[uvw[:2]] += 1
            self.bi_cont[uvw[1:]] += 1
        self.bi_total: Counter[str] = Counter()  # N(.v.)
        self.bi_types: Counter[str] = Counter()  # T2(v)
        self.uni_cont: Counter[str] = Counter()  # N(.w)
        for vw, n in self.bi_cont.items():
            self.bi_total[vw[0]] += n
            self.bi_types[vw[0]] += 1
            self.uni_cont[vw[1]] += 1
        self.uni_total = sum(self.uni_cont.values())  # N(..)
        self.uni_types = len(self.uni_cont)  # T1

    @classmethod
    def train(cls, texts: Iterable[str], *, discount: float = 0.75, min_count: int = 2) -> TrigramKN:
        """Count the trigrams of ``BOS BOS chars EOS`` for every text."""
        streams = [counted_chars(t) for t in texts]
        counts = Counter("".join(streams))
        vocab = frozenset(c for c, n in counts.items() if n >= min_count)
        table = {ord(c): UNK for c, n in counts.items() if n < min_count}
        joined = "".join(BOS + BOS + s.translate(table) + EOS for s in streams)
        # Trigrams across text boundaries end in BOS (x EOS BOS, EOS BOS BOS); BOS is never
        # predicted, so they are dropped. All others are exactly the within-text trigrams.
        trigrams = Counter(joined[i : i + 3] for i in range(len(joined) - 2))
        for key in [k for k in trigrams if k[2] == BOS]:
            del trigrams[key]
        return cls(trigrams, vocab, discount)

    def _symbol(self, ch: str) -> str:
        return ch if ch in self.symbols or ch == BOS else UNK

    def prob(self, symbol: str, context: str) -> float:
        """P(symbol | the two symbols before it); ``symbol`` in ``self.symbols``, context chars may
        also be BOS. Unknown characters are mapped to UNK."""
        w = self._symbol(symbol)
        u, v = (self._symbol(c) for c in context[-2:].rjust(2, BOS))
        d = self.discount
        p = (max(self.uni_cont.get(w, 0) - d, 0) + d * self.uni_types / len(self.symbols)) / self.uni_total
        if n := self.bi_total.get(v):
            p = (max(self.bi_cont.get(v + w, 0) - d, 0) + d * self.bi_types[v] * p) / n
        if n := self.tri_total.get(u + v):
            p = (max(self.tri.get(u + v + w, 0) - d, 0) + d * self.tri_types[u + v] * p) / n
        return p

    def cost(self, texts: Sequence[str]) -> LMCost:
        """Total bits of ``texts`` (each character, then EOS), with the counts of ``lm.py``."""
        bits = 0.0
        chars = predicted = 0
        for text in texts:
            seq = [self._symbol(c) for c in counted_chars(text)] + [EOS]
            chars += len(seq) - 1
            predicted += len(seq)
            u, v = BOS, BOS
            for w in seq:
                bits -= math.log2(self.prob(w, u + v))
                u, v = v, w
        return LMCost(bits=bits, chars=chars, tokens=predicted)

    def bits_per_char(self, texts: Sequence[str]) -> float:
        return self.cost(texts).bits_per_char

    def unknown_rate(self, texts: Sequence[str]) -> float:
        """Share of counted characters the model does not know (scored as UNK)."""
        chars = "".join(counted_chars(t) for t in texts)
        return sum(c not in self.vocab for c in chars) / max(len(chars), 1)
