"""Training the title selector (``textgen.titles.selector``) on article-headline pairs.

A clause's label is 1 when its headline (``selector.headline``) is the article's closest to the real
title by char ROUGE-L F (ties share the label), so the tagger learns which clause a headline
comes from, not the title's wording. Epochs are rated by the mean char ROUGE-L of the headlines
the tagger would choose (``headline_score``); the loop is the summarize extractor's
(``textgen.summarize.training.train_tagger``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


from textgen.evaluation.metrics import score_pair
from textgen.summarize.tagger import Document
from textgen.titles.selector import MIN_CHARS, candidates, headline, tagger_inputs


def _rouge_l(candidate: str, reference: str) -> float:
    return score_pair(candidate, reference, "char")["rougeL"]


def labels(clauses: Sequence[str], title: str) -> list[int]:
    """The clauses whose headlines come closest to ``title`` (none when no clause shares a character)."""
    scores = [_rouge_l(headline(clauses, i), title) for i in range(len(clauses))]
    best = max(scores, default=0.0)
    return [i for i, s in enumerate(scores) if best > 0 and s >= best - 1e-6]


def build_documents(
    pairs: Sequence[tuple[str, str]], encoder, progress: Callable[[int], None] | None = None
) -> list[Document]:
    """(article, title) pairs as tagger documents: the candidate clauses, their vectors with the
    position features, and the labels. Articles without a candidate clause are left out."""
    split = [(candidates(article), title) for article, title in pairs]
    split = [(clauses, title) for clauses, title in split if clauses]
    flat = [c for clauses, _ in split for c in clauses]
    vectors = encoder.encode(flat, progress)
    docs, start = [], 0
    for clauses, title in split:
        docs.append(Document(tagger_inputs(clauses, vectors[start : start + len(clauses)]), labels(clauses, title), clauses, title))
        start += len(clauses)
    return docs


def chosen_headlines(docs: Sequence[Document], probs: Sequence[Sequence[float]], min_chars: int = MIN_CHARS) -> list[str]:
    """The headline the tagger would choose for each document (its likeliest clause)."""
    return [headline(d.clauses, max(range(len(p)), key=p.__getitem__), min_chars) for d, p in zip(docs, probs)]


def headline_score(docs: Sequence[Document], probs: Sequence[Sequence[float]], min_chars: int = MIN_CHARS) -> float:
    """Mean char ROUGE-L F (x100) of the chosen headlines against the real titles (``Document.summary``)."""
    chosen = chosen_headlines(docs, probs, min_chars)
    return sum(_rouge_l(h, d.summary) for h, d in zip(chosen, docs)) / max(len(docs), 1)
