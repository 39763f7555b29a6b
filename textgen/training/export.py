"""Writing a complete textgen model directory: HF BERT weights + vocabulary + ``textgen.json``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from textgen.models.backbone import BertBackbone
from textgen.models.model_dir import META_FILE
from textgen.tokenizer import ChineseTokenizer


def save_model_dir(
    backbone: BertBackbone,
    tokenizer: ChineseTokenizer,
    path: str | os.PathLike,
    meta: dict,
    dtype: torch.dtype | None = None,
    max_shard_bytes: int | None = None,
) -> Path:
    """Save weights (optionally cast, e.g. fp16 for shipping), tokenizer files and ``textgen.json``
    (name, tasks, attention layout, decoding defaults) so the directory loads both in textgen and,
    as a plain BERT, in Hugging Face ``transformers``."""
    path = Path(path)
    backbone.save(path, dtype=dtype, max_shard_bytes=max_shard_bytes)
    tokenizer.save(path)
    (path / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path
