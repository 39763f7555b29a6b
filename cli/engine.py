"""From command-line choices to a ready task, shared by the task commands and the REPL.

Each step fails with a one-line message: an unknown model (naming what is available), a model that
does not serve the task, a bad decoding value, weights that will not load. Resolution and
validation come before torch is imported, so mistakes are reported at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from textgen.config import ConfigError, Settings, load_settings
from textgen.models.registry import DEFAULT_MODELS, ModelInfo, ModelNotFound, resolve
from textgen.tasks import TASKS, Task, build_config, load_task

from .console import warn


class EngineError(Exception):
    """A user-facing problem with the model, device or decoding settings (one line)."""


def settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise EngineError(str(exc)) from None


def resolve_model(task: str, spec: str | None, user: Settings, *, how: str = "--model") -> ModelInfo:
    """The model for ``task``: ``spec`` (--model), else the user's default, else the built-in one.
    ``how`` is what the messages tell the user to change (``:model`` in the REPL)."""
    spec = spec or user.model_for(task) or DEFAULT_MODELS.get(task)
    if not spec:
        raise EngineError(f"no model for {task!r}: name one with {how}")
    try:
        info = resolve(spec)
    except ModelNotFound as exc:
        raise EngineError(str(exc)) from None
    if info.tasks and task not in info.tasks:
        raise EngineError(f"model {spec!r} serves {', '.join(info.tasks)}, not {task!r}; pick another with {how}")
    if info.note:
        warn(info.note)
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
        config = build_config(*layers)
    except (ValueError, TypeError) as exc:
        raise EngineError(f"decoding settings: {exc}") from None
    for f in fields(config):  # nan and inf pass "> 0" checks, then fail every record
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise EngineError(f"decoding settings: {f.name} must be a finite number, not {value}")
    return config


# Settings that act only in one strategy (DecodingConfig field -> flag, and the strategy).
_ONLY_IN = {"temperature": ("--temperature", "sample"), "top_k": ("--top-k", "sample"), "top_p": ("--top-p", "sample"),
            "length_penalty": ("--length-penalty", "beam")}


def ignored_settings(config: Any, explicit: dict[str, Any], *, flags: bool = True) -> list[str]:
    """Warnings for settings the user gave that the chosen strategy ignores (``--top-p`` with beam
    search), named as flags or, for the REPL's :set, as keys."""
    strategy = {"beam": "beam search", "sample": "sampling", "greedy": "greedy decoding"}[config.strategy]
    messages = []
    for key, (flag, needs) in _ONLY_IN.items():
        if key in explicit and config.strategy != needs:
            what = "sampling (--sample)" if needs == "sample" else "beam search (--beam N)"
            messages.append(f"{flag if flags else key} is ignored: it acts in {what}, and this run uses {strategy}")
    return messages


def fit_length(task: Task, config: Any, *, explicit: bool, how: str = "--max-new-tokens") -> Any:
    """``config`` with a ``max_new_tokens`` that leaves the model room for the input. A value the
    user set that leaves none is refused (it could only fail every record); a default that leaves
    none (a model trained on short windows) is shortened, with a warning. Options the model
    cannot serve (``Task.check_ready``) are refused here too: both run before any record."""
    try:
        task.check_ready()
    except ValueError as exc:
        raise EngineError(str(exc)) from None
    try:
        task.check_length(config)
    except ValueError as exc:
        fitted = None if explicit else task.fit_length(config)
        if fitted is None:
            raise EngineError(f"{exc}; lower {how}") from None
        warn(f"{exc}; generating at most {fitted.max_new_tokens} tokens ({how} sets another length)")
        return fitted
    return config


@dataclass
class Engine:
    """The user's settings and a device; loads each (task, model) once, as the REPL switches."""

    user: Settings
    device: str
    allow_pickle: bool = False
    dtype: str | None = None  # --dtype; else the config file's
    prompt_file: Path | None = None  # --prompt-file: chat prompts over the config file's [prompts]
    _cache: dict[tuple[str, str], Task] = field(default_factory=dict)

    def prompts(self) -> dict[str, Any]:
        """The chat prompts in force: shipped, the config file's ``[prompts]``, ``--prompt-file``."""
        from textgen.prompts import PromptError, load_prompts, read_prompt_file

        try:
            layers = [self.user.prompts] + ([read_prompt_file(self.prompt_file)] if self.prompt_file else [])
            return load_prompts(*layers)
        except PromptError as exc:
            raise EngineError(str(exc)) from None

    def config(self, name: str, info: ModelInfo, overrides: dict[str, Any]) -> Any:
        """``decoding_config`` with this engine's user settings."""
        return decoding_config(name, info, self.user, overrides)

    def task(self, name: str, info: ModelInfo) -> Task:
        """The task over ``info``'s model; loaded once per (task, model) and reused."""
        key = (name, str(info.path))
        if key not in self._cache:
            prompts = self.prompts()
            try:
                self._cache[key] = load_task(
                    name, info.path, model=info.name, device=self.device, allow_pickle=self.allow_pickle,
                    dtype=self.dtype or self.user.dtype, prompts=prompts,
                )
            except Exception as exc:  # noqa: BLE001 -- any load failure is reported in one line
                raise EngineError(f"cannot load model {info.name!r} from {info.path}: {exc}") from None
        return self._cache[key]


def check_task(name: str) -> None:
    if name not in TASKS:
        raise EngineError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}")
