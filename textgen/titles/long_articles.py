"""Titles of articles longer than the title model reads: the article is cut down to its key clauses
first (the summarize extraction, ``textgen.summarize.pipeline``), and the output says so.

A title model reads a few hundred tokens; the extraction keeps the likeliest headline material of
the whole article within that budget instead of silently reading only its beginning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from textgen.summarize.pipeline import NothingToSummarize, Summarizer

if TYPE_CHECKING:
    from textgen.decoding.config import DecodingConfig
    from textgen.io import Record
    from textgen.output import Output
    from textgen.summarize.extractor import Extraction


def shorten_long_articles(
    summarizer: Summarizer,
    records: list[Record],
    config: DecodingConfig,
    generate: Callable[[list[Record]], list[Output]],
) -> list[Output]:
    """``generate(records)`` with every article longer than the model reads replaced by its
    extraction (the model directory's extractor, else the lead rule); those outputs carry
    ``extraction`` and a warning saying so."""
    budget = summarizer.source_budget(config.max_new_tokens)
    if budget is None:
        return generate(records)
    notes: dict[int, tuple[int, Extraction]] = {}
    shortened = []
    for i, rec in enumerate(records):
        length = len(summarizer.adapter.source_ids(rec.text)) if rec.text else 0
        if length > budget:
            try:
                extraction = summarizer.extract(rec.text, budget=budget)
            except NothingToSummarize:
                extraction = None  # the title task answers such a text as it would without extraction
            if extraction is not None:
                notes[i] = (length, extraction)
                rec = replace(rec, text=extraction.text)
        shortened.append(rec)
    outputs = generate(shortened)
    for i, (length, extraction) in notes.items():
        out: Any = outputs[i]
        out.extras["extraction"] = extraction.to_json()
        out.warnings = [
            *out.warnings,
            f"the article is {length} tokens long and the model reads {budget}: the title was written from "
            f"{len(extraction.selected)} of its {len(extraction.clauses)} clauses, chosen by the {extraction.method}",
            *extraction.notes,
        ]
    return outputs
