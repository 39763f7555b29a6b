"""A model directory and what its ``textgen.json`` says, read once.

A model directory is Hugging Face compatible (``config.json``, weights, tokenizer files) plus an
optional ``textgen.json`` (docs/design.md): its name, the tasks it serves, per-task decoding
defaults and task options, the source prefixes a multitask model was trained with, and the token
windows it was trained on. Every reader (the registry, the adapters, the tasks, the summarize and
title pipelines) gets this one parsed object instead of reading the file again. A GGUF file is a
model too: its directory is the file's folder and it has no ``textgen.json``.

No torch here: the command line reads model directories before anything heavy is imported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

META_FILE = "textgen.json"


@dataclass(frozen=True)
class ModelDir:
    """The parsed ``textgen.json`` of a model directory (empty values when it has none)."""

    path: Path
    name: str
    tasks: tuple[str, ...] | None = None  # None: not stated (the registry infers them)
    decoding: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> DecodingConfig fields
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> preset task options
    source_prefix: dict[str, str] = field(default_factory=dict)  # task -> what the model reads first
    max_source_tokens: int | None = None  # the source length seq2seq fine-tuning used
    max_context_tokens: int | None = None  # the longest sequence pretraining used
    meta: dict[str, Any] = field(default_factory=dict)  # the whole file, for fields read elsewhere

    @classmethod
    def read(cls, path: str | Path) -> ModelDir:
        """``path``'s ``textgen.json``; a missing or unreadable file counts as absent (a model
        without one is a plain Hugging Face directory). ``path`` may be a ``.gguf`` file."""
        path = Path(path)
        meta = read_json(path / META_FILE) if path.is_dir() else {}
        name = meta.get("name")
        tasks = meta.get("tasks")
        prefixes = meta.get("source_prefix")
        return cls(
            path=path,
            name=name if isinstance(name, str) and name else (path.stem if path.is_file() else path.resolve().name),
            tasks=tuple(str(t) for t in tasks) if isinstance(tasks, list) else None,
            decoding=_per_task(meta, "decoding"),
            options=_per_task(meta, "options"),
            source_prefix={k: v for k, v in prefixes.items() if isinstance(v, str)} if isinstance(prefixes, dict) else {},
            max_source_tokens=_tokens(meta.get("max_source_tokens")),
            max_context_tokens=_tokens(meta.get("max_context_tokens")),
            meta=meta,
        )

    def prefix(self, key: str) -> str:
        """The source prefix the model reads before ``key``'s input (``""`` without one)."""
        return self.source_prefix.get(key, "")


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; ``{}`` when the file is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _per_task(meta: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    section = meta.get(key)
    return {k: v for k, v in section.items() if isinstance(v, dict)} if isinstance(section, dict) else {}


def _tokens(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
