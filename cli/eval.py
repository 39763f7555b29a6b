"""`textgen eval`: score models on your data.

* ``eval lm``: bits per character (causal mode) and masked-token accuracy (bidirectional mode) of
  a BERT-family model on plain texts (``textgen.evaluation.lm``).
* ``eval title``: generate a title for every record with the title task and score it against the
  reference with ROUGE-1/2/L F1 and BLEU-4, in characters or jieba words
  (``textgen.evaluation.metrics``).
* ``eval qa`` (``cli/eval_qa.py``): question-answer pairs against reading-comprehension data.
* ``eval search`` (``cli/eval_search.py``): keyword-to-sentence search against reference sentences.
* ``eval summarize`` (``cli/eval_summarize.py``): summaries against references, char ROUGE and the
  CAIL2020 score, beside lead/last/TextRank/oracle baselines.

Results go to the terminal as a table, or as one JSON object with ``--format json``. Every number
comes with what it was counted in (unit, characters, tokens) and how. Input problems are one line
on stderr and exit status 2. Heavy imports (torch, the metric libraries) happen inside the command
bodies, so ``textgen eval --help`` stays instant.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .console import fail, warn
from .options import Device

if TYPE_CHECKING:
    from textgen.config import Settings
    from textgen.io import Record

app = typer.Typer(help="Evaluate models: language-model bits per character, title ROUGE/BLEU, QA pairs, summaries.", no_args_is_help=True)


class Unit(str, Enum):
    char = "char"
    word = "word"


class ReportFormat(str, Enum):
    table = "table"
    json = "json"


DataOption = Annotated[Path, typer.Option("--data", "-d", show_default=False, help="The file to evaluate on.")]
FormatOption = Annotated[ReportFormat, typer.Option("--format", "-f", help="table: for people; json: one object, for scripts.")]
DeviceOption = Annotated[Device | None, typer.Option("--device", show_default=False, help="auto, cpu or cuda (default: $TEXTGEN_DEVICE, config, auto).")]
BatchOption = Annotated[int, typer.Option("--batch-size", min=1, help="Texts per model call.")]
LimitOption = Annotated[int | None, typer.Option("--limit", min=1, show_default=False, help="Use only the first N records.")]
PickleOption = Annotated[bool, typer.Option("--allow-pickle", help="Load pickled weights (pytorch_model.bin); pickles can run code.")]


# ---------------------------------------------------------------------- input
def _check_records(records: list[Record], data: Path) -> list[Record]:
    """Evaluation needs every record: the first unusable one stops the run (exit 2)."""
    for rec in records:
        if rec.error is not None:
            fail(f"{data}: record {rec.id}: {rec.error}")
        for message in rec.warnings:
            warn(f"{data}: record {rec.id}: {message}")
    return records


def _read(data: Path, *, field: str) -> list[Record]:
    from textgen.io import read_file

    if not data.is_file():
        fail(f"--data {data}: no such file")
    try:
        return list(read_file(data, field=field))
    except ValueError as exc:  # e.g. a TSV column name missing from the header
        fail(str(exc))


def read_lm_texts(data: Path, text_field: str) -> list[str]:
    """Texts from ``.jsonl`` (``text_field``) or a text file with one text per line (blank lines
    separate nothing and are skipped)."""
    suffix = data.suffix.lower()
    if suffix == ".tsv":
        fail(f"--data {data}: eval lm reads .txt (one text per line) or .jsonl, not .tsv")
    if suffix == ".jsonl":
        return [rec.text or "" for rec in _check_records(_read(data, field=text_field), data)]
    if not data.is_file():
        fail(f"--data {data}: no such file")
    from textgen.io import read_file

    return [rec.text or "" for rec in _check_records(list(read_file(data, lines=True)), data)]


def read_title_pairs(data: Path, *, text_field: str, ref_field: str, text_col: str, ref_col: str) -> list[tuple[Record, str]]:
    """(record, reference title) pairs from ``.jsonl`` fields or ``.tsv`` columns (index or header name)."""
    suffix = data.suffix.lower()
    if suffix == ".jsonl":
        records = _check_records(_read(data, field=text_field), data)
        pairs = []
        for rec in records:
            ref = rec.fields.get(ref_field)
            if not isinstance(ref, str) or not ref.strip():
                fail(f"{data}: record {rec.id}: no reference title in field {ref_field!r}")
            pairs.append((rec, ref))
        return pairs
    if suffix == ".tsv":
        if text_col.isdigit() != ref_col.isdigit():
            fail("--text-col and --ref-col: give both as column indices, or both as header names")
        texts = _check_records(_read(data, field=text_col), data)
        refs = _check_records(_read(data, field=ref_col), data)
        return [(rec, ref.text or "") for rec, ref in zip(texts, refs)]
    fail(f"--data {data}: eval title reads .jsonl (--text-field/--ref-field) or .tsv (--text-col/--ref-col)")


# ---------------------------------------------------------------------- output
def _emit(result: dict[str, Any], fmt: ReportFormat, title: str, rows: list[tuple[str, str]]) -> None:
    if fmt is ReportFormat.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


def _settings() -> Settings:
    from .engine import EngineError, settings

    try:
        return settings()
    except EngineError as exc:
        fail(str(exc))


def _device(device: Device | None, user: Settings) -> str:
    """``--device``, else the user's configured device; also applies the configured thread count."""
    from .engine import EngineError, pick_device

    try:
        return pick_device(device.value if device else user.device, user.threads)
    except EngineError as exc:
        fail(str(exc))


