"""Resolve a ``--model`` argument to a model directory, and list the models at hand.

A model is named in one of three ways, tried in this order:

1. the name of an embedded model, a directory under ``textgen/models/embedded/<name>/`` (a folder
   of that name in the current directory does not shadow it: ``./<name>`` names the folder, and a
   note says so);
2. a local directory (a path that exists, or anything that looks like a path);
3. a Hugging Face hub id (``org/name``) already in the local HF cache.

Nothing is ever downloaded: offline use is the normal case (air-gapped deployments), so a hub id
that is not cached is an error that says how to fetch it explicitly. ``HF_HUB_OFFLINE`` changes only
that advice. No torch here: resolving and listing stay instant.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from textgen.prompts import CHAT_TASKS

# The model each task uses when neither --model, TEXTGEN_MODEL nor the config file names one.
# This is the one place to change when a new embedded model ships.
DEFAULT_MODELS: dict[str, str] = {
    "title": "mini-zh-title", "summarize": "mini-zh", "qa": "mini-zh", "continue": "mini-zh-lm", "search": "mini-zh-lm",
}

EMBEDDED_DIR = Path(__file__).resolve().parent / "embedded"
SOURCES = ("embedded", "local", "hf-cache")


class ModelNotFound(LookupError):
    """``--model`` names nothing usable; the message is one line naming what is available."""


@dataclass
class ModelInfo:
    """A resolved model directory and what its ``textgen.json`` (or ``config.json``) says."""

    name: str
    source: str  # one of SOURCES
    path: Path
    size_bytes: int
    tasks: list[str]
    decoding: dict[str, dict[str, Any]] = field(default_factory=dict)  # per task, DecodingConfig fields
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per task, preset task options
    note: str = ""  # what the user should know about the choice (a same-named folder not used)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        del d["decoding"], d["options"], d["note"]
        return d


def hf_cache_dir() -> Path:
    """The HF hub cache, read at call time: ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else
    huggingface_hub's default (which it computes once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def resolve(spec: str) -> ModelInfo:
    """The model ``spec`` names (see the module docstring), or ``ModelNotFound``."""
    path = Path(spec).expanduser()
    embedded = EMBEDDED_DIR / spec
    if "/" not in spec and not _looks_like_path(spec) and embedded.is_dir():
        info = describe(embedded, name=spec, source="embedded")
        if path.exists():
            info.note = f"{spec!r} is the embedded model; the folder {spec} here is not used (name it ./{spec})"
        return info
    if path.exists() or _looks_like_path(spec):
        return _local(spec, path)
    snapshot = _cached_snapshot(spec)
    if snapshot is not None:
        return describe(snapshot, name=spec, source="hf-cache", size_bytes=_repo_size(snapshot))
    raise ModelNotFound(f"model {spec!r} not found: {_not_found_hint(spec)}; {_available_line()}")


def list_models(configured: Iterable[str] = (), dirs: Iterable[str | Path] = ()) -> list[ModelInfo]:
    """Embedded models, models in the HF cache (those with a ``config.json``), then the local
    directories among ``configured`` (the models the user's settings name) and in ``dirs`` (each a
    model directory or a folder of them), each once."""
    found = [describe(d, name=d.name, source="embedded") for d in _embedded_dirs()] + _cached_models()
    specs = list(configured)
    for folder in dirs:
        specs += _model_dirs(Path(folder).expanduser())
    for spec in specs:
        try:
            info = resolve(spec)
        except ModelNotFound:
            continue
        if info.source == "local" and all(info.path != m.path for m in found):
            found.append(info)
    return found


def describe(path: Path, *, name: str, source: str, size_bytes: int | None = None) -> ModelInfo:
    """Read a model directory's ``textgen.json`` (tasks, decoding defaults), falling back to
    ``config.json`` to infer the tasks of a plain HF model."""
    meta = _read_json(path / "textgen.json")
    if not isinstance(meta.get("tasks"), list):
        meta["tasks"] = _infer_tasks(_read_json(path / "config.json"), path)
    return ModelInfo(
        name=meta.get("name") if source == "embedded" and isinstance(meta.get("name"), str) else name,
        source=source,
        path=path,
        size_bytes=_dir_size(path) if size_bytes is None else size_bytes,
        tasks=[str(t) for t in meta["tasks"]],
        decoding=per_task(meta, "decoding"),
        options=per_task(meta, "options"),
    )


