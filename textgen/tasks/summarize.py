"""Summaries of long documents: extract the key clauses, then write the summary from them (SPACES,
algorithms.md section 2; the pipeline lives in ``textgen.summarize.pipeline``).

Every output record carries ``extraction``: the method (the model's extractor or the lead rule),
the chosen clause indices, their texts and the number of clauses, so each summary can be traced
back to the document. ``extract_only`` returns the extraction itself as the summary.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from textgen.output import Candidate
from textgen.prompts import Prompt
from textgen.tasks.base import OnText, Prepared, Task

if TYPE_CHECKING:
    from textgen.decoding.config import DecodingConfig
    from textgen.io import Record
    from textgen.output import Output
    from textgen.summarize.extractor import Extraction
    from textgen.summarize.pipeline import Summarizer

# auto, then the modes of textgen.decoding.copy.MODES a summary can use (no torch for --help).
COPY_MODES = ("auto", "off", "text", "head")
# The extraction an LLM reads by default: enough for the key clauses of a judgement, short enough
# that prompt processing on a CPU stays a few seconds (docs/gguf.md).
CHAT_SOURCE_TOKENS = 600


class SummarizeTask(Task):
    name = "summarize"
    kind = "seq2seq"
    summary = (
        "Summarize long documents of any length: extract the key clauses, then write the summary from them.\n\n"
        "Example: textgen summarize -i samples/judgement.txt --format jsonl   "
        "(--extract-only prints the key clauses themselves, in document order)"
    )
    default_model = "mini-zh"
    prompts: ClassVar[dict[str, Prompt]] = {
        "summarize": Prompt(
            system="你是一名严谨的中文编辑，擅长概括长篇文字。",
            user="请用简洁的中文概括下面的文字。摘要应保留关键事实（当事人、时间、地点、数字和结论），使用原文的说法，"
            "不要添加原文没有的信息。只输出摘要正文。\n\n原文：\n{text}",
        )
    }
    # Beam 3 as SPACES decodes; at most 160 new tokens, the longest summary the generator was
    # trained on (which leaves the generator its whole 320-token source window); no-repeat 3 keeps
    # a small model out of loops.
    defaults: ClassVar[dict[str, Any]] = {"num_beams": 3, "no_repeat_ngram_size": 3, "max_new_tokens": 160}
    options: ClassVar[dict[str, Any]] = {"extract_only": False, "copy": "auto", "threshold": 0.0, "source_tokens": 0}
    # On legal-dev the key clauses beat what a 0.5B LLM writes from them (29.4 vs 18.4 ROUGE-L,
    # docs/gguf.md); --no-extract-only asks for the written summary.
    chat_defaults: ClassVar[dict[str, Any]] = {"extract_only": True}
    option_choices: ClassVar[dict[str, tuple[str, ...]]] = {"copy": COPY_MODES}
    option_help: ClassVar[dict[str, str]] = {
        "extract_only": "Print the extractive summary (the key clauses, in document order) instead of generating.",
        "copy": "How the summary copies from the extraction: auto (head when the model has a copy head, "
        "else text); off; text (pieces of the extraction's text, every number a whole number of it); "
        "head (the model's SPACES copy head decides when to copy).",
        "threshold": "Extract only clauses more likely than this (0: the likeliest clauses that fit, which "
        "favours recall; SPACES used 0.2 with a stronger extractor).",
        "source_tokens": "Most tokens of key clauses the generator reads (0: what the model reads; a chat LLM, "
        f"whose window is far longer, reads {CHAT_SOURCE_TOKENS} by default).",
    }
    # Summaries read long documents whole (every clause is scored): 50x the 100,000 characters other
    # tasks read; 1,000,000 characters take 47 s and 1.1 GB here on one thread (docs/summarize.md).
    max_chars: ClassVar[int] = 5_000_000

    @classmethod
    def check_option(cls, name: str, value: Any) -> Any:
        if name == "copy" and isinstance(value, bool):  # a textgen.json boolean: true is text
            value = "text" if value else "off"
        return super().check_option(name, value)

    def pipeline(self) -> Summarizer:
        """The extract-then-generate pipeline (its extractor loads once per model). A model without
        an extractor of its own (a chat LLM, a Hugging Face seq2seq model) gets the extractor of the
        task's default model: SPACES' first stage does not need the generator's weights."""
        from textgen.summarize.pipeline import Summarizer

        limit = self.settings["source_tokens"] or (CHAT_SOURCE_TOKENS if self.chat else None)
        extractor = self.model.cached("summarize-extractor", self._borrowed_extractor)
        return self.model.cached(
            f"summarize-pipeline\x00{limit}",
            lambda: Summarizer(self.adapter, self.model_dir, self.encode_input, extractor=extractor, max_source_tokens=limit),
        )

    def _borrowed_extractor(self) -> Any:
        """The default model's extractor, for a model directory without one (None: it has one)."""
        from textgen.summarize.extractor import extractor_for
        from textgen.summarize.tagger import WEIGHTS

        own = self.model_dir.path
        if own.is_dir() and (own / WEIGHTS).is_file():
            return None
        from textgen.models.families import load_adapter
        from textgen.models.registry import ModelNotFound, resolve

        try:
            info = resolve(self.default_model)
        except ModelNotFound:
            return None
        if info.path == self.model_dir.path or not (info.path / WEIGHTS).is_file():
            return None
        return extractor_for(info.path, load_adapter(info.path, "seq2seq"))

    def copy_mode(self) -> str:
        mode = self.settings["copy"]
        if mode == "auto":
            return "head" if getattr(self.adapter, "has_copy_head", False) else "text"
        return mode

    def generate(self, records: list[Record], config: DecodingConfig, on_text: OnText | None = None) -> list[Output]:
        """Extract every record (a text with nothing to summarize becomes an error record), then
        generate from the extractions in one batch, or return them (extract-only)."""
        from textgen.summarize.pipeline import NothingToSummarize

        extract_only = self.settings["extract_only"]
        threshold = self.settings["threshold"]
        pipeline = self.pipeline()
        budget = None if extract_only else pipeline.source_budget(config.max_new_tokens)
        results: dict[int, Output] = {}
        todo: list[tuple[int, Extraction]] = []
        for i, rec in enumerate(records):
            try:
                extraction = pipeline.extract(rec.text or "", budget=budget, threshold=threshold, extract_only=extract_only)
            except NothingToSummarize as exc:
                results[i] = self.error(rec, str(exc))
                continue
            if extract_only:
                results[i] = self._extractive(rec, extraction)
            else:
                todo.append((i, extraction))
        if todo:
            shortened = [replace(records[i], text=e.text) for i, e in todo]
            outputs = self._decode_with_copy(shortened, config, on_text)
            for k, ((i, extraction), out) in enumerate(zip(todo, outputs)):
                outputs[k] = out = self._faithful(out, records[i].text or "", shortened[k], extraction, config)
                out.warnings = [*out.warnings, *extraction.notes]
                if extraction.dropped:
                    out.warnings.append(f"{extraction.dropped} more clauses passed the threshold but did not fit in the "
                                        f"{budget} tokens the model reads; the likeliest were kept")
                out.extras["extraction"] = extraction.to_json()
                results[i] = out
        return [results[i] for i in range(len(records))]

    def _faithful(self, out: Output, document: str, shortened: Record, extraction: Extraction, config: DecodingConfig) -> Output:
        """``out`` without candidates that state a number or web address the document lacks
        (``textgen.summarize.faithful``). When none is left, the record is written again under the
        text copy constraint (numbers whole numbers of the extraction); when that fails too, the
        summary is the extraction itself. Each step says so in a warning."""
        from textgen.summarize.faithful import invented

        kept = [c for c in out.candidates if not invented(c.text, document)]
        if kept:
            if len(kept) < len(out.candidates):
                out.warnings.append(f"{len(out.candidates) - len(kept)} summaries dropped: they stated numbers or "
                                    "addresses the document does not hold")
            out.candidates = kept
            return out
        made_up = ", ".join(dict.fromkeys(invented(out.text, document)))
        if self.copy_mode() != "text":
            again = self.with_options(copy="text")._decode_with_copy([shortened], config, None)[0]
            if again.error is None and (good := [c for c in again.candidates if not invented(c.text, document)]):
                again.candidates = good
                again.warnings.append(f"the summary stated {made_up}, which the document does not hold; "
                                      "it was written again from the key clauses' own text (copy text)")
                return again
        fallback = self._extractive(shortened, extraction)
        fallback.warnings = list(shortened.warnings)  # the extraction's notes are added by the caller
        fallback.warnings.append(f"the generated summary stated {made_up}, which the document does not hold; "
                                 "the summary is the key clauses themselves")
        return fallback

    def _decode_with_copy(self, records: list[Record], config: DecodingConfig, on_text: OnText | None) -> list[Output]:
        """Generate from the extractions; a lone extraction the copy mechanism leaves no token to
        generate from (say, only unknown tokens while --min-new-tokens asks for words) is
        generated without copying, with a warning. In a batch the error goes up and the batch is
        retried one record at a time (``Task.run``), so only that record loses the copy."""
        from textgen.decoding import NoTokenLeft

        try:
            return self.decode(records, config, on_text)
        except NoTokenLeft:
            if len(records) > 1 or self.copy_mode() == "off":
                raise
        outputs = self.with_options(copy="off").decode(records, config, on_text)
        for out in outputs:
            out.warnings.append("the copy mechanism left nothing to generate from this extraction; "
                                "the summary was generated without it")
        return outputs

    def decoder_config(self, config: DecodingConfig) -> DecodingConfig:
        # The minimum length goes per summary (``prepare``), bounded by each extraction's length.
        return config.replace(min_new_tokens=0)

    def prepare(self, texts: list[str], config: DecodingConfig) -> Prepared:
        """Generator inputs: the model's summarize prefix (or chat prompt) and the extraction;
        the copy mechanism copies from the extraction. ``config`` is the run's config, whose
        ``min_new_tokens`` applies per summary."""
        # source_ids: the extraction's own tokens (a chat model's prompt holds instructions too)
        sources = [self.adapter.source_ids(t) for t in texts]
        inputs = [self.encode_input(t) for t in texts]
        processors: list[Any] = []
        if config.min_new_tokens:
            from textgen.decoding.length import MinNewTokensPerRow, source_bound_minimums

            minimums = source_bound_minimums(config.min_new_tokens, [len(s) for s in sources])
            processors.append(MinNewTokensPerRow(minimums, self.adapter.eos_token_ids))
        mode = self.copy_mode()
        if mode != "off":
            from textgen.decoding.copy import copy_processors

            processors += copy_processors(self.adapter, sources, mode, max_new_tokens=config.max_new_tokens)
        return Prepared(inputs, processors)

    def _extractive(self, rec: Record, extraction: Extraction) -> Output:
        probs = extraction.probs
        score = round(sum(probs[i] for i in extraction.selected) / len(extraction.selected), 4) if probs else None
        return self.output(rec, [Candidate(extraction.text, score)], extraction.notes, extraction=extraction.to_json())
