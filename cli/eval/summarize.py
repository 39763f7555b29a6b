"""``textgen eval summarize``: summarize every document of a JSONL file and score the summaries
against the references, beside the baselines any summarizer must beat.

Systems in one report: the model (extract, then generate), its extractor alone (extract-only),
lead-N and last-N characters, a TextRank extract of N characters, and the oracle extraction (the
ceiling of any clause extractor). Scores: char ROUGE-1/2/L F1 and the CAIL2020 score
(``textgen.summarize.evaluate``). Torch and the metric libraries are imported inside the command.
"""

from __future__ import annotations

import json
from dataclasses import replace
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..console import fail, warn
from .common import BatchOption, DataOption, DeviceOption, FormatOption, LimitOption, PickleOption, ReportFormat, _check_records, _read, eval_job, run_records


def read_summary_pairs(data: Path, *, text_field: str, ref_field: str) -> list[tuple[Any, str]]:
    """(record, reference summary) pairs of a ``.jsonl`` file."""
    if data.suffix.lower() != ".jsonl":
        fail(f"--data {data}: eval summarize reads .jsonl with --text-field (document) and --ref-field (summary)")
    pairs = []
    for rec in _check_records(_read(data, field=text_field), data):
        ref = rec.fields.get(ref_field)
        if not isinstance(ref, str) or not ref.strip():
            fail(f"{data}: record {rec.id}: no reference summary in field {ref_field!r}")
        pairs.append((rec, ref))
    return pairs


def _run(job: Any, records: list[Any], batch_size: int, label: str) -> list[Any]:
    from ..output import progress_bar

    with progress_bar(sys.stderr.isatty(), len(records)) as advance:
        outputs = run_records(job, records, batch_size, advance)
    failed = [out for out in outputs if out.error is not None]
    if failed:
        warn(f"{label}: {len(failed)} of {len(outputs)} records failed and score 0 "
             f"(first: {failed[0].id}: {failed[0].error})")
    return outputs


def _texts(outputs: list[Any]) -> list[str]:
    return [out.text for out in outputs]


def summarize(
    data: DataOption,
    model: Annotated[str | None, typer.Option("--model", "-m", show_default=False,
                                              help="Embedded model name, model directory, or cached HF id (default: the summarize model).")] = None,
    text_field: Annotated[str, typer.Option("--text-field", help="JSONL: the document field.")] = "document",
    ref_field: Annotated[str, typer.Option("--ref-field", help="JSONL: the reference summary field.")] = "summary",
    extract_only: Annotated[bool, typer.Option("--extract-only", help="Score only the extractor (no generation: fast).")] = False,
    baselines: Annotated[bool, typer.Option("--baselines/--no-baselines", help="Also score lead-N, last-N, TextRank-N and the oracle extraction.")] = True,
    chars: Annotated[int, typer.Option("--baseline-chars", min=1, help="N: the length of the lead, last and TextRank baselines in characters.")] = 150,
    beam: Annotated[int | None, typer.Option("--beam", "-b", min=1, show_default=False, help="Beam width (default: the model's summarize setting).")] = None,
    max_new_tokens: Annotated[int | None, typer.Option("--max-new-tokens", min=1, show_default=False, help="Longest summary in tokens (default: the model's setting).")] = None,
    copy: Annotated[str | None, typer.Option("--copy", show_default=False, metavar="MODE",
                                             help="Copy mechanism: auto, off, text or head, as for `textgen summarize --copy` (default: the model's choice, else auto).")] = None,
    predictions: Annotated[Path | None, typer.Option("--predictions", show_default=False,
                                                     help="Also write each record's summaries, extraction and reference to this JSONL file.")] = None,
    batch_size: BatchOption = 8,
    limit: LimitOption = None,
    fmt: FormatOption = ReportFormat.table,
    device: DeviceOption = None,
    allow_pickle: PickleOption = False,
) -> None:
    """Summarize each document and score it against the reference: char ROUGE-1/2/L F1 and the CAIL2020 score.

    --data is .jsonl with one document and its reference summary per line (--text-field document, --ref-field summary).

    Example: textgen eval summarize --data cases.jsonl --model mini-zh --extract-only
    """
    pairs = read_summary_pairs(data, text_field=text_field, ref_field=ref_field)[:limit]
    if not pairs:
        fail(f"--data {data}: no records to evaluate")
    overrides = {k: v for k, v in (("num_beams", beam), ("max_new_tokens", max_new_tokens)) if v is not None}
    job = eval_job("summarize", model, device, allow_pickle, overrides, {"copy": copy} if copy is not None else {})
    info, config, task = job.info, job.config, job.task
    from textgen.summarize.evaluate import baseline_summaries, implementation, score_summaries, unit_note

    records = [rec for rec, _ in pairs]
    references = [ref for _, ref in pairs]
    systems: dict[str, list[str]] = {}
    runs: dict[str, list[Any]] = {}
    if not extract_only:
        runs["model"] = _run(replace(job, task=task.with_options(extract_only=False)), records, batch_size, "model")
        systems["model"] = _texts(runs["model"])
    runs["extract-only"] = _run(replace(job, task=task.with_options(extract_only=True)), records, batch_size, "extract-only")
    systems["extract-only"] = _texts(runs["extract-only"])
    if baselines:
        systems.update(baseline_summaries([rec.text or "" for rec in records], references, chars))
    scores = {name: score_summaries(texts, references) for name, texts in systems.items()}
    failed = {name: sum(o.error is not None for o in outs) for name, outs in runs.items()}
    method = next((o.extras["extraction"]["method"] for o in runs["extract-only"] if "extraction" in o.extras), None)
    if predictions is not None:
        with predictions.open("w", encoding="utf-8") as f:
            for k, (rec, ref) in enumerate(pairs):
                row = {"id": rec.id, "reference": ref, **{name: texts[k] for name, texts in systems.items()}}
                extraction = runs["extract-only"][k].extras.get("extraction")
                if extraction:
                    row["extraction"] = extraction["clauses"]
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    decoding = {"num_beams": config.num_beams, "max_new_tokens": config.max_new_tokens,
                "no_repeat_ngram_size": config.no_repeat_ngram_size, "copy": task.settings["copy"]}
    result = {"model": info.name, "data": str(data), "records": len(pairs), "extractor": method,
              "decoding": decoding if not extract_only else None, "failed": failed,
              "unit": unit_note(), "implementation": implementation(), "systems": scores}
    if fmt is ReportFormat.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return
    _table(result, chars)


def _table(result: dict[str, Any], chars: int) -> None:
    from rich.console import Console
    from rich.table import Table

    title = f"summaries of {result['records']:,} documents in {result['data']} ({result['model']}, extractor: {result['extractor']})"
    table = Table(title=title, title_justify="left", caption=result["unit"], caption_justify="left")
    table.add_column("system", style="bold")
    for name in ("ROUGE-1", "ROUGE-2", "ROUGE-L", "CAIL", "chars"):
        table.add_column(name, justify="right")
    for name, s in result["systems"].items():
        failed = result["failed"].get(name)
        label = name + (f" ({failed} failed)" if failed else "")
        table.add_row(label, *(f"{s[k]:.2f}" for k in ("rouge1", "rouge2", "rougeL", "cail")), f"{s['chars']:.0f}")
    Console().print(table)
    Console().print(f"[dim]{result['implementation']}[/dim]")
