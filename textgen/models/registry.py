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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textgen.models.families import EVERY_TASK, family_of, is_gguf
from textgen.models.model_dir import ModelDir

EMBEDDED_DIR = Path(__file__).resolve().parent / "embedded"
SOURCES = ("embedded", "local", "hf-cache", "store", "ollama")


class ModelNotFound(LookupError):
    """``--model`` names nothing usable; the message is one line naming what is available."""


@dataclass
class ModelInfo:
    """A resolved model: where it is, what its ``textgen.json`` says (``dir``, parsed once), its
    family (``textgen.models.families``) and the tasks it serves (``EVERY_TASK`` for chat models)."""

    name: str
    source: str  # one of SOURCES
    path: Path
    size_bytes: int
    tasks: tuple[str, ...]
    dir: ModelDir
    family: str = ""
    note: str = ""  # what the user should know about the choice (a same-named folder not used)

    @property
    def decoding(self) -> dict[str, dict[str, Any]]:
        """Per task, the model's DecodingConfig defaults."""
        return self.dir.decoding

    @property
    def options(self) -> dict[str, dict[str, Any]]:
        """Per task, the model's preset task options."""
        return self.dir.options

    def serves(self, task: str) -> bool:
        return not self.tasks or self.tasks == EVERY_TASK or task in self.tasks

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "path": str(self.path), "size_bytes": self.size_bytes,
                "tasks": list(self.tasks), "family": self.family}


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
    from textgen.models import store

    if spec.startswith("ollama:"):
        try:
            return describe(store.resolve_ollama(spec[len("ollama:"):]), name=spec, source="ollama")
        except store.StoreError as exc:
            raise ModelNotFound(str(exc)) from None
    path = Path(spec).expanduser()
    embedded = EMBEDDED_DIR / spec
    if "/" not in spec and not _looks_like_path(spec) and embedded.is_dir():
        info = describe(embedded, name=spec, source="embedded")
        if path.exists():
            info.note = f"{spec!r} is the embedded model; the folder {spec} here is not used (name it ./{spec})"
        return info
    if path.exists() or _looks_like_path(spec):
        return _local(spec, path)
    try:
        stored = store.resolve_store(spec)
    except store.StoreError as exc:
        raise ModelNotFound(str(exc)) from None
    if stored is not None:
        return describe(stored, name=spec.removeprefix("store:"), source="store")
    if spec in store.catalogue():
        raise ModelNotFound(f"model {spec!r} is in the catalogue but not installed: install it with "
                            f"`textgen models get {spec}` (checked against its sha256)")
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
    """A model directory (or GGUF file) as its ``textgen.json`` and family describe it."""
    model_dir = ModelDir.read(path)
    family = family_of(path)
    return ModelInfo(
        name=model_dir.name if source == "embedded" else name,
        source=source,
        path=path,
        size_bytes=(_dir_size(path) if path.is_dir() else path.stat().st_size) if size_bytes is None else size_bytes,
        tasks=model_dir.tasks if model_dir.tasks is not None else family.tasks(path),
        dir=model_dir,
        family=family.name,
    )


# ---------------------------------------------------------------------- local and embedded
def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "~", os.sep)) or spec.count("/") > 1 or (os.altsep or "\0") in spec


def _local(spec: str, path: Path) -> ModelInfo:
    """A model directory, a GGUF file, or a directory holding exactly one GGUF file."""
    if path.is_file():
        if not is_gguf(path):
            raise ModelNotFound(f"model {spec!r} is a file but not a GGUF model; a model is a .gguf file or a "
                                "directory (config.json, weights, vocabulary)")
        return describe(path.resolve(), name=spec, source="local")
    if not path.is_dir():
        raise ModelNotFound(f"model {spec!r}: no such file or directory; {_available_line()}")
    if not (path / "config.json").is_file():
        ggufs = sorted(p for p in path.glob("*.gguf") if p.is_file())
        if len(ggufs) == 1:
            return describe(ggufs[0].resolve(), name=spec, source="local")
        if len(ggufs) > 1:
            raise ModelNotFound(f"model {spec!r}: {path} holds {len(ggufs)} GGUF files; name one of them")
        raise ModelNotFound(f"model {spec!r}: {path} is not a model directory (it has no config.json or .gguf file)")
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
