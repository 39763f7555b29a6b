"""Scoring keyword-to-sentence search against held-out keyword sets with reference sentences.

Metrics (per sentence, then the mean over sets; characters are non-whitespace characters):

* **coverage**: share of the keywords that occur verbatim in the output, and share of outputs
  holding all of them;
* **fluency** in bits per character under an *independent judge*: a character trigram
  Kneser-Ney model (``textgen.evaluation.ngram``) trained on text that excludes every document
  holding an evaluation reference, never the language model the sampler climbs. Corpus level
  (total bits / total characters, each text's end included) for the outputs, for the plain
  concatenation of the keywords, and for the references;
* **distinct characters**: distinct / total characters, and the share of character trigrams
  that repeat inside their sentence (degenerate repetition shows in both);
* **length** in characters; **char ROUGE-L** F1 against the reference (``evaluation.metrics``);
* **speed**: proposals per second and seconds per sentence, wall time of the search only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from statistics import mean
from typing import Any

from textgen.evaluation.lm import counted_chars


def coverage(text: str, keywords: Sequence[str]) -> float:
    return sum(k in text for k in keywords) / len(keywords) if keywords else 1.0


def distinct_ratio(text: str) -> float:
    chars = counted_chars(text)
    return len(set(chars)) / len(chars) if chars else 0.0


def repeated_trigrams(text: str) -> float:
    """Share of the character trigrams of ``text`` that occur in it more than once."""
    chars = counted_chars(text)
    grams = Counter(chars[i : i + 3] for i in range(len(chars) - 2))
    total = sum(grams.values())
    return sum(n for n in grams.values() if n > 1) / total if total else 0.0


def judge_corpus(texts: Iterable[str], references: Sequence[str]) -> list[str]:
    """``texts`` without any text that holds one of the references (the judge's training text)."""
    refs = [r for r in references if r]
    return [t for t in texts if not any(r in t for r in refs)]


def train_judge(texts: Sequence[str]) -> Any:
    from textgen.evaluation.ngram import TrigramKN

    return TrigramKN.train(texts)


@dataclass
class Sample:
    """One keyword set's output and scores."""

    id: str
    keywords: list[str]
    output: str
    reference: str
    proposals: int
    seconds: float
    error: str | None = None

    def scores(self) -> dict[str, float]:
        from textgen.evaluation.metrics import score_pair

        return {
            "coverage": coverage(self.output, self.keywords),
            "all_keywords": float(all(k in self.output for k in self.keywords)),
            "distinct": distinct_ratio(self.output),
            "repeated_trigrams": repeated_trigrams(self.output),
            "chars": len(counted_chars(self.output)),
            "rougeL": score_pair(self.output, self.reference, "char")["rougeL"],
        }


def report(samples: Sequence[Sample], judge: Any) -> dict[str, Any]:
    """Means over samples (a failed sample counts with an empty output) plus corpus-level bits/char."""
    if not samples:
        raise ValueError("nothing to score")
    per = [s.scores() for s in samples]
    outputs = [s.output for s in samples if s.output]
    refs = [s.reference for s in samples]
    concat = ["".join(s.keywords) for s in samples]
    seconds = sum(s.seconds for s in samples)
    proposals = sum(s.proposals for s in samples)
    bits = {
        "output": judge.bits_per_char(outputs) if outputs else float("nan"),
        "concatenation": judge.bits_per_char(concat),
        "reference": judge.bits_per_char(refs),
    }
    return {
        "sets": len(samples),
        "failed": sum(s.error is not None for s in samples),
        "keywords_per_set": mean(len(s.keywords) for s in samples),
        **{key: mean(p[key] for p in per) for key in per[0]},
        "reference_chars": mean(len(counted_chars(r)) for r in refs),
        "reference_distinct": mean(distinct_ratio(r) for r in refs),
        "reference_repeated_trigrams": mean(repeated_trigrams(r) for r in refs),
        "bits_per_char": bits,
        "judge_unknown_rate": judge.unknown_rate(outputs) if outputs else 0.0,
        "proposals": proposals,
        "seconds": seconds,
        "proposals_per_second": proposals / seconds if seconds else float("nan"),
        "seconds_per_sentence": seconds / len(samples),
    }


def run_sets(
    search: Callable[[list[str]], tuple[str, int, float, str | None]],
    sets: Sequence[Any],
    progress: Callable[[int], None] | None = None,
) -> list[Sample]:
    """``search(keywords) -> (output, proposals, seconds, error)`` over keyword sets (with ``id``,
    ``keywords``, ``reference``)."""
    out = []
    for s in sets:
        text, proposals, seconds, error = search(list(s.keywords))
        out.append(Sample(s.id, list(s.keywords), text, s.reference, proposals, seconds, error))
        if progress:
            progress(1)
    return out
