"""`textgen eval qa`: question-answer pairs scored against reading-comprehension data.

Registered on the ``textgen eval`` app by ``cli/eval.py``; the measuring lives in
``textgen.qa.evaluate`` (also used by ``benchmarks/qa.py``). torch is imported only inside the
command body, so ``--help`` stays instant.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..console import fail, warn
from .common import BatchOption, DataOption, DeviceOption, FormatOption, PickleOption, ReportFormat, _emit, eval_job


class Mode(str, Enum):
    both = "both"
    aware = "aware"
    free = "free"


def qa(
    data: DataOption,
    model: Annotated[str | None, typer.Option("--model", "-m", show_default=False,
                                              help="Embedded model name, model directory, or cached HF id (default: the qa model).")] = None,
    mode: Annotated[Mode, typer.Option("--mode", help="aware: a question for each gold answer; free: -n pairs per passage; both.")] = Mode.both,
    num: Annotated[int | None, typer.Option("--num", "-n", min=1, show_default=False, help="Pairs per passage in free generation (default: the model's qa setting, else 5).")] = None,
    check: Annotated[bool | None, typer.Option("--check/--no-check", show_default=False, help="Rank pairs by the round-trip check (default: the model's choice, else on).")] = None,
    question_beams: Annotated[int | None, typer.Option("--question-beams", min=1, show_default=False, help="Beam width for questions (default: the model's choice, else 1 = greedy).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for sampling answers.")] = 0,
    limit: Annotated[int | None, typer.Option("--limit", min=1, show_default=False, help="Use only the first N passages.")] = None,
    predictions: Annotated[Path | None, typer.Option("--predictions", show_default=False,
                                                     help="Also write every generated question and pair to this JSONL file.")] = None,
    batch_size: BatchOption = 8,
    fmt: FormatOption = ReportFormat.table,
    device: DeviceOption = None,
    allow_pickle: PickleOption = False,
) -> None:
    """Score question generation: answer-aware question ROUGE/BLEU and free-generation answer checks.

    --data is SQuAD-style .json (CMRC2018, DRCD) or .jsonl with passage, question, answer (and optionally answer_start) per line. Example: textgen eval qa --data cmrc2018_dev.json --limit 50

    Answer-aware: one question per gold answer, character ROUGE-1/2/L F1 and BLEU-4 against the gold question (mean over questions, x100), beside the rule baseline (the answer's sentence with the answer replaced by 什么). Free: -n pairs per passage; the share of answers that are spans of the passage (must be 100%), the share equal to a gold answer of the passage, duplicates, questions without a question mark.
    """
    from textgen.qa.evaluate import evaluate_aware, evaluate_free, read_qa_data

    if not data.is_file():
        fail(f"--data {data}: no such file")
    try:
        passages = read_qa_data(data)[:limit]
    except ValueError as exc:
        fail(str(exc))
    if not passages:
        fail(f"--data {data}: no answerable questions to evaluate")
    overrides: dict[str, Any] = {"seed": seed, **({"num_return_sequences": num} if num else {})}
    options = {k: v for k, v in (("check", check), ("question_beams", question_beams)) if v is not None}
    job = eval_job("qa", model, device, allow_pickle, overrides, options)
    info, config, task = job.info, job.config, job.task
    from ..output import progress_bar

    golds = sum(len(p.golds) for p in passages)
    result: dict[str, Any] = {"model": info.name, "data": str(data), "passages": len(passages), "unit": "char",
                              "settings": {"n": config.num_return_sequences, "top_p": config.top_p, "seed": seed,
                                           **{k: task.settings[k] for k in ("check", "question_beams")}}}
    aware = free = None
    todo = (golds if mode is not Mode.free else 0) + (len(passages) if mode is not Mode.aware else 0)
    with progress_bar(sys.stderr.isatty(), todo) as advance:
        if mode is not Mode.free:
            aware = evaluate_aware(task, config, passages, batch_size=batch_size, advance=advance)
            result["aware"] = aware.to_dict()
        if mode is not Mode.aware:
            free = evaluate_free(task, config, passages, batch_size=batch_size, advance=advance)
            result["free"] = free.to_dict()
    for part in (aware, free):
        if part is not None and part.failed:
            warn(f"{part.failed} records failed (they score 0); run textgen qa on them to see why")
    if predictions is not None:
        with predictions.open("w", encoding="utf-8") as f:
            for kind, part in (("aware", aware), ("free", free)):
                for row in part.rows if part else []:
                    f.write(json.dumps({"mode": kind, **row}, ensure_ascii=False) + "\n")
    _emit(result, fmt, "qa scores (character level; ROUGE/BLEU: mean over questions, x100)", _rows(result, aware, free))


def _rows(result: dict[str, Any], aware: Any, free: Any) -> list[tuple[str, str]]:
    s = result["settings"]
    rows = [("model", f"{result['model']}  (question beams {s['question_beams']}, check {'on' if s['check'] else 'off'})"),
            ("data", f"{result['data']} ({result['passages']:,} passages)")]
    if aware is not None:
        metrics = lambda r: f"ROUGE-1 {r.rouge1:.2f}  ROUGE-2 {r.rouge2:.2f}  ROUGE-L {r.rougeL:.2f}  BLEU-4 {r.bleu:.2f}"  # noqa: E731
        rows += [("answer-aware", f"{aware.questions:,} gold answers, {aware.questions / max(aware.seconds, 1e-9):.1f} questions/s"),
                 ("  model", metrics(aware.model)), ("  rule baseline", metrics(aware.rule)),
                 ("  no question mark", f"{aware.without_mark} questions")]
    if free is not None:
        d = {k: ("n/a" if v is None else v) for k, v in free.to_dict().items()}
        rows += [("free generation", f"n = {d['n']}: {d['pairs']:,} pairs, {d['pairs_per_passage']} per passage, "
                                     f"{d['pairs_per_s']} pairs/s"),
                 ("  span answers", f"{d['span_answers_pct']}% of answers (must be 100%)"),
                 ("  gold answers", f"{d['gold_answer_match_pct']}% of answers equal a gold answer of their passage"),
                 ("  duplicates", f"{d['duplicates']} pairs; {d['without_question_mark']} questions without a question mark"),
                 ("  fewer pairs", f"{d['passages_with_fewer_pairs']} passages got fewer than {d['n']}")]
    if aware is not None:
        rows.append(("implementation", aware.model.implementation))
    return rows
