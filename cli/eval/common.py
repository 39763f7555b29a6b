"""What the ``textgen eval`` commands share: options, input readers, the job, the report."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..console import fail, warn
from ..options import Device

if TYPE_CHECKING:
    from textgen.io import Record
    from textgen.output import Output
    from textgen.runner import Job, Runner


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


def eval_runner(device: Device | None, allow_pickle: bool) -> Runner:
    """The runner ``textgen NAME`` would use, with ``--device`` and ``--allow-pickle``."""
    from textgen.runner import Runner, RunError

    try:
        return Runner(device=device.value if device else None, allow_pickle=allow_pickle)
    except RunError as exc:
        fail(str(exc))


def eval_job(name: str, model: str | None, device: Device | None, allow_pickle: bool,
             decoding: dict[str, Any], options: dict[str, Any] | None = None) -> Job:
    """The job of task ``name`` exactly as ``textgen NAME`` would build it (``model`` None: the
    task's default model), with ``decoding`` and ``options`` applied; a problem is one line and exit 2."""
    from textgen.runner import RunError

    runner = eval_runner(device, allow_pickle)
    try:
        job = runner.job(name, model, options=options or {}, decoding=decoding)
    except RunError as exc:
        fail(str(exc))
    for message in job.warnings:
        warn(message)
    return job


def run_records(job: Job, records: list[Record], batch_size: int, advance: Callable[[int], None]) -> list[Output]:
    """The outputs of ``records``, a batch at a time, advancing a progress bar per record."""
    outputs = []
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        outputs += job.task.run(batch, job.config)
        advance(len(batch))
    return outputs


