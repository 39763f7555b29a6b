"""Reference summaries every summarizer is measured against (``textgen eval summarize``).

* ``lead``: the document's first ``n`` characters;
* ``last``: its last ``n`` characters (judgements end with the holding, so this is strong there);
* ``textrank``: TextRank (Mihalcea and Tarau 2004) over sentences, the likeliest that fit in ``n``
  characters, in document order;
* ``oracle``: the oracle extraction for the reference summary (algorithms.md 2.2 step 2), the
  ceiling of any extractor that picks clauses.

TextRank is written here (some 40 lines) rather than taken from TextRank4ZH or sumy: the first is
unmaintained and breaks on networkx 3 (its issue #38), the second has no Chinese sentence splitting
and needs NLTK data files; neither is worth a dependency for a baseline.
"""

from __future__ import annotations

import math
import re

from textgen.summarize.clauses import split_clauses
from textgen.summarize.oracle import oracle_labels

_SENTENCE = re.compile(r"[^\n。！？；!?;]*[。！？；!?;]*[”’」』）)]*|\n")


def _flat(text: str) -> str:
    return "".join(text.split("\n"))


def lead(text: str, n: int) -> str:
    return _flat(text)[:n]


def last(text: str, n: int) -> str:
    return _flat(text)[-n:]


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE.findall(text) if s.strip()]


def textrank(text: str, n: int, damping: float = 0.85, iterations: int = 50) -> str:
    """The highest-ranked sentences that fit in ``n`` characters (the best one always, cut to
    ``n``), in document order. Similarity of two sentences: shared words over the sum of the logs
    of their word counts; ranks by PageRank on that weighted graph."""
    from textgen.evaluation.metrics import tokenize

    sents = sentences(text)
    if not sents:
        return ""
    import numpy as np

    words = [set(w for w in tokenize(s, "word") if any(ch.isalnum() for ch in w)) for s in sents]
    count = len(sents)
    weights = np.zeros((count, count))
    for i in range(count):
        for j in range(i + 1, count):
            shared = len(words[i] & words[j])
            if shared and len(words[i]) > 1 and len(words[j]) > 1:
                weights[i, j] = weights[j, i] = shared / (math.log(len(words[i])) + math.log(len(words[j])))
    out = weights.sum(1, keepdims=True)
    step = np.divide(weights, out, out=np.zeros_like(weights), where=out > 0).T  # [to, from]
    rank = np.ones(count)
    for _ in range(iterations):
        rank = (1 - damping) + damping * step @ rank
    kept, used = [], 0
    for i in sorted(range(count), key=lambda i: (-rank[i], i)):
        if used + len(sents[i]) <= n or not kept:
            kept.append(i)
            used += len(sents[i])
    return _flat("".join(sents[i] for i in sorted(kept)))[:n]


def oracle(text: str, summary: str) -> str:
    """The oracle extraction: the clauses matched to the summary's clauses, in document order."""
    clauses = split_clauses(text)
    return "".join(clauses[i] for i in oracle_labels(clauses, split_clauses(summary)))