def per_task(meta: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    """A per-task section of textgen.json (``decoding``, ``options``): task -> settings, entries
    that are not objects dropped."""
    section = meta.get(key)
    return {k: v for k, v in section.items() if isinstance(v, dict)} if isinstance(section, dict) else {}


# ---------------------------------------------------------------------- local and embedded
def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "~", os.sep)) or spec.count("/") > 1 or (os.altsep or "\0") in spec


def _local(spec: str, path: Path) -> ModelInfo:
    if path.is_file():
        raise ModelNotFound(f"model {spec!r} is a file; a model is a directory (config.json, weights, vocabulary)")
    if not path.is_dir():
        raise ModelNotFound(f"model {spec!r}: no such directory; {_available_line()}")
    if not (path / "config.json").is_file():
        raise ModelNotFound(f"model {spec!r}: {path} is not a model directory (it has no config.json)")
    return describe(path.resolve(), name=spec, source="local")


def _model_dirs(folder: Path) -> list[str]:
    """``folder`` if it is a model directory, else the model directories directly inside it."""
    if (folder / "config.json").is_file():
        return [str(folder)]
    inside = sorted(folder.iterdir()) if folder.is_dir() else []
    return [str(d) for d in inside if (d / "config.json").is_file()]


def _embedded_dirs() -> list[Path]:
    if not EMBEDDED_DIR.is_dir():
        return []
    return sorted(d for d in EMBEDDED_DIR.iterdir() if (d / "config.json").is_file())


# ---------------------------------------------------------------------- HF cache
def _cached_snapshot(repo_id: str) -> Path | None:
    """The snapshot directory of ``repo_id``'s ``main`` revision, if its config.json is cached."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        hit = try_to_load_from_cache(repo_id, "config.json", cache_dir=hf_cache_dir())
    except HFValidationError:
        return None
    return Path(hit).parent if isinstance(hit, str) else None


def _cached_models() -> list[ModelInfo]:
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        cache = scan_cache_dir(hf_cache_dir())
    except CacheNotFound:
        return []
    models = []
    for repo in sorted(cache.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        snapshot = _cached_snapshot(repo.repo_id)
        if snapshot is not None:
            models.append(describe(snapshot, name=repo.repo_id, source="hf-cache", size_bytes=repo.size_on_disk))
    return models


def _repo_size(snapshot: Path) -> int:
    """Bytes of the cached repo: blobs are shared by snapshots, so count the blobs folder."""
    return _dir_size(snapshot.parent.parent / "blobs")


# ---------------------------------------------------------------------- helpers
def _infer_tasks(config: dict[str, Any], path: Path) -> list[str]:
    """Tasks of a plain HF model with no textgen.json: encoder-decoders write titles, causal LMs
    with a chat template serve every task (textgen/models/chat.py), other causal LMs continue
    text and score searches (``textgen search --model``); anything else is not known to serve a task."""
    if config.get("is_encoder_decoder"):
        return ["title"]
    if any(a.endswith(("CausalLM", "LMHeadModel")) for a in config.get("architectures") or []):
        return list(CHAT_TASKS) if has_chat_template(path) else ["continue", "search"]
    return []


def has_chat_template(path: Path) -> bool:
    """Whether the directory's tokenizer has a chat template: in ``tokenizer_config.json`` (older
    saves), or as ``chat_template.jinja`` / ``chat_template.json`` (transformers 4.43+ saves)."""
    if (path / "chat_template.jinja").is_file():
        return True
    for name in ("chat_template.json", "tokenizer_config.json"):
        if _read_json(path / name).get("chat_template"):
            return True
    return False


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def _not_found_hint(spec: str) -> str:
    if "/" not in spec:
        return "not a directory, an embedded model or a cached hub id"
    where = f"not in the HF cache {hf_cache_dir()}"
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return f"{where} and HF_HUB_OFFLINE is set; copy the model directory here and pass its path"
    return f"{where} (textgen never downloads); fetch it with `hf download {spec}` or pass a directory"


def _available_line() -> str:
    names = [m.name for m in list_models()]
    return "available: " + (", ".join(names) if names else "none (see `textgen models list`)")
