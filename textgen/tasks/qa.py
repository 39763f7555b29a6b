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

from textgen.tasks.base import Task

if TYPE_CHECKING:
    from textgen.decoding.config import DecodingConfig
    from textgen.io import Record
    from textgen.qa.generator import Ask
    from textgen.qa.script import Script

# Question copy modes (textgen.qa.generator.question_copy; kept here so --help needs no torch).
COPY_MODES = ("numbers", "head", "off")
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
    # Answers are sampled (algorithms.md 3: top-p 0.95); -n is the number of pairs. No-repeat 3
    # stops the loops a weak model falls into in its questions (苏波罗波罗波罗…).
    defaults: ClassVar[dict[str, Any]] = {
        "do_sample": True, "top_p": 0.95, "num_return_sequences": 5, "no_repeat_ngram_size": 3, "max_new_tokens": 32,
    }
    options: ClassVar[dict[str, Any]] = {"answer": "", "check": True, "question_beams": 1, "copy": "numbers"}
    option_choices: ClassVar[dict[str, tuple[str, ...]]] = {"copy": COPY_MODES}
    option_help: ClassVar[dict[str, str]] = {
        "copy": "How questions copy from the passage: numbers (a number in a question is a whole number of the "
        "passage), head (the model's copy head decides when to copy, numbers kept whole; needs a model with a "
        "copy head) or off. Answers are always spans of the passage.",
        "answer": "Ask about this answer (it must occur in the passage) instead of sampling answers.",
        "check": "Rank pairs by a round trip: how strongly the model, reading the passage and the question, "
        "points back to the answer.",
        "question_beams": "Beam width for the questions; 1 = greedy.",
    }
    def __init__(self, adapter: Any, **kw: Any) -> None:
        from textgen.qa.drivers import driver_for

        super().__init__(adapter, **kw)
        driver_for(adapter)  # a model that can do no QA is refused at load time, not once per record

    @property
    def driver(self) -> Any:
        """How this model is asked (``textgen.qa.drivers``), built on use: the source prefixes come
        from ``model_dir``, which ``load_task`` sets after ``__init__``."""
        from textgen.qa.drivers import driver_for

        return driver_for(self.adapter, self.source_prefix)

    @classmethod
    def check_option(cls, name: str, value: Any) -> Any:
        value = super().check_option(name, value)
        if name == "question_beams" and value < 1:
            raise ValueError(f"question_beams must be at least 1, not {value}")
        return value

    def _generate(self, records: list[Record], config: DecodingConfig) -> list[dict[str, Any]]:
        from textgen.qa.generator import QAGenerator
        from textgen.qa.script import simplify

        generator = QAGenerator(self.driver)
        run = {"beams": self.settings["question_beams"], "check": self.settings["check"], "copy": self.settings["copy"]}
        results: dict[int, dict[str, Any]] = {}
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
                results[i] = self._error(rec, str(exc))
        generated = generator.pairs([s for _, s in free], config, config.num_return_sequences, **run)
        for (i, _), gen in zip(free, generated):
            results[i] = self._pairs_output(records[i], [p.to_dict() for p in gen.pairs], gen.warnings)
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

    def _asked_output(self, rec: Record, items: list[tuple[Ask, Any]], notes: list[str], config: DecodingConfig) -> dict[str, Any]:
        from textgen.qa.pairs import QAPair

        pairs, warnings = [], list(notes)
        for ask, out in items:
            answer = ask.script.original[ask.start : ask.start + ask.length]
            if not out.question:
                return self._error(rec, f"the model wrote no question for the answer {answer!r}; try another model")
            if not out.finished:
                warnings.append(f"the question for {answer!r} was cut at max_new_tokens={config.max_new_tokens}; "
                                "raise --max-new-tokens for more")
            pairs.append(QAPair(out.question, answer, ask.start, out.score).to_dict())
        return self._pairs_output(rec, pairs, warnings)

    def _pairs_output(self, rec: Record, pairs: list[dict[str, Any]], warnings: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"id": rec.id, "pairs": pairs, "model": self.model, "task": self.name}
        if rec.warnings or warnings:
            out["warnings"] = [*rec.warnings, *warnings]
        return out

    def _error(self, rec: Record, message: str) -> dict[str, Any]:
        out = super()._error(rec, message)
        del out["outputs"]
        return {"id": out.pop("id"), "pairs": [], **out}


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
