"""``textgen eval lm``: bits per character and masked-token accuracy of a BERT-family model."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..console import fail, warn
from .common import (BatchOption, DataOption, DeviceOption, FormatOption, LimitOption, PickleOption, ReportFormat, Unit,
                     _emit, eval_job, eval_runner, read_lm_texts, read_title_pairs, run_records)

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
    from textgen.runner import RunError

    runner = eval_runner(device, allow_pickle)
    try:
        info = runner.resolve("continue", model)
        target = runner.device()
    except RunError as exc:
        fail(str(exc))
    from textgen.evaluation.lm import lm_cost, masked_lm_score
    from textgen.models.backbone import BertBackbone
    from textgen.tokenizer import ChineseTokenizer

    try:
        backbone = BertBackbone.load(info.path, allow_pickle=allow_pickle).to(target)
        tokenizer = ChineseTokenizer.from_dir(info.path)
    except (OSError, ValueError, KeyError, PermissionError) as exc:
        fail(f"cannot load {info.name!r} from {info.path} as a BERT model with a vocab.txt: {exc}")
    if max_len is None:
        trained = info.dir.max_context_tokens
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
