"""Extract, then generate (algorithms.md 2.2-2.3): the extraction stage and what the generator reads.

    from textgen.summarize.pipeline import Summarizer
    s = Summarizer(adapter, ModelDir.read(path), adapter.encode)
    extraction = s.extract(judgement, budget=s.source_budget(160))
    extraction.selected, extraction.text           # clause indices (document order), the generator's input

The whole pipeline, generation included, is the summarize task (``textgen.tasks.summarize``):
``textgen.generate("summarize", [judgement])``.

The document is split into clauses, every clause is scored by the model's extractor (or chosen by
the lead rule), and the generator reads the task prefix (``source_prefix["summarize"]`` of the
model's textgen.json) plus the extraction: the likeliest clauses that fit in the tokens the
generator reads, in document order. However long the document, the generator's input stays within
its window and no part of the document is skipped unscored.

``textgen.titles.long_articles`` uses the same pipeline for titles of articles longer than the
title model reads.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textgen.summarize.clauses import split_clauses
from textgen.summarize.extractor import Extraction, Extractor, LeadRule, extractor_for

if TYPE_CHECKING:
    from textgen.models.model_dir import ModelDir


class NothingToSummarize(ValueError):
    """The text holds no words: empty after cleaning, only punctuation, or binary noise."""


def check_text(text: str) -> list[str]:
    """Warnings about a document the models will handle badly; ``NothingToSummarize`` when there
    is nothing to work with."""
    letters = [ch for ch in text if unicodedata.category(ch)[0] in "LN"]
    if not letters:
        raise NothingToSummarize("nothing to summarize: the text has no letters or digits (binary or badly encoded input?)")
    cjk = sum("\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" for ch in letters)
    if cjk < 0.2 * len(letters):
        return [f"the text is not Chinese ({cjk} of {len(letters)} letters are Chinese characters); "
                "the models are trained on Chinese, expect a poor summary"]
    return []


class Summarizer:
    """The extract-then-generate pipeline over a seq2seq adapter and its model directory."""

    def __init__(
        self,
        adapter: Any,
        model_dir: ModelDir | None,
        encode: Callable[[str], list[int]],
        *,
        extractor: Extractor | LeadRule | None = None,
        max_source_tokens: int | None = None,
    ) -> None:
        """``encode``: what the generator reads for a text (the task's source prefix or chat
        prompt around it), so that the extraction fills exactly the room left beside it.
        ``extractor``: another model's extractor, for a generator that has none of its own (an
        LLM); default the model directory's, else the lead rule. ``max_source_tokens``: the most
        extraction tokens the generator reads even when its window holds more (an LLM's 32k)."""
        self.adapter = adapter
        self.encode = encode
        self.max_source_tokens = max_source_tokens
        self.extractor: Extractor | LeadRule = extractor or extractor_for(model_dir.path if model_dir else None, adapter)

    # ------------------------------------------------------------------ stage 1
    def source_budget(self, max_new_tokens: int) -> int | None:
        """Extraction tokens the generator reads beside ``max_new_tokens`` outputs and the prefix."""
        limit = self.adapter.input_limit(max_new_tokens)
        room = None if limit is None else max(limit - len(self.encode("")), 1)
        if self.max_source_tokens is not None:
            room = self.max_source_tokens if room is None else min(room, self.max_source_tokens)
        return room

    def extract(
        self, text: str, *, budget: int | None = None, threshold: float = 0.0, extract_only: bool = False
    ) -> Extraction:
        """The extraction of ``text``: within ``budget`` generator tokens, or for an extract-only
        summary (``extract_only``: the extractor's extract-only rule)."""
        warnings = check_text(text)
        clauses = split_clauses(text)
        if not clauses:
            raise NothingToSummarize("nothing to summarize: the text is empty")
        cost = _token_cost(self.adapter)
        extraction = self.extractor.extract(
            clauses, budget=budget, cost=cost, threshold=threshold, extract_only=extract_only
        )
        extraction.notes = [*warnings, *extraction.notes]
        return extraction


def _token_cost(adapter: Any) -> Callable[[str], int]:
    """A clause's tokens in the generator input (``source_budget`` already took off what the
    adapter adds around a text: specials, the prefix, a chat model's prompt)."""
    return lambda clause: len(adapter.source_ids(clause))
