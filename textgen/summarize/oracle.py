"""Oracle extraction labels (algorithms.md 2.2 step 2): the recursive, monotone matching of summary
clauses to document clauses by character-level "main" ROUGE (0.2 R-1 + 0.4 R-2 + 0.4 R-L F).

The longest summary clause is matched first to its most similar document clause j; the summary
clauses before it are then matched within document clauses ``[0, j]`` and those after it within
``[j, end)``, so the labels keep the document's order. Every matched clause is a positive: the
extractor aims at recall.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence


def _f(overlap: float, a: int, b: int) -> float:
    if overlap <= 0 or a == 0 or b == 0:
        return 0.0
    p, r = overlap / a, overlap / b
    return 2 * p * r / (p + r)


def lcs_length(a: str, b: str) -> int:
    """Length of the longest common subsequence (characters), bit-parallel (Hyyro 2004): one
    big-integer update per character of ``b`` instead of a row of ``len(a)`` Python steps."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    masks: dict[str, int] = {}
    for i, ch in enumerate(a):
        masks[ch] = masks.get(ch, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for ch in b:
        u = v & masks.get(ch, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def main_score(candidate: str, reference: str) -> float:
    """Character "main" ROUGE: 0.2 R-1 F + 0.4 R-2 F + 0.4 R-L F (SPACES' extraction similarity)."""
    a, b = candidate, reference
    r1 = _f(sum((Counter(a) & Counter(b)).values()), len(a), len(b))
    bi_a, bi_b = Counter(zip(a, a[1:])), Counter(zip(b, b[1:]))
    r2 = _f(sum((bi_a & bi_b).values()), max(len(a) - 1, 0), max(len(b) - 1, 0))
    rl = _f(lcs_length(a, b), len(a), len(b))
    return 0.2 * r1 + 0.4 * r2 + 0.4 * rl


def oracle_labels(doc_clauses: Sequence[str], summary_clauses: Sequence[str]) -> list[int]:
    """Sorted indices of the document clauses matched to some summary clause."""
    picked: set[int] = set()
    cache: dict[tuple[int, int], float] = {}

    def score(j: int, i: int) -> float:
        if (j, i) not in cache:
            cache[(j, i)] = main_score(doc_clauses[j], summary_clauses[i])
        return cache[(j, i)]

    stack = [(0, len(doc_clauses), 0, len(summary_clauses))]
    while stack:
        d0, d1, s0, s1 = stack.pop()
        if d0 >= d1 or s0 >= s1:
            continue
        i = max(range(s0, s1), key=lambda k: len(summary_clauses[k]))
        j = max(range(d0, d1), key=lambda k: score(k, i))
        picked.add(j)
        stack.append((d0, j + 1, s0, i))
        stack.append((j, d1, i + 1, s1))
    return sorted(picked)
