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

from textgen.output import Candidate
from textgen.prompts import Prompt
from textgen.tasks.base import OnText, Prepared, Task

if TYPE_CHECKING:
    from textgen.decoding.config import DecodingConfig
    from textgen.io import Record
    from textgen.output import Output

# The modes of textgen.decoding.copy.MODES (kept here so --help needs no torch; a test checks they agree).
COPY_MODES = ("off", "text", "span", "head")
METHODS = ("write", "clause")
# A chosen clause longer than this is no headline (a text without punctuation is one clause): it is
# cut at its last break (punctuation or space) before this many characters, else at the limit.
MAX_CLAUSE_CHARS = 48


class TitleTask(Task):
    name = "title"
    kind = "seq2seq"
    summary = "Write a headline for each article."
    default_model = "mini-zh-title"
    prompts: ClassVar[dict[str, Prompt]] = {
        "title": Prompt(
            system="你是一名经验丰富的中文编辑，擅长为文章拟写标题。",
            user="请为下面的文章拟一个简洁、准确的中文标题。标题要概括文章的核心内容，其中的数字、人名、地名和机构名必须与原文一致，"
            "不要编造原文没有的信息。只输出标题本身，不加引号、书名号或任何解释。\n\n文章：\n{text}",
        )
    }
    # Beam search finds the likeliest short headline; no-repeat 3 stops the loops small models fall into.
    defaults: ClassVar[dict[str, Any]] = {"num_beams": 4, "no_repeat_ngram_size": 3, "max_new_tokens": 32}
    # Headlines mostly reuse the article's words (the "copy prior" of algorithms.md 1b); copying
    # also keeps a weak model from inventing numbers.
    options: ClassVar[dict[str, Any]] = {"method": "write", "copy": "off"}
    # On the dev splits an LLM's titles gain from the text copy constraint (docs/gguf.md).
    chat_defaults: ClassVar[dict[str, Any]] = {"copy": "text"}
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
    @classmethod
    def check_option(cls, name: str, value: Any) -> Any:
        if name == "copy" and isinstance(value, bool):  # textgen.json of earlier models: "copy": true
            value = "text" if value else "off"
        return super().check_option(name, value)

    @classmethod
    def implied(cls, options: dict[str, Any]) -> dict[str, Any]:
        # A copy mode is a way of writing: --copy alone asks for a written title, whatever the preset.
        if "copy" in options and "method" not in options:
            return {**options, "method": "write"}
        return options

    def check_ready(self) -> None:
        if self.settings["method"] == "clause":
            self.selector()

    def unread(self, fields: list[str]) -> tuple[list[str], str]:
        if self.settings["method"] != "clause":
            return [], ""
        return ([f for f in fields if f != "num_return_sequences"],
                "--method clause chooses clauses of the article and decodes nothing (-n K gives the K likeliest); "
                "--method write has the model write the title")

    def selector(self) -> Any:
        """The model directory's title selector (``textgen.titles.selector``, loaded once per
        model); ValueError saying why when the model has none."""
        from textgen.titles.selector import selector_for

        selector, reason = self.model.cached("title-selector", lambda: selector_for(self.model_dir.path, self.adapter))
        if selector is None:
            raise ValueError(f"--method clause: {reason}; use --method write")
        return selector

    def generate(self, records: list[Record], config: DecodingConfig, on_text: OnText | None = None) -> list[Output]:
        if self.settings["method"] == "clause":
            return self._choose(records, config.num_return_sequences, on_text)
        # An article longer than the model reads is first cut down to its key clauses (the
        # summarize extractor); the output record says so.
        from textgen.summarize.pipeline import Summarizer
        from textgen.titles.long_articles import shorten_long_articles

        summarizer = self.model.cached("title-extraction", lambda: Summarizer(self.adapter, self.model_dir, self.encode_input))
        return shorten_long_articles(summarizer, records, config, lambda recs: self.decode(recs, config, on_text))

    def prepare(self, texts: list[str], config: DecodingConfig) -> Prepared:
        inputs = [self.encode_input(t) for t in texts]
        mode = self.settings["copy"]
        if mode == "off":
            return Prepared(inputs)
        from textgen.decoding.copy import copy_processors

        # source_ids: the article's own tokens (a chat model's prompt holds instructions too)
        sources = [self.adapter.source_ids(t) for t in texts]
        return Prepared(inputs, copy_processors(self.adapter, sources, mode, max_new_tokens=config.max_new_tokens))

    def _choose(self, records: list[Record], n: int, on_text: OnText | None) -> list[Output]:
        """``--method clause``: the ``n`` likeliest headline clauses of each article; each output
        names its clause (``"clause"``: its index among the article's clauses) and its ``score`` is
        the selector's probability."""
        choices = self.selector().choose([rec.text or "" for rec in records], n)
        results = []
        for rec, ranked in zip(records, choices):
            if not ranked:
                results.append(self.error(rec, "the article has no clause with letters or digits to take a headline from"))
                continue
            warnings = []
            if any(len(text) > MAX_CLAUSE_CHARS for text, _, _ in ranked):
                warnings.append(f"a chosen clause was longer than {MAX_CLAUSE_CHARS} characters (a text without "
                                "punctuation?); its headline is its beginning")
            candidates = [Candidate(_headline(text), round(prob, 4), index) for text, prob, index in ranked]
            if len(candidates) < n:
                warnings.append(f"{len(candidates)} of {n} headlines: the article has no more distinct clauses")
            results.append(self.output(rec, candidates, warnings, method="clause"))
        if on_text is not None and results and results[0].candidates:
            on_text(results[0].text)  # chosen, not generated: it arrives whole
        return results


def _headline(clause: str) -> str:
    """``clause``, or the beginning of a clause too long to be a headline."""
    if len(clause) <= MAX_CLAUSE_CHARS:
        return clause
    head = clause[:MAX_CLAUSE_CHARS]
    cut = max(head.rfind(ch) for ch in "，、；： ,;")
    return head[:cut] if cut >= MAX_CLAUSE_CHARS // 2 else head