def load_eval_task(name: str, model: str | None, device: Device | None, allow_pickle: bool,
                   overrides: dict[str, Any]) -> tuple[Any, Any, Any]:
    """``(model info, decoding config, task)`` for task ``name`` as ``textgen NAME`` would build
    them (``model`` None: the task's default model), ``overrides`` applied to the decoding
    settings; a problem is one line and exit 2."""
    from .engine import Engine, EngineError, resolve_model

    user = _settings()
    try:
        info = resolve_model(name, model, user)
        engine = Engine(user, _device(device, user), allow_pickle=allow_pickle)
        return info, engine.config(name, info, overrides), engine.task(name, info)
    except EngineError as exc:
        fail(str(exc))


# ---------------------------------------------------------------------- commands
@app.command("lm")
def lm(
    data: DataOption,
    model: Annotated[str | None, typer.Option("--model", "-m", show_default=False,
                                              help="Model name or directory of a BERT-family checkpoint (default: the built-in continuation model).")] = None,
    text_field: Annotated[str, typer.Option("--text-field", help="JSONL: the field holding the text.")] = "text",
    max_len: Annotated[int | None, typer.Option("--max-len", min=3, show_default=False,
                                                help="Window length in tokens; longer texts are cut into windows (default: the length the model was trained on, from its textgen.json, else its maximum).")] = None,
    mask_prob: Annotated[float, typer.Option("--mask-prob", min=0.0, max=1.0, help="Share of tokens masked for the accuracy.")] = 0.15,
    seed: Annotated[int, typer.Option("--seed", help="Seed for choosing the masked positions.")] = 0,
    batch_size: BatchOption = 8,
    limit: LimitOption = None,
    fmt: FormatOption = ReportFormat.table,
    device: DeviceOption = None,
    allow_pickle: PickleOption = False,
) -> None:
    """Bits per character (causal mode, the end of each text included) and masked-token accuracy.

    --data is a .txt file with one text per line, or .jsonl with --text-field. Characters are the non-whitespace characters of the texts, so models with different tokenizers compare.
    """
    texts = read_lm_texts(data, text_field)[:limit]
    if not texts:
        fail(f"--data {data}: no texts to evaluate")
    from textgen.models.registry import DEFAULT_MODELS, ModelNotFound, resolve

    try:
        info = resolve(model or DEFAULT_MODELS["continue"])
    except ModelNotFound as exc:
        fail(str(exc))
    target = _device(device, _settings())
    from textgen.evaluation.lm import lm_cost, masked_lm_score
    from textgen.models.adapters import meta_tokens
    from textgen.models.backbone import BertBackbone
    from textgen.tokenizer import ChineseTokenizer

    try:
        backbone = BertBackbone.load(info.path, allow_pickle=allow_pickle).to(target)
        tokenizer = ChineseTokenizer.from_dir(info.path)
    except (OSError, ValueError, KeyError, PermissionError) as exc:
        fail(f"cannot load {info.name!r} from {info.path} as a BERT model with a vocab.txt: {exc}")
    if max_len is None:
        trained = meta_tokens(info.path, "max_context_tokens")
        max_len = min(trained, backbone.config.max_position_embeddings) if trained else None
    try:
        cost = lm_cost(backbone, tokenizer, texts, max_len=max_len, batch_size=batch_size)
        masked = masked_lm_score(backbone, tokenizer, texts, mask_prob=mask_prob, seed=seed, max_len=max_len, batch_size=batch_size)
    except ValueError as exc:
        fail(str(exc))
    result = {
        "model": info.name,
        "data": str(data),
        "texts": len(texts),
        "chars": cost.chars,
        "tokens": cost.tokens,
        "bits": round(cost.bits, 3),
        "bits_per_char": round(cost.bits_per_char, 4),
        "bits_per_token": round(cost.bits_per_token, 4),
        "masked_tokens": masked.masked,
        "masked_accuracy": round(masked.accuracy, 4),
        "mask_prob": mask_prob,
        "seed": seed,
        "max_len": max_len or backbone.config.max_position_embeddings,
    }
    rows = [
        ("model", info.name),
        ("data", f"{data} ({len(texts):,} texts)"),
        ("bits / char", f"{cost.bits_per_char:.4f}  (causal; {cost.chars:,} non-whitespace chars)"),
        ("bits / token", f"{cost.bits_per_token:.4f}  ({cost.tokens:,} tokens incl. one end token per text)"),
        ("masked accuracy", f"{masked.accuracy:.2%}  ({masked.masked:,} tokens masked, p={mask_prob}, seed {seed})"),
    ]
    _emit(result, fmt, "language model", rows)


