"""ROUGE-1/2/L F1 and BLEU-4 for Chinese, always reported with the unit they were counted in.

Chinese has no spaces, so a score means nothing until the unit is stated:

* ``char``: every character is a token, after lowercasing and dropping whitespace. This is the
  protocol of the published CSL title numbers (algorithms.md section 8.1).
* ``word``: ``jieba.cut(text, HMM=False)`` with jieba's default dictionary on the lowercased text,
  whitespace tokens dropped (the CAIL2020 summarization protocol). The HMM is off so that the
  cut depends only on the dictionary, not on a statistical guess about unknown words.

Implementations (pinned in pyproject.toml, named in every report):

* ROUGE: Google's ``rouge-score`` ``RougeScorer(["rouge1", "rouge2", "rougeL"])`` fed our own
  tokens. Its n-gram overlap is clipped by counts and ROUGE-L is the sentence-level LCS F1. The
  published CSL numbers used the older ``rouge`` package, which counts *distinct* n-grams (sets);
  the two agree unless a title repeats a token, see docs/evaluation.md.
* BLEU: ``nltk`` ``sentence_bleu`` with uniform 4-gram weights and ``SmoothingFunction().method1``
  (zero n-gram counts become 0.1), exactly as the CSL script did.

Corpus scores are the mean over samples of the per-sample scores, x100. An empty prediction scores
0 on every metric but still counts in the mean, so a model cannot gain by staying silent.

Faithfulness (``unfaithful_share``): the share of outputs holding a number that is not a number of
their source. A number is a maximal run of digits (ASCII or full-width, which count as the same)
with single ``.`` or ``,`` between digit runs, so ``0.7``, ``2023`` and ``1,000`` are one number
each; an output's number must equal a whole number of the source: ``7`` from a source that only
has ``0.7`` is unfaithful. The copy constraint (``textgen.decoding.copy``) enforces this definition.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib.metadata import version

UNITS = ("char", "word")
METRICS = ("rouge1", "rouge2", "rougeL", "bleu")


@lru_cache(maxsize=1)
def _jieba():
    """A private jieba instance, so words added to the global one elsewhere cannot shift scores."""
    import jieba

    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return tokenizer


def tokenize(text: str, unit: str) -> list[str]:
    """The tokens ROUGE and BLEU count for ``text`` in ``unit`` (``char`` or ``word``)."""
    text = text.lower()
    if unit == "char":
        return [c for c in text if not c.isspace()]
    if unit == "word":
        return [w for w in _jieba().cut(text, HMM=False) if w.strip()]
    raise ValueError(f"unit must be one of {UNITS}, not {unit!r}")


class _Pretokenized:
    """rouge-score's tokenizer interface over tokens joined by a separator no token contains."""

    SEP = "\n"  # whitespace never survives tokenize()

    def tokenize(self, text: str) -> list[str]:
        return text.split(self.SEP) if text else []


@lru_cache(maxsize=1)
def _scorers():
    from nltk.translate.bleu_score import SmoothingFunction
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=_Pretokenized()), SmoothingFunction().method1


def implementation() -> str:
    """The libraries and settings behind the numbers, with versions, for reports."""
    return (
        f"rouge-score {version('rouge-score')} (F1, n-grams clipped by count, ROUGE-L = sentence LCS); "
        f"nltk {version('nltk')} sentence_bleu (uniform 4-gram weights, smoothing method1)"
    )


def score_tokens(prediction: Sequence[str], reference: Sequence[str]) -> dict[str, float]:
    """Per-sample ROUGE-1/2/L F1 and BLEU-4 of token lists, each in 0..100."""
    if not prediction:
        return dict.fromkeys(METRICS, 0.0)
    from nltk.translate.bleu_score import sentence_bleu

    rouge, smoothing = _scorers()
    sep = _Pretokenized.SEP
    r = rouge.score(sep.join(reference), sep.join(prediction))  # rouge-score takes (target, prediction)
    bleu = sentence_bleu([list(reference)], list(prediction), smoothing_function=smoothing)
    return {
        "rouge1": 100 * r["rouge1"].fmeasure,
        "rouge2": 100 * r["rouge2"].fmeasure,
        "rougeL": 100 * r["rougeL"].fmeasure,
        "bleu": 100 * bleu,
    }


def score_pair(prediction: str, reference: str, unit: str) -> dict[str, float]:
    """Per-sample scores of one prediction against its reference, counted in ``unit``."""
    return score_tokens(tokenize(prediction, unit), tokenize(reference, unit))


@dataclass(frozen=True)
class MetricReport:
    """Corpus scores (means of per-sample scores, x100) with what is needed to read them."""

    unit: str
    implementation: str
    n: int
    rouge1: float
    rouge2: float
    rougeL: float  # noqa: N815 - the metric's usual name
    bleu: float

    @classmethod
    def from_samples(cls, samples: Sequence[dict[str, float]], unit: str) -> MetricReport:
        """The mean of per-sample scores (``score_pair`` results counted in ``unit``)."""
        if not samples:
            raise ValueError("nothing to score: no predictions")
        means = {m: sum(s[m] for s in samples) / len(samples) for m in METRICS}
        return cls(unit=unit, implementation=implementation(), n=len(samples), **means)

    def to_dict(self) -> dict:
        return asdict(self)


def score_corpus(predictions: Sequence[str], references: Sequence[str], unit: str) -> MetricReport:
    """Mean per-sample ROUGE-1/2/L F1 and BLEU-4 over aligned predictions and references."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    return MetricReport.from_samples([score_pair(p, r, unit) for p, r in zip(predictions, references)], unit)


# ---------------------------------------------------------------------- faithfulness
_NUMBER = re.compile(r"[0-9]+(?:[.,][0-9]+)*")
_FULLWIDTH_DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")


def numbers(text: str) -> list[str]:
    """The numbers of ``text`` (module docstring), full-width digits written as ASCII."""
    return _NUMBER.findall(text.translate(_FULLWIDTH_DIGITS))


def unfaithful_numbers(prediction: str, source: str) -> list[str]:
    """The numbers of ``prediction`` that are not whole numbers of ``source``."""
    known = set(numbers(source))
    return [n for n in numbers(prediction) if n not in known]


def unfaithful_share(predictions: Sequence[str], sources: Sequence[str]) -> float:
    """The share (0..1) of predictions holding a number their source does not contain."""
    if len(predictions) != len(sources):
        raise ValueError(f"{len(predictions)} predictions but {len(sources)} sources")
    if not predictions:
        raise ValueError("nothing to score: no predictions")
    return sum(bool(unfaithful_numbers(p, s)) for p, s in zip(predictions, sources)) / len(predictions)
