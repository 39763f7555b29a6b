"""Summaries of long documents: extract the key clauses, then write the summary from them (SPACES,
algorithms.md section 2; the pipeline lives in ``textgen.summarize.pipeline``).

Every output record carries ``extraction``: the method (the model's extractor or the lead rule),
the chosen clause indices, their texts and the number of clauses, so each summary can be traced
back to the document. ``extract_only`` returns the extraction itself as the summary.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from textgen.tasks.base import Prepared, Task

if TYPE_CHECKING:
    from textgen.decoding.config import DecodingConfig
    from textgen.io import Record
    from textgen.summarize.extractor import Extraction
    from textgen.summarize.pipeline import Summarizer

# auto, then the modes of textgen.decoding.copy.MODES a summary can use (no torch for --help).
COPY_MODES = ("auto", "off", "text", "head")


class SummarizeTask(Task):
    name = "summarize"
    kind = "seq2seq"
    summary = (
        "Summarize long documents of any length: extract the key clauses, then write the summary from them.\n\n"
        "Example: textgen summarize -i samples/judgement.txt --format jsonl   "
        "(--extract-only prints the key clauses themselves, in document order)"
    )
    # Beam 3 as SPACES decodes; at most 160 new tokens, the longest summary the generator was
    # trained on (which leaves the generator its whole 320-token source window); no-repeat 3 keeps
    # a small model out of loops.
    defaults: ClassVar[dict[str, Any]] = {"num_beams": 3, "no_repeat_ngram_size": 3, "max_new_tokens": 160}
    options: ClassVar[dict[str, Any]] = {"extract_only": False, "copy": "auto", "threshold": 0.0}
    option_choices: ClassVar[dict[str, tuple[str, ...]]] = {"copy": COPY_MODES}
    option_help: ClassVar[dict[str, str]] = {
        "extract_only": "Print the extractive summary (the key clauses, in document order) instead of generating.",
        "copy": "How the summary copies from the extraction: auto (head when the model has a copy head, "
        "else text); off; text (pieces of the extraction's text, every number a whole number of it); "
        "head (the model's SPACES copy head decides when to copy).",
        "threshold": "Extract only clauses more likely than this (0: the likeliest clauses that fit, which "
        "favours recall; SPACES used 0.2 with a stronger extractor).",
    }
    # Summaries read long documents whole (every clause is scored): 50x the 100,000 characters other
    # tasks read; 1,000,000 characters take 47 s and 1.1 GB here on one thread (docs/summarize.md).
    max_chars: ClassVar[int] = 5_000_000
    _max_new_tokens: int | None = None  # of the run in progress (the copy rules end numbers before the cap)
    _min_new_tokens: int = 0  # of the run in progress, applied per summary (textgen.summarize.length)

    @classmethod
    def check_option(cls, name: str, value: Any) -> Any:
        if name == "copy" and isinstance(value, bool):  # a textgen.json boolean: true is text
            value = "text" if value else "off"
        return super().check_option(name, value)

    @cached_property
    def pipeline(self) -> Summarizer:
        from textgen.summarize.pipeline import Summarizer

        return Summarizer(self.adapter, self.model_dir)

    def copy_mode(self) -> str:
        mode = self.settings["copy"]
        if mode == "auto":
            return "head" if getattr(self.adapter, "has_copy_head", False) else "text"
        return mode

    def _generate(self, records: list[Record], config: DecodingConfig) -> list[dict[str, Any]]:
        """Extract every record (a text with nothing to summarize becomes an error record), then
        generate from the extractions in one batch, or return them (extract-only)."""
        from textgen.summarize.pipeline import NothingToSummarize

        extract_only = self.settings["extract_only"]
        threshold = self.settings["threshold"]
        budget = None if extract_only else self.pipeline.source_budget(config.max_new_tokens)
        results: dict[int, dict[str, Any]] = {}
        todo: list[tuple[int, Extraction]] = []
        for i, rec in enumerate(records):
            try:
                extraction = self.pipeline.extract(rec.text or "", budget=budget, threshold=threshold, extract_only=extract_only)
            except NothingToSummarize as exc:
                results[i] = self._error(rec, str(exc))
                continue
            if extract_only:
                results[i] = self._extractive(rec, extraction)
            else:
                todo.append((i, extraction))
        if todo:
            self._max_new_tokens, self._min_new_tokens = config.max_new_tokens, config.min_new_tokens
            shortened = [replace(records[i], text=e.text) for i, e in todo]
            outputs = self._decode(shortened, config.replace(min_new_tokens=0))  # the minimum goes per summary
            for (i, extraction), out in zip(todo, outputs):
                warnings = [*out.get("warnings", []), *extraction.notes]
                if extraction.dropped:
                    warnings.append(f"{extraction.dropped} more clauses passed the threshold but did not fit in the "
                                    f"{budget} tokens the model reads; the likeliest were kept")
                if warnings:
                    out["warnings"] = warnings
                out["extraction"] = extraction.to_json()
                results[i] = out
        return [results[i] for i in range(len(records))]

    def _decode(self, records: list[Record], config: DecodingConfig) -> list[dict[str, Any]]:
        """Generate from the extractions; a lone extraction the copy mechanism finds nothing to copy
        from (say, only unknown tokens while --min-new-tokens asks for words) is generated without
        copying, with a warning. In a batch the error goes up and the batch is retried one record
        at a time (``Task.run``), so only that record loses the copy."""
        try:
            return super()._generate(records, config)
        except ValueError:
            if len(records) > 1 or self.copy_mode() == "off":
                raise
        chosen = self.settings["copy"]
        self.settings["copy"] = "off"
        try:
            outputs = super()._generate(records, config)
        finally:
            self.settings["copy"] = chosen
        for out in outputs:
            out["warnings"] = [*out.get("warnings", []), "the copy mechanism left nothing to generate from this "
                               "extraction; the summary was generated without it"]
        return outputs

    def prepare(self, texts: list[str]) -> Prepared:
        """Generator inputs: the model's summarize prefix and the extraction; the copy mechanism
        copies from the extraction."""
        # source_ids: the extraction's own tokens (a chat model's encode wraps it in a prompt)
        sources = [self.adapter.source_ids(t) for t in texts]
        prefix = self.pipeline.prefix
        inputs = [self.adapter.encode(prefix + t) for t in texts]
        processors: list[Any] = []
        if self._min_new_tokens:
            from textgen.summarize.length import MinNewTokensPerRow, source_bound_minimums

            minimums = source_bound_minimums(self._min_new_tokens, [len(s) for s in sources])
            processors.append(MinNewTokensPerRow(minimums, self.adapter.eos_token_ids))
        mode = self.copy_mode()
        if mode != "off":
            from textgen.decoding.copy import copy_processors

            processors += copy_processors(self.adapter, sources, mode, max_new_tokens=self._max_new_tokens)
        return Prepared(inputs, processors)

    def _extractive(self, rec: Record, extraction: Extraction) -> dict[str, Any]:
        probs = extraction.probs
        score = round(sum(probs[i] for i in extraction.selected) / len(extraction.selected), 4) if probs else None
        out: dict[str, Any] = {"id": rec.id, "outputs": [{"text": extraction.text, "score": score}],
                               "model": self.model, "task": self.name}
        warnings = [*rec.warnings, *extraction.notes]
        if warnings:
            out["warnings"] = warnings
        out["extraction"] = extraction.to_json()
        return out