@app.command("title")
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
    from textgen.tasks.title import TitleTask

    options = {k: v for k, v in (("method", method), ("copy", copy)) if v is not None}
    try:
        options = {k: TitleTask.check_option(k, v) for k, v in options.items()}
    except ValueError as exc:
        fail(str(exc))
    pairs = read_title_pairs(data, text_field=text_field, ref_field=ref_field, text_col=text_col, ref_col=ref_col)[:limit]
    if not pairs:
        fail(f"--data {data}: no records to evaluate")
    from .engine import Engine, EngineError, resolve_model

    user = _settings()
    try:
        info = resolve_model("title", model, user)
        engine = Engine(user, _device(device, user), allow_pickle=allow_pickle)
        config = engine.config("title", info, {"num_beams": beam} if beam else {})
        task = engine.task("title", info)
        task.configure(**options)
        task.check_ready()
    except (EngineError, ValueError) as exc:
        fail(str(exc))
    from .output import progress_bar
    from textgen.evaluation.metrics import MetricReport, score_pair, unfaithful_numbers

    outputs: list[dict[str, Any]] = []
    with progress_bar(sys.stderr.isatty(), len(pairs)) as advance:
        for start in range(0, len(pairs), batch_size):
            batch = [rec for rec, _ in pairs[start : start + batch_size]]
            outputs += task.run(batch, config)
            advance(len(batch))
    failed = [out for out in outputs if out.get("error")]
    if failed:
        warn(f"{len(failed)} of {len(outputs)} records failed and score 0 (first: {failed[0]['id']}: {failed[0]['error']})")
    predicted = [out["outputs"][0]["text"] if out["outputs"] else "" for out in outputs]
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
                if out.get("error"):
                    row["error"] = out["error"]
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


# ---------------------------------------------------------------------- commands in modules of their own
from .eval_qa import qa  # noqa: E402 -- it builds on the options above
from .eval_search import search  # noqa: E402 -- it builds on the options above
from .eval_summarize import summarize  # noqa: E402 -- it builds on the options above

app.command("qa")(qa)
app.command("search")(search)
app.command("summarize")(summarize)
