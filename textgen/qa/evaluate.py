"""Scoring question-answer generation against reading-comprehension data.

Two measurements, both through the real task (``QATask.run`` on records, as ``textgen qa`` runs):

* **answer-aware**: for every gold (passage, answer) the generated question is scored against the
  gold question with character ROUGE-1/2/L F1 and BLEU-4 (``textgen.evaluation.metrics``, mean over
  questions, x100), beside the rule baseline (``textgen.qa.rule``) on the same questions;
* **free generation**: ``n`` pairs per passage; the share of answers that are spans of the passage
  at their ``start`` (must be 100%), the share that match a gold answer of the passage (same text,
  case, spaces and punctuation ignored) and the character ROUGE-L of their questions against that
  gold answer's question, duplicate pairs (``textgen.qa.pairs.is_duplicate``) and questions that do
  not end in a question mark (both must be 0).

Data: SQuAD-style JSON (``data[].paragraphs[].context`` / ``qas[].question`` /
``answers[].text, answer_start``; unanswerable and YES/NO questions skipped) or JSONL with one
question per line (``passage`` or ``context``, ``question``, ``answer``, optional ``answer_start``),
grouped by passage.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textgen.evaluation.metrics import MetricReport, score_pair
from textgen.io import Record
from textgen.output import Output
from textgen.qa.pairs import QUESTION_MARKS, is_duplicate, same_answer
from textgen.qa.rule import rule_question

UNIT = "char"


@dataclass(frozen=True)
class Gold:
    question: str
    answer: str
    start: int


@dataclass
class Passage:
    text: str
    golds: list[Gold] = field(default_factory=list)


# ---------------------------------------------------------------------- data
def group(triples: Iterable[tuple[str, str, str, Any]]) -> list[Passage]:
    """Passages from ``(passage, question, answer, answer_start)`` triples, in first-seen order.
    Empty, non-text and YES/NO answers are skipped; a start that does not point at the answer is replaced by
    the answer's first occurrence, and an answer that is not in the passage is skipped."""
    passages: dict[str, Passage] = {}
    for text, question, answer, start in triples:
        if not all(isinstance(x, str) for x in (text, question, answer)):
            continue
        question, answer = question.strip(), answer.strip()
        if not answer or answer in ("YES", "NO") or not question:
            continue
        if not (isinstance(start, int) and text[start : start + len(answer)] == answer):
            start = text.find(answer)
            if start < 0:
                continue
        passages.setdefault(text, Passage(text)).golds.append(Gold(question, answer, start))
    return list(passages.values())


def read_qa_data(path: Path) -> list[Passage]:
    """Passages with their gold questions and answers; ValueError names what is wrong with the file."""
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    triples: list[tuple[str, str, str, Any]] = []
    if path.suffix.lower() == ".jsonl":
        for n, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {n}: malformed JSON ({exc.msg})") from None
            text = rec.get("passage", rec.get("context")) if isinstance(rec, dict) else None
            if not isinstance(text, str) or not isinstance(rec.get("question"), str) or not isinstance(rec.get("answer"), str):
                raise ValueError(f"{path}: line {n}: needs string fields passage (or context), question and answer")
            triples.append((text, rec["question"], rec["answer"], rec.get("answer_start", rec.get("start"))))
    elif path.suffix.lower() == ".json":
        try:
            data = json.loads(raw)["data"]
            for doc in data:
                for para in doc["paragraphs"]:
                    for qa in para["qas"]:
                        if str(qa.get("is_impossible", "false")).lower() == "true" or not qa.get("answers"):
                            continue
                        ans = qa["answers"][0]
                        triples.append((para["context"], qa["question"], ans["text"], ans.get("answer_start")))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: malformed JSON ({exc.msg}, line {exc.lineno})") from None
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}: not SQuAD-style JSON (data[].paragraphs[].context/qas[]): missing {exc}") from None
    else:
        raise ValueError(f"{path}: eval qa reads SQuAD-style .json or .jsonl (passage, question, answer)")
    return group(triples)


# ---------------------------------------------------------------------- runs
Progress = Callable[[int], None]


def _run(task: Any, records: list[Record], config: Any, batch_size: int, advance: Progress) -> list[Output]:
    outputs: list[Output] = []
    for first in range(0, len(records), batch_size):
        batch = records[first : first + batch_size]
        outputs += task.run(batch, config)
        advance(len(batch))
    return outputs


@dataclass
class AwareResult:
    model: MetricReport
    rule: MetricReport
    questions: int
    failed: int
    without_mark: int
    seconds: float
    rows: list[dict]

    def to_dict(self) -> dict:
        return {"questions": self.questions, "failed": self.failed, "without_question_mark": self.without_mark,
                "seconds": round(self.seconds, 2), "questions_per_s": round(self.questions / max(self.seconds, 1e-9), 2),
                "model": self.model.to_dict(), "rule_baseline": self.rule.to_dict()}


