"""Title generation: an article in, a headline out (seq2seq adapters: UniLM backbone, T5, BART...).

The ``copy`` option picks the copy mechanism (``textgen.decoding.copy``, docs/decoding.md "Copy"):
``off``, ``text`` (the title is made of pieces of the article's text; every number in it is a whole
number of the article), ``span`` (one contiguous piece of the article) or ``head`` (the model's
SPACES copy head decides when to copy; numbers stay whole). A model presets it in its textgen.json
(``"options": {"title": {"copy": "text"}}``); the boolean of earlier models still reads (``true``
is ``text``, ``false`` is ``off``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textgen.tasks.base import Prepared, Task

if TYPE_CHECKING:
    from textgen.decoding.config import DecodingConfig
    from textgen.io import Record

# The modes of textgen.decoding.copy.MODES (kept here so --help needs no torch; a test checks they agree).
COPY_MODES = ("off", "text", "span", "head")
METHODS = ("write", "clause")


class TitleTask(Task):
    name = "title"
    kind = "seq2seq"
    summary = "Write a headline for each article."
    # Beam search finds the likeliest short headline; no-repeat 3 stops the loops small models fall into.
    defaults: ClassVar[dict[str, Any]] = {"num_beams": 4, "no_repeat_ngram_size": 3, "max_new_tokens": 32}
    # Headlines mostly reuse the article's words (the "copy prior" of algorithms.md 1b); copying
    # also keeps a weak model from inventing numbers.
    options: ClassVar[dict[str, Any]] = {"method": "write", "copy": "off"}
    option_choices: ClassVar[dict[str, tuple[str, ...]]] = {"method": METHODS, "copy": COPY_MODES}
    option_help: ClassVar[dict[str, str]] = {
        "method": "How the headline is made: write (the model writes it, under --copy) or clause (the article's "
        "most headline-like clause, chosen by the model's title selector: the article's own words, so nothing "
        "is invented; -n K gives the K likeliest clauses). The embedded default model presets clause. "
        "E.g. --method write --copy text.",
        "copy": "How the title copies from the article: off (free); text (made of pieces of the article's "
        "text, every number a whole number of the article: no invented or mixed-up figures); span (one "
        "contiguous piece of the article); head (the model's copy head decides when to copy, numbers kept "
        "whole; needs a model trained with a copy head). E.g. --copy span.",
    }
    _max_new_tokens: int | None = None  # of the run in progress: the copy rules end numbers before the cap

    @classmethod
    def check_option(cls, name: str, value: Any) -> Any:
        if name == "copy" and isinstance(value, bool):  # textgen.json of earlier models: "copy": true
            value = "text" if value else "off"
        return super().check_option(name, value)

    _selector: Any = None  # the model directory's title selector, loaded on first use

    @classmethod
    def implied(cls, options: dict[str, Any]) -> dict[str, Any]:
        # A copy mode is a way of writing: --copy alone asks for a written title, whatever the preset.
        if "copy" in options and "method" not in options:
            return {**options, "method": "write"}
        return options

    def check_ready(self) -> None:
        if self.settings["method"] == "clause":
            self.selector()

    def selector(self) -> Any:
        """The title selector of the model directory (``textgen.titles.selector``); ValueError
        saying why when the model has none."""
        if self._selector is None:
            from textgen.titles.selector import selector_for

            selector, reason = selector_for(self.model_dir, self.adapter)
            if selector is None:
                raise ValueError(f"--method clause: {reason}; use --method write")
            self._selector = selector
        return self._selector

    def _generate(self, records: list[Record], config: DecodingConfig) -> list[dict[str, Any]]:
        if self.settings["method"] == "clause":
            return self._choose(records, config.num_return_sequences)
        self._max_new_tokens = config.max_new_tokens
        # An article longer than the model reads is first cut down to its key clauses (the
        # summarize extractor); the output record says so.
        from textgen.summarize.pipeline import shorten_long_articles

        return shorten_long_articles(self, records, config, super()._generate)

    def prepare(self, texts: list[str]) -> Prepared:
        # source_ids: the article's own tokens (a chat model's encode wraps it in a prompt)
        sources = [self.adapter.source_ids(t) for t in texts]
        prefix = self.source_prefix.get("title", "")
        inputs = [self.adapter.encode(prefix + t) for t in texts]
        mode = self.settings["copy"]
        if mode == "off":
            return Prepared(inputs)
        from textgen.decoding.copy import copy_processors

        return Prepared(inputs, copy_processors(self.adapter, sources, mode, max_new_tokens=self._max_new_tokens))

    def _choose(self, records: list[Record], n: int) -> list[dict[str, Any]]:
        """``--method clause``: the ``n`` likeliest headline clauses of each article; each output
        names its clause (``"clause"``: its index among the article's clauses) and its ``score`` is
        the selector's probability."""
        choices = self.selector().choose([rec.text or "" for rec in records], n)
        results = []
        for rec, ranked in zip(records, choices):
            if not ranked:
                results.append(self._error(rec, "the article has no clause with letters or digits to take a headline from"))
                continue
            outputs = [{"text": text, "score": round(prob, 4), "clause": index} for text, prob, index in ranked]
            warnings = list(rec.warnings)
            if len(outputs) < n:
                warnings.append(f"{len(outputs)} of {n} headlines: the article has no more distinct clauses")
            out: dict[str, Any] = {"id": rec.id, "outputs": outputs, "model": self.model, "task": self.name, "method": "clause"}
            if warnings:
                out["warnings"] = warnings
            results.append(out)
        if self._on_text is not None and results and results[0]["outputs"]:
            self._on_text(results[0]["outputs"][0]["text"])  # chosen, not generated: it arrives whole
        return results
