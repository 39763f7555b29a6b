"""``textgen eval title``: titles against references, ROUGE-1/2/L and BLEU-4."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..console import fail, warn
from .common import (BatchOption, DataOption, DeviceOption, FormatOption, LimitOption, PickleOption, ReportFormat, Unit,
                     _emit, eval_job, eval_runner, read_lm_texts, read_title_pairs, run_records)

def title(
    data: DataOption,
    unit: Annotated[Unit, typer.Option("--unit", "-u", help="Count ROUGE/BLEU in characters or jieba words.")] = Unit.char,
    model: Annotated[str | None, typer.Option("--model", "-m", show_default=False,
                                              help="Embedded model name, model directory, or cached HF id (default: the title model).")] = None,
    beam: Annotated[int | None, typer.Option("--beam", "-b", min=1, show_default=False,
                                             help="Beam width (default: the model's title setting); 1 = greedy.")] = None,
    method: Annotated[str | None, typer.Option("--method", show_default=False, metavar="METHOD",
                                               help="write or clause, as for `textgen title --method` (default: the model's choice, else write).")] = None,
    copy: Annotated[str | None, typer.Option("--copy", show_default=False, metavar="MODE",
                                             help="Copy mechanism: off, text, span or head, as for `textgen title --copy` (default: the model's choice, else off); with --method write.")] = None,
    text_field: Annotated[str, typer.Option("--text-field", help="JSONL: the article field.")] = "text",
    ref_field: Annotated[str, typer.Option("--ref-field", help="JSONL: the reference title field.")] = "title",
    text_col: Annotated[str, typer.Option("--text-col", help="TSV: the article column (index from 0, or header name).")] = "1",
    ref_col: Annotated[str, typer.Option("--ref-col", help="TSV: the reference title column (index or header name).")] = "0",
    predictions: Annotated[Path | None, typer.Option("--predictions", show_default=False,
                                                     help="Also write each record's prediction, reference and scores to this JSONL file.")] = None,
    batch_size: BatchOption = 8,
    limit: LimitOption = None,
    fmt: FormatOption = ReportFormat.table,
    device: DeviceOption = None,
    allow_pickle: PickleOption = False,
) -> None:
    """Generate a title for each record and score it against the reference (ROUGE-1/2/L F1, BLEU-4).

    --data is .jsonl (--text-field, --ref-field) or .tsv (--text-col, --ref-col; the defaults read CSL's title<TAB>abstract rows).

    Scores are means over records, x100; a record the model fails on counts as an empty prediction (0). "unfaithful" is the share of titles holding a number the article does not contain (0.7 and 7 differ).

    Example: textgen eval title --data dev.jsonl --method write --copy text --format json
    """
    options = {k: v for k, v in (("method", method), ("copy", copy)) if v is not None}
    pairs = read_title_pairs(data, text_field=text_field, ref_field=ref_field, text_col=text_col, ref_col=ref_col)[:limit]
    if not pairs:
        fail(f"--data {data}: no records to evaluate")
    job = eval_job("title", model, device, allow_pickle, {"num_beams": beam} if beam else {}, options)
    info, config, task = job.info, job.config, job.task
    from textgen.evaluation.metrics import MetricReport, score_pair, unfaithful_numbers

    from ..output import progress_bar

    with progress_bar(sys.stderr.isatty(), len(pairs)) as advance:
        outputs = run_records(job, [rec for rec, _ in pairs], batch_size, advance)
    failed = [out for out in outputs if out.error is not None]
    if failed:
        warn(f"{len(failed)} of {len(outputs)} records failed and score 0 (first: {failed[0].id}: {failed[0].error})")
    predicted = [out.text for out in outputs]
    samples = [score_pair(p, ref, unit.value) for p, (_, ref) in zip(predicted, pairs)]
    report = MetricReport.from_samples(samples, unit.value)
    strays = [unfaithful_numbers(p, rec.text or "") for p, (rec, _) in zip(predicted, pairs)]
    n_unfaithful = sum(map(bool, strays))
    if predictions is not None:
        with predictions.open("w", encoding="utf-8") as f:
            for (rec, ref), pred, scores, out, stray in zip(pairs, predicted, samples, outputs, strays):
                row = {"id": rec.id, "prediction": pred, "reference": ref, **{k: round(v, 2) for k, v in scores.items()}}
                if stray:
                    row["unfaithful_numbers"] = stray
                if out.error is not None:
                    row["error"] = out.error
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    decoding = {"num_beams": config.num_beams, "max_new_tokens": config.max_new_tokens,
                "no_repeat_ngram_size": config.no_repeat_ngram_size, "repetition_penalty": config.repetition_penalty,
                "length_penalty": config.length_penalty, "method": task.settings["method"], "copy": task.settings["copy"]}
    result = {"model": info.name, "data": str(data), "failed": len(failed), "decoding": decoding, **report.to_dict(),
              "unfaithful": round(n_unfaithful / len(strays), 4), "unfaithful_titles": n_unfaithful}
    unit_name = "characters" if unit is Unit.char else "jieba words"
    rows = [
        ("model", f"{info.name}  (" + ("method clause" if task.settings["method"] == "clause" else
                                        f"beam {config.num_beams}, copy {task.settings['copy']}") + ")"),
        ("data", f"{data} ({report.n:,} records{f', {len(failed)} failed' if failed else ''})"),
        ("unit", f"{unit.value}: {unit_name}, lowercased, whitespace dropped"),
        *((name, f"{getattr(report, key):.2f}") for name, key in
          (("ROUGE-1 F1", "rouge1"), ("ROUGE-2 F1", "rouge2"), ("ROUGE-L F1", "rougeL"), ("BLEU-4", "bleu"))),
        ("unfaithful", f"{n_unfaithful / len(strays):.1%}  ({n_unfaithful} titles with a number the article does not contain)"),
        ("implementation", report.implementation),
    ]
    _emit(result, fmt, f"title scores ({unit.value} level, mean over records, x100)", rows)
