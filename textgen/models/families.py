"""Model families: which loader serves a model path, and which tasks it can serve.

A family is one entry of ``FAMILIES``: a torch-free test of a path (``matches``), the tasks a
model of the family serves (``tasks``: names, or ``EVERY_TASK``), and a loader that builds the
adapter (``load``, which imports torch, transformers or llama.cpp only when called). The first
entry whose test passes wins, so more specific families come first. Adding a model family is one
entry here and its adapter module; nothing else branches on the kind of model.

``any_kind``: one loaded model serves both seq2seq-style and causal tasks (a chat model renders
a task's prompt or reads raw text), so the runner loads it once for every task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textgen.models.model_dir import ModelDir, read_json

# A model that serves whatever task asks (a chat model renders each task's own prompt).
EVERY_TASK = ("*",)


@dataclass(frozen=True)
class LoadOptions:
    """How to load weights: where, in which precision, and whether pickles may be read."""

    device: str = "cpu"
    dtype: str | None = None  # bf16 | fp16 | fp32 for Hugging Face weights
    allow_pickle: bool = False
    threads: int | None = None  # llama.cpp threads (torch's are set by the runner)


@dataclass(frozen=True)
class Family:
    name: str
    matches: Callable[[Path], bool]
    tasks: Callable[[Path], tuple[str, ...]]
    load: Callable[[ModelDir, str, LoadOptions], Any]  # (model dir, adapter kind, options) -> Adapter
    any_kind: bool = False


def _config(path: Path) -> dict[str, Any]:
    return read_json(path / "config.json") if path.is_dir() else {}


def _is_backbone(path: Path) -> bool:
    return _config(path).get("model_type") == "bert"


def _is_causal(path: Path) -> bool:
    config = _config(path)
    return not config.get("is_encoder_decoder") and any(
        a.endswith(("CausalLM", "LMHeadModel")) for a in config.get("architectures") or []
    )


def has_chat_template(path: Path) -> bool:
    """Whether the directory's tokenizer has a chat template: in ``tokenizer_config.json`` (older
    saves), or as ``chat_template.jinja`` / ``chat_template.json`` (transformers 4.43+ saves)."""
    if (path / "chat_template.jinja").is_file():
        return True
    return any(read_json(path / name).get("chat_template") for name in ("chat_template.json", "tokenizer_config.json"))


def is_gguf(path: Path) -> bool:
    """A GGUF file: named ``*.gguf``, or starting with the GGUF magic (ollama's blobs are
    named by their hash)."""
    if not path.is_file():
        return False
    if path.suffix.lower() == ".gguf":
        return True
    try:
        with path.open("rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


def _load_backbone(model: ModelDir, kind: str, options: LoadOptions) -> Any:
    from textgen.models.adapters import load_backbone

    return load_backbone(model, kind, options)


def _load_hf_chat(model: ModelDir, kind: str, options: LoadOptions) -> Any:
    from textgen.models.chat import load_chat

    return load_chat(model, options)


def _load_hf(model: ModelDir, kind: str, options: LoadOptions) -> Any:
    from textgen.models.adapters import load_hf

    return load_hf(model, kind, options)


def _load_gguf(model: ModelDir, kind: str, options: LoadOptions) -> Any:
    from textgen.models.gguf_chat import load_gguf_model

    return load_gguf_model(model, options)


FAMILIES: list[Family] = [
    Family("gguf", is_gguf, lambda p: EVERY_TASK, _load_gguf, any_kind=True),
    Family("textgen-bert", _is_backbone, lambda p: ModelDir.read(p).tasks or (), _load_backbone),
    Family("hf-chat", lambda p: _is_causal(p) and has_chat_template(p), lambda p: EVERY_TASK, _load_hf_chat, any_kind=True),
    Family("hf-seq2seq", lambda p: bool(_config(p).get("is_encoder_decoder")), lambda p: ("title",), _load_hf),
    Family("hf-causal", _is_causal, lambda p: ("continue", "search"), _load_hf),
]
# Directories whose config.json names no family above still load as Hugging Face models of the
# kind the task asks for (transformers decides whether it can read them).
FALLBACK = Family("hf", lambda p: True, lambda p: (), _load_hf)


def load_adapter(path: str | Path, kind: str, options: LoadOptions | None = None) -> Any:
    """The adapter for a model directory or ``.gguf`` file, by its family. ``kind`` is what the
    task drives (``seq2seq`` or ``causal``); families with ``any_kind`` serve both. Unusable paths
    raise FileNotFoundError/ValueError/PermissionError with a one-line message."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"model directory not found: {path}")
    if path.is_dir() and not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} has no config.json: not a model directory")
    return family_of(path).load(ModelDir.read(path), kind, options or LoadOptions())


def family_of(path: Path) -> Family:
    """The family that serves ``path`` (a model directory or a ``.gguf`` file)."""
    return next((f for f in FAMILIES if f.matches(path)), FALLBACK)