def rule_report(passages: Iterable[Passage]) -> MetricReport:
    """The rule baseline's questions scored against the gold questions."""
    golds = [(p.text, g) for p in passages for g in p.golds]
    return MetricReport.from_samples([score_pair(rule_question(t, g.answer, g.start), g.question, UNIT) for t, g in golds], UNIT)


def evaluate_aware(task: Any, config: Any, passages: list[Passage], *, batch_size: int = 8,
                   advance: Progress = lambda n: None) -> AwareResult:
    """One question per gold answer (a failed record scores 0), scored against the gold question."""
    records = [Record(f"{i}:{j}", p.text, fields={"answer": g.answer, "answer_start": g.start})
               for i, p in enumerate(passages) for j, g in enumerate(p.golds)]
    golds = [g for p in passages for g in p.golds]
    start = time.perf_counter()
    outputs = _run(task, records, config, batch_size, advance)
    seconds = time.perf_counter() - start
    questions = [out.pairs[0].question if out.pairs else "" for out in outputs]
    samples = [score_pair(q, g.question, UNIT) for q, g in zip(questions, golds)]
    rows = [{"id": rec.id, "answer": g.answer, "question": q, "reference": g.question,
             "rule": rule_question(rec.text or "", g.answer, g.start), "rougeL": round(s["rougeL"], 2)}
            for rec, g, q, s in zip(records, golds, questions, samples)]
    return AwareResult(
        model=MetricReport.from_samples(samples, UNIT), rule=rule_report(passages), questions=len(golds),
        failed=sum(out.error is not None for out in outputs),
        without_mark=sum(bool(q) and not q.endswith(QUESTION_MARKS) for q in questions), seconds=seconds, rows=rows,
    )


@dataclass
class FreeResult:
    passages: int
    n: int
    pairs: int
    spans: int  # answers that are passage[start : start + len(answer)]
    gold_matches: int  # answers equal to a gold answer of their passage
    duplicates: int
    without_mark: int
    short: int  # passages that got fewer than n pairs
    failed: int
    seconds: float
    rows: list[dict]
    matched_rougeL: float | None = None  # noqa: N815 -- mean question ROUGE-L of gold-matched pairs vs that gold's question

    def to_dict(self) -> dict:
        share = lambda k: round(100 * k / self.pairs, 2) if self.pairs else None  # noqa: E731
        return {"passages": self.passages, "n": self.n, "pairs": self.pairs, "pairs_per_passage": round(self.pairs / max(self.passages, 1), 2),
                "span_answers_pct": share(self.spans), "gold_answer_match_pct": share(self.gold_matches),
                "matched_question_rougeL": None if self.matched_rougeL is None else round(self.matched_rougeL, 2),
                "duplicates": self.duplicates, "without_question_mark": self.without_mark,
                "passages_with_fewer_pairs": self.short, "failed": self.failed, "seconds": round(self.seconds, 2),
                "pairs_per_s": round(self.pairs / max(self.seconds, 1e-9), 2)}


def evaluate_free(task: Any, config: Any, passages: list[Passage], *, batch_size: int = 8,
                  advance: Progress = lambda n: None) -> FreeResult:
    """``config.num_return_sequences`` pairs per passage, checked for spans, gold matches, duplicates."""
    records = [Record(i, p.text) for i, p in enumerate(passages)]
    start = time.perf_counter()
    outputs = _run(task, records, config, batch_size, advance)
    seconds = time.perf_counter() - start
    counts = dict.fromkeys(("pairs", "spans", "gold", "dups", "marks", "short"), 0)
    rows, matched = [], []
    for passage, out in zip(passages, outputs):
        pairs = list(out.pairs or [])
        counts["pairs"] += len(pairs)
        counts["short"] += len(pairs) < config.num_return_sequences
        for k, pair in enumerate(pairs):
            span = passage.text[pair.start : pair.start + len(pair.answer)] == pair.answer
            gold = next((g for g in passage.golds if same_answer(pair.answer, g.answer)), None)
            if gold is not None:
                matched.append(score_pair(pair.question, gold.question, UNIT)["rougeL"])
            dup = is_duplicate(pair, pairs[:k])
            counts["spans"] += span
            counts["gold"] += gold is not None
            counts["dups"] += dup
            counts["marks"] += not pair.question.endswith(QUESTION_MARKS)
            rows.append({"passage": out.id, **pair.to_dict(), "span": span, "gold_question": gold.question if gold else None,
                         "duplicate": dup})
    return FreeResult(
        passages=len(passages), n=config.num_return_sequences, pairs=counts["pairs"], spans=counts["spans"],
        gold_matches=counts["gold"], duplicates=counts["dups"], without_mark=counts["marks"], short=counts["short"],
        failed=sum(out.error is not None for out in outputs), seconds=seconds, rows=rows,
        matched_rougeL=sum(matched) / len(matched) if matched else None,
    )
