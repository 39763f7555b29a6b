"""Scoring summaries: character ROUGE-1/2/L F1 and the CAIL2020 score, each with its unit.

* char ROUGE: ``textgen.evaluation.metrics`` in characters (lowercased, whitespace dropped);
* CAIL2020 score (the 司法摘要 track's official metric, algorithms.md 2.1):
  ``0.2 R-1 + 0.4 R-2 + 0.4 R-L`` F1 in jieba words, HMM off, jieba's default dictionary (the
  official user dictionary of legal terms is not shipped here, so numbers can differ from the
  leaderboard's by the words it would join).

Means over documents, x100; an empty or failed summary scores 0 and still counts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from textgen.evaluation.metrics import implementation, score_pair
from textgen.summarize import baselines

CAIL_WEIGHTS = {"rouge1": 0.2, "rouge2": 0.4, "rougeL": 0.4}


def score_summaries(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus means: ``rouge1``, ``rouge2``, ``rougeL`` (char), ``cail`` (word), ``chars`` (mean
    summary length in characters)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} summaries but {len(references)} references")
    if not predictions:
        raise ValueError("nothing to score: no summaries")
    sums = dict.fromkeys(("rouge1", "rouge2", "rougeL", "cail", "chars"), 0.0)
    for pred, ref in zip(predictions, references):
        char = score_pair(pred, ref, "char")
        word = score_pair(pred, ref, "word")
        for k in ("rouge1", "rouge2", "rougeL"):
            sums[k] += char[k]
        sums["cail"] += sum(w * word[k] for k, w in CAIL_WEIGHTS.items())
        sums["chars"] += len("".join(pred.split()))
    return {k: round(v / len(predictions), 2) for k, v in sums.items()}


def baseline_summaries(documents: Sequence[str], references: Sequence[str], chars: int) -> dict[str, list[str]]:
    """The reference systems of ``textgen.summarize.baselines`` for every document."""
    systems: dict[str, Callable[[str, str], str]] = {
        f"lead-{chars}": lambda d, r: baselines.lead(d, chars),
        f"last-{chars}": lambda d, r: baselines.last(d, chars),
        f"textrank-{chars}": lambda d, r: baselines.textrank(d, chars),
        "oracle extraction": baselines.oracle,
    }
    return {name: [f(d, r) for d, r in zip(documents, references)] for name, f in systems.items()}


def unit_note() -> str:
    return ("ROUGE-1/2/L: F1 in characters (lowercased, whitespace dropped); CAIL: 0.2 R-1 + 0.4 R-2 + 0.4 R-L "
            "F1 in jieba words (HMM off, default dictionary); means over documents, x100")


__all__ = ["CAIL_WEIGHTS", "baseline_summaries", "implementation", "score_summaries", "unit_note"]
