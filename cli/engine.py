"""From command-line choices to a ready task, shared by the task commands and the REPL.

Each step fails with a one-line message: an unknown model (naming what is available), a model that
does not serve the task, a bad decoding value, weights that will not load. Resolution and
validation come before torch is imported, so mistakes are reported at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textgen.config import ConfigError, Settings, load_settings
from textgen.models.registry import DEFAULT_MODELS, ModelInfo, ModelNotFound, resolve
from textgen.tasks import TASKS, Task, build_config, load_task


class EngineError(Exception):
    """A user-facing problem with the model, device or decoding settings (one line)."""


def settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise EngineError(str(exc)) from None


def resolve_model(task: str, spec: str | None, user: Settings) -> ModelInfo:
    """The model for ``task``: ``spec`` (--model), else the user's default, else the built-in one."""
    spec = spec or user.model_for(task) or DEFAULT_MODELS.get(task)
    if not spec:
        raise EngineError(f"no model for {task!r}: pass --model")
    try:
        info = resolve(spec)
    except ModelNotFound as exc:
        raise EngineError(str(exc)) from None
    if info.tasks and task not in info.tasks:
        raise EngineError(f"model {spec!r} serves {', '.join(info.tasks)}, not {task!r}; pick another with --model")
    return info


def pick_device(device: str, threads: int | None) -> str:
    """Set torch's thread count and turn ``auto`` into ``cuda`` or ``cpu`` (imports torch)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise EngineError("--device cuda: no CUDA device is available (use --device cpu)")
    return device


def decoding_config(name: str, info: ModelInfo, user: Settings, overrides: dict[str, Any]) -> Any:
    """The validated DecodingConfig: task defaults < model's textgen.json < user config <
    ``overrides``. Needs no loaded model, so bad values are reported before loading."""
    layers = (TASKS[name].defaults, info.decoding.get(name, {}), user.task_decoding.get(name, {}), overrides)
    try:
        return build_config(*layers)
    except (ValueError, TypeError) as exc:
        raise EngineError(f"decoding settings: {exc}") from None


@dataclass
class Engine:
    """The user's settings and a device; loads each (task, model) once, as the REPL switches."""

    user: Settings
    device: str
    allow_pickle: bool = False
    _cache: dict[tuple[str, str], Task] = field(default_factory=dict)

    def config(self, name: str, info: ModelInfo, overrides: dict[str, Any]) -> Any:
        """``decoding_config`` with this engine's user settings."""
        return decoding_config(name, info, self.user, overrides)

    def task(self, name: str, info: ModelInfo) -> Task:
        """The task over ``info``'s model; loaded once per (task, model) and reused."""
        key = (name, str(info.path))
        if key not in self._cache:
            try:
                self._cache[key] = load_task(
                    name, info.path, model=info.name, device=self.device, allow_pickle=self.allow_pickle
                )
            except Exception as exc:  # noqa: BLE001 -- any load failure is reported in one line
                raise EngineError(f"cannot load model {info.name!r} from {info.path}: {exc}") from None
        return self._cache[key]


def check_task(name: str) -> None:
    if name not in TASKS:
        raise EngineError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}")
