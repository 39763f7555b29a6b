"""Extract, then generate (algorithms.md 2.2-2.3): the extraction stage and what the generator reads.

    from textgen.summarize.pipeline import Summarizer
    s = Summarizer.load("path/to/model")           # a model directory (embedded: textgen/models/embedded/NAME)
    extraction = s.extract(judgement, budget=s.source_budget(160))
    extraction.selected, extraction.text           # clause indices (document order), the generator's input

The whole pipeline, generation included, is the summarize task (``textgen.tasks.summarize``):
``load_task("summarize", path, model="name").run(records, config)``.

The document is split into clauses, every clause is scored by the model's extractor (or chosen by
the lead rule), and the generator reads the task prefix (``source_prefix["summarize"]`` of the
model's textgen.json) plus the extraction: the likeliest clauses that fit in the tokens the
generator reads, in document order. However long the document, the generator's input stays within
its window and no part of the document is skipped unscored.

``shorten_long_articles`` is the same idea for titles: an article longer than the title model reads
is replaced by its extraction, and the output record says so.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from textgen.summarize.clauses import split_clauses
from textgen.summarize.extractor import Extraction, Extractor, LeadRule, extractor_for

if TYPE_CHECKING:
    from textgen.decoding.config import DecodingConfig
    from textgen.io import Record


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

    def __init__(self, adapter: Any, model_dir: str | Path | None = None, *, task: str = "summarize") -> None:
        """``task``: whose ``source_prefix`` the generator input starts with (``title`` when the
        pipeline shortens articles for titles)."""
        from textgen.models.adapters import textgen_meta

        self.adapter = adapter
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.extractor: Extractor | LeadRule = extractor_for(self.model_dir, adapter)
        prefixes = textgen_meta(self.model_dir).get("source_prefix", {}) if self.model_dir else {}
        prefix = prefixes.get(task, "") if isinstance(prefixes, dict) else ""
        self.prefix = prefix if isinstance(prefix, str) else ""

    @classmethod
    def load(cls, path: str | Path, *, device: str = "cpu") -> Summarizer:
        from textgen.models.adapters import load_adapter

        return cls(load_adapter(path, "seq2seq", device=device), path)

    # ------------------------------------------------------------------ stage 1
    def source_budget(self, max_new_tokens: int) -> int | None:
        """Extraction tokens the generator reads beside ``max_new_tokens`` outputs and the prefix."""
        limit = self.adapter.input_limit(max_new_tokens)
        return None if limit is None else max(limit - len(self.adapter.encode(self.prefix)), 1)

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


# ---------------------------------------------------------------------- titles of long articles
# One pipeline per loaded title model (the extractor loads once), dropped with the model.
_TITLE_PIPELINES: WeakKeyDictionary[Any, Summarizer] = WeakKeyDictionary()


def shorten_long_articles(
    task: Any, records: list[Record], config: DecodingConfig, generate: Callable[[list[Record], DecodingConfig], list[dict]]
) -> list[dict[str, Any]]:
    """``generate(records, config)`` with every article longer than the model reads replaced by
    its extraction (the model directory's extractor, else the lead rule); those output records
    carry ``extraction`` and a warning saying so."""
    key = task.adapter
    if key not in _TITLE_PIPELINES:
        _TITLE_PIPELINES[key] = Summarizer(task.adapter, task.model_dir, task="title")
    summarizer = _TITLE_PIPELINES[key]
    budget = summarizer.source_budget(config.max_new_tokens)
    if budget is None:
        return generate(records, config)
    notes: dict[int, tuple[int, Extraction]] = {}
    shortened = []
    for i, rec in enumerate(records):
        length = len(task.adapter.source_ids(rec.text)) if rec.text else 0
        if length > budget:
            try:
                extraction = summarizer.extract(rec.text, budget=budget)
            except NothingToSummarize:
                extraction = None  # the title task answers such a text as it would without extraction
            if extraction is not None:
                notes[i] = (length, extraction)
                rec = replace(rec, text=extraction.text)
        shortened.append(rec)
    outputs = generate(shortened, config)
    for i, (length, extraction) in notes.items():
        out = outputs[i]
        out["extraction"] = extraction.to_json()
        out["warnings"] = [
            *out.get("warnings", []),
            f"the article is {length} tokens long and the model reads {budget}: the title was written from "
            f"{len(extraction.selected)} of its {len(extraction.clauses)} clauses, chosen by the {extraction.method}",
            *extraction.notes,
        ]
    return outputs
