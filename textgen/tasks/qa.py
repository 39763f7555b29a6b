"""Question-answer pairs: a passage in, ``-n`` pairs out, each answer a span of the passage.

The algorithm lives in :mod:`textgen.qa` (two-stage decoding, span answers, windows, dedup, round
trip); this class turns records into its calls and its pairs into output records
``{"id", "pairs": [{"question", "answer", "start", "score"}], "model", "task", "warnings"?}``.

A record with an ``"answer"`` field (a string, or a list of strings; JSONL input), or any record
when ``--answer TEXT`` is given, gets the question for that answer (answer-aware mode); an
``"answer_start"`` (or ``"start"``) field picks one occurrence of an answer that occurs several
times. The decoding flags shape the answer search (sampling with top-p 0.95 by default, or the
``--beam`` likeliest answers; ``-n`` pairs); questions are decoded greedily, or with
``--question-beams`` beams, under the length and repetition flags.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textgen.output import Output, QAPair
from textgen.prompts import Prompt
from textgen.tasks.base import OnText, Task

if TYPE_CHECKING:
    from textgen.decoding.config import DecodingConfig
    from textgen.io import Record
    from textgen.qa.generator import Ask
    from textgen.qa.script import Script

# Question copy modes (textgen.qa.generator.question_copy; kept here so --help needs no torch).
COPY_MODES = ("numbers", "head", "off")
QUESTION_METHODS = ("model", "rule")
MIN_PASSAGE_CHARS = 10  # letters and digits; fewer is not a passage one can ask about
START_FIELDS = ("answer_start", "start")


class QATask(Task):
    name = "qa"
    kind = "seq2seq"
    summary = (
        "Build question-answer pairs from a passage; every answer is a span of the passage.\n\n"
        "textgen qa -n 3 -i samples/passage.txt prints three 问：/答： blocks; --answer 四川 asks about "
        "a given answer; JSONL records with an \"answer\" field get the question for it. Decoding "
        "flags shape the answer search (sampled, top-p 0.95; --beam K: the K likeliest answers); "
        "questions are greedy (--question-beams K: beam search). --model takes textgen's UniLM models or any chat "
        "LLM directory (its [qa], [qa_question] and [qa_check] prompts: textgen models prompts)."
    )
    default_model = "mini-zh"
    prompts: ClassVar[dict[str, Prompt]] = {
        # Free mode, first step: choose an answer (the task constrains it to a span of the passage).
        "qa": Prompt(
            system="你是一名出题老师，擅长从文章中找出值得提问的信息。",
            user="请从下面的段落中选出一个适合作为阅读理解答案的关键短语，例如人名、地名、机构名、时间、数字或专有名词。"
            "必须原样照抄段落中的文字，只输出这个短语。\n\n段落：\n{text}",
        ),
        # Second step, and answer-aware mode: the question for a given answer.
        "qa_question": Prompt(
            system="你是一名出题老师，擅长根据答案提出清楚的问题。",
            user="请阅读下面的段落，针对给定的答案提出一个问题。问题要能仅凭段落回答，而且它的答案正是给定的答案；"
            "问题中不要直接出现答案。只输出问题，以问号结尾。\n\n段落：\n{text}\n\n答案：{answer}",
        ),
        # The round trip: a reader answers the generated question from the passage.
        "qa_check": Prompt(
            system="你是一名认真的读者，只根据给定的段落回答问题。",
            user="请根据下面的段落回答问题。答案必须是段落中的原文片段，只输出答案。\n\n段落：\n{text}\n\n问题：{question}",
        ),
    }
    # Answers are sampled (algorithms.md 3: top-p 0.95); -n is the number of pairs. No-repeat 3
    # stops the loops a weak model falls into in its questions (苏波罗波罗波罗…).
    defaults: ClassVar[dict[str, Any]] = {
        "do_sample": True, "top_p": 0.95, "num_return_sequences": 5, "no_repeat_ngram_size": 3, "max_new_tokens": 32,
    }
    options: ClassVar[dict[str, Any]] = {
        "answer": "", "check": True, "question_beams": 1, "copy": "numbers", "questions": "model",
    }
    # An LLM echoes the answer in its first question; four beams give it questions that do not
    # (the best of them is kept: textgen.qa.generator), 24.7 -> 30.7 ROUGE-L on qa-dev (docs/gguf.md).
    chat_defaults: ClassVar[dict[str, Any]] = {"question_beams": 4}
    option_choices: ClassVar[dict[str, tuple[str, ...]]] = {"copy": COPY_MODES, "questions": QUESTION_METHODS}
    option_help: ClassVar[dict[str, str]] = {
        "copy": "How questions copy from the passage: numbers (a number in a question is a whole number of the "
        "passage), head (the model's copy head decides when to copy, numbers kept whole; needs a model with a "
        "copy head) or off. Answers are always spans of the passage.",
        "answer": "Ask about this answer (it must occur in the passage) instead of sampling answers.",
        "check": "Rank pairs by a round trip: how strongly the model, reading the passage and the question, "
        "points back to the answer.",
        "question_beams": "Beam width for the questions; 1 = greedy.",
        "questions": "Who writes the questions: model, or rule (the answer's sentence with the answer replaced by "
        "什么: no model needed, and on qa data closer to the gold questions than the embedded model's). "
        "The embedded model presets rule.",
    }
    def check_ready(self) -> None:
        self.driver()  # a model that can do no QA is refused before any record

    def driver(self) -> Any:
        """How this model is asked (``textgen.qa.drivers``): its source prefixes or chat prompts."""
        from textgen.qa.drivers import driver_for

        return driver_for(self.adapter, self.model_dir.source_prefix, self.chat_prompts)

    @classmethod
    def check_option(cls, name: str, value: Any) -> Any:
        value = super().check_option(name, value)
        if name == "question_beams" and value < 1:
            raise ValueError(f"question_beams must be at least 1, not {value}")
        return value

    def generate(self, records: list[Record], config: DecodingConfig, on_text: OnText | None = None) -> list[Output]:
        from textgen.qa.generator import QAGenerator
        from textgen.qa.script import simplify

        generator = QAGenerator(self.driver())
        run = {"beams": self.settings["question_beams"], "check": self.settings["check"], "copy": self.settings["copy"],
               "questions": self.settings["questions"]}
        results: dict[int, Output] = {}
        free: list[tuple[int, Script]] = []
        asks: list[tuple[int, Ask]] = []
        notes: dict[int, list[str]] = {}
        for i, rec in enumerate(records):
            script = simplify(rec.text or "")
            answers = self._given_answers(rec)
            try:
                if answers is None:
                    _check_passage(script)
                    free.append((i, script))
                elif not answers:
                    raise ValueError("the answer field is an empty list: give one or more answers")
                else:
                    for answer in answers:
                        ask, note = _locate(script, answer, _given_start(rec, len(answers)))
                        asks.append((i, ask))
                        notes.setdefault(i, []).extend(note)
            except ValueError as exc:
                results[i] = self.error(rec, str(exc))
        generated = generator.pairs([s for _, s in free], config, config.num_return_sequences, **run)
        for (i, _), gen in zip(free, generated):
            results[i] = self._pairs_output(records[i], gen.pairs, gen.warnings)
        pending = [(i, ask) for i, ask in asks if i not in results]  # records whose every answer was found
        asked = generator.ask([ask for _, ask in pending], config, **run)
        by_record: dict[int, list[tuple[Ask, Any]]] = {}
        for (i, ask), out in zip(pending, asked):
            by_record.setdefault(i, []).append((ask, out))
        for i, items in by_record.items():
            results[i] = self._asked_output(records[i], items, notes.get(i, []), config)
        return [results[i] for i in range(len(records))]

    def _given_answers(self, rec: Record) -> list[Any] | None:
        """The answers a record asks about (its ``answer`` field, else ``--answer``); None: sample them."""
        if "answer" in rec.fields:
            given = rec.fields["answer"]
            return given if isinstance(given, list) else [given]
        return [self.settings["answer"]] if self.settings["answer"] else None

    def _asked_output(self, rec: Record, items: list[tuple[Ask, Any]], notes: list[str], config: DecodingConfig) -> Output:
        pairs, warnings = [], list(notes)
        for ask, out in items:
            answer = ask.script.original[ask.start : ask.start + ask.length]
            if not out.question:
                return self.error(rec, f"the model wrote no question for the answer {answer!r}; try another model")
            if not out.finished:
                warnings.append(f"the question for {answer!r} was cut at max_new_tokens={config.max_new_tokens}; "
                                "raise --max-new-tokens for more")
            pairs.append(QAPair(out.question, answer, ask.start, out.score))
        return self._pairs_output(rec, pairs, warnings)

    def _pairs_output(self, rec: Record, pairs: list[QAPair], warnings: list[str]) -> Output:
        out = self.output(rec, [], warnings)
        out.pairs = list(pairs)
        return out

    def error(self, rec: Record, message: str) -> Output:
        out = super().error(rec, message)
        out.pairs = []
        return out


def _check_passage(script: Script) -> None:
    from textgen.qa.pairs import core_text

    size = len(core_text(script.text))
    if size < MIN_PASSAGE_CHARS:
        raise ValueError(f"the passage is too short to ask about ({size} letters or digits; qa needs at least "
                         f"{MIN_PASSAGE_CHARS}); give a longer passage, or --answer TEXT")


def _given_start(rec: Record, answers: int) -> int | None:
    """The record's answer offset (one answer only), or None."""
    for key in START_FIELDS:
        value = rec.fields.get(key)
        if answers == 1 and isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _locate(script: Script, answer: Any, start: int | None) -> tuple[Ask, list[str]]:
    """Where ``answer`` is in the passage (its original or simplified characters); ``start``
    picks an occurrence. ValueError with the reason when it is not there."""
    from textgen.qa.generator import Ask
    from textgen.qa.script import simplify

    if not isinstance(answer, str):
        raise ValueError(f"the answer field must be a string or a list of strings, not {answer!r}")
    answer = answer.strip()
    if not answer:
        raise ValueError("the answer field is empty: give the answer text, or leave the field out to sample answers")
    for passage, needle in ((script.original, answer), (script.text, simplify(answer).text)):
        if start is not None and passage[start : start + len(needle)] == needle:
            return Ask(script, start, len(needle)), []
        found = passage.find(needle)
        if found >= 0:
            notes = []
            if start is not None:
                notes.append(f"the answer is not at answer_start {start}; asked about its first occurrence ({found})")
            elif (count := passage.count(needle)) > 1:
                notes.append(f"the answer occurs {count} times in the passage; asked about the first (start {found}); "
                             "give \"answer_start\" to pick another")
            return Ask(script, found, len(needle)), notes
    raise ValueError(f"the answer {answer!r} is not in the passage (answers must be spans of it)")
