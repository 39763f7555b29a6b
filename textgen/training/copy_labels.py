"""B/I/O copy labels from the longest common subsequence of source and target tokens (SPACES,
algorithms.md 2.3): a matched token is B, or I when it continues the previous match contiguously in
*both* sequences; an unmatched token is O. Both sides are tagged: the source tokens for the encoder
side of the copy loss, the target tokens for the decoder side.

Example: source 我 真的 非常 热爱 我 的 祖国, target 我 爱 我 的 祖国 -> LCS 我 我 的 祖国 ->
target tags B O B I I.

The labels are computed on the clean source (algorithms.md 9.2 leaves open whether the reference
code's use of the noised source was intended; the clean source gives the tags the decoder should
follow at inference, where there is no noise).
"""

from __future__ import annotations

from collections.abc import Sequence

O, B, I = 0, 1, 2  # noqa: E741 -- the tag names of the paper


def lcs_pairs(src: Sequence[int], tgt: Sequence[int]) -> list[tuple[int, int]]:
    """Matched (source index, target index) pairs of one longest common subsequence, in order.
    Ties prefer the latest source occurrence for the earliest target token (a backward trace that
    keeps matched runs contiguous where it can)."""
    n, m = len(src), len(tgt)
    if not n or not m:
        return []
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        row, below = table[i], table[i + 1]
        s = src[i]
        for j in range(m - 1, -1, -1):
            row[j] = below[j + 1] + 1 if s == tgt[j] else (below[j] if below[j] >= row[j + 1] else row[j + 1])
    pairs, i, j = [], 0, 0
    while i < n and j < m:
        if src[i] == tgt[j] and table[i][j] == table[i + 1][j + 1] + 1:
            pairs.append((i, j))
            i += 1
            j += 1
        elif table[i + 1][j] >= table[i][j + 1]:
            i += 1
        else:
            j += 1
    return pairs


def copy_tags(src: Sequence[int], tgt: Sequence[int]) -> tuple[list[int], list[int]]:
    """(source tags, target tags), each O/B/I per token."""
    src_tags, tgt_tags = [O] * len(src), [O] * len(tgt)
    prev: tuple[int, int] | None = None
    for i, j in lcs_pairs(src, tgt):
        tag = I if prev is not None and prev == (i - 1, j - 1) else B
        src_tags[i] = tgt_tags[j] = tag
        prev = (i, j)
    return src_tags, tgt_tags
