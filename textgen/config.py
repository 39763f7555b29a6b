"""User defaults: environment variables and an optional TOML config file.

Precedence, strongest first: command-line flags, environment variables, the config file,
the model directory's ``textgen.json``, the task's built-in defaults. This module reads only the
two middle sources; it stays free of torch so ``--help`` stays fast.

The config file is ``$TEXTGEN_CONFIG`` if set, else ``$XDG_CONFIG_HOME/textgen/config.toml``
(``~/.config/textgen/config.toml``). Example::

    device = "cpu"          # auto | cpu | cuda
    threads = 2             # torch intra-op threads
    model = "mini-zh"       # default model for every task (embedded name, directory or hub id)
    dtype = "bf16"          # Hugging Face models: bf16 | fp16 | fp32 (default fp32 on CPU)

    [title]                 # per task: its model and any decoding option (DecodingConfig field)
    model = "~/models/my-title-model"
    num_beams = 5
    no_repeat_ngram_size = 3

    [continue]
    temperature = 0.8

    [prompts.title]         # chat models: override a task's prompt (textgen/prompts/chat.toml)
    user = "给下面的新闻起一个标题：{text}"

Environment: ``TEXTGEN_MODEL`` (beats the file's ``model`` keys), ``TEXTGEN_DEVICE``,
``TEXTGEN_THREADS``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("bf16", "fp16", "fp32")
_TOP_LEVEL_KEYS = {"device", "threads", "model", "dtype", "prompts"}


class ConfigError(ValueError):
    """The config file or an environment variable holds something unusable."""


@dataclass
class Settings:
    """Defaults the user chose outside the command line."""

    device: str = "auto"
    threads: int | None = None
    model: str | None = None
    task_models: dict[str, str] = field(default_factory=dict)
    task_decoding: dict[str, dict[str, Any]] = field(default_factory=dict)
    dtype: str | None = None  # Hugging Face models' weights: bf16 | fp16 | fp32
    prompts: dict[str, Any] = field(default_factory=dict)  # [prompts.<key>] tables (chat models)
    source: Path | None = None  # the config file read, if any

    def model_for(self, task: str) -> str | None:
        """The model named for ``task``: ``TEXTGEN_MODEL`` / top-level ``model`` only when the
        task's own table names none (environment beats the file; see ``load_settings``)."""
        return self.task_models.get(task) or self.model

    def named_models(self) -> list[str]:
        """Every model these settings name."""
        return [m for m in (self.model, *self.task_models.values()) if m]


def config_path() -> Path:
    """Where the user config file is looked for (it need not exist)."""
    explicit = os.environ.get("TEXTGEN_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "textgen" / "config.toml"


def load_settings() -> Settings:
    """Read the config file (if present) and the environment into ``Settings``.

    Raises ``ConfigError`` with a one-line message for a malformed file or value. A file named by
    ``TEXTGEN_CONFIG`` must exist; the default location may be absent.
    """
    path = config_path()
    settings = Settings()
    if path.exists() or os.environ.get("TEXTGEN_CONFIG"):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        _apply_file(settings, data, path)
        settings.source = path
    _apply_env(settings)
    return settings


def _apply_file(settings: Settings, data: dict[str, Any], path: Path) -> None:
    from textgen.tasks import TASK_NAMES

    for key, value in data.items():
        if key in TASK_NAMES and isinstance(value, dict):
            table = dict(value)
            model = table.pop("model", None)
            if model is not None:
                settings.task_models[key] = _string(model, f"{path}: [{key}] model")
            settings.task_decoding[key] = table
        elif key == "device":
            settings.device = _device(value, f"{path}: device")
        elif key == "threads":
            settings.threads = _threads(value, f"{path}: threads")
        elif key == "model":
            settings.model = _string(value, f"{path}: model")
        elif key == "dtype":
            settings.dtype = _choice(value, DTYPES, f"{path}: dtype")
        elif key == "prompts":
            settings.prompts = _prompts(value, f"{path}: [prompts]")
        else:
            known = sorted(_TOP_LEVEL_KEYS) + [f"[{t}]" for t in TASK_NAMES]
            raise ConfigError(f"{path}: unknown key {key!r} (known: {', '.join(known)})")


def _apply_env(settings: Settings) -> None:
    if os.environ.get("TEXTGEN_MODEL"):
        # The environment beats every model named in the file, task tables included.
        settings.model = os.environ["TEXTGEN_MODEL"]
        settings.task_models = {}
    if os.environ.get("TEXTGEN_DEVICE"):
        settings.device = _device(os.environ["TEXTGEN_DEVICE"], "TEXTGEN_DEVICE")
    if os.environ.get("TEXTGEN_THREADS"):
        settings.threads = _threads(os.environ["TEXTGEN_THREADS"], "TEXTGEN_THREADS")


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a non-empty string, not {value!r}")
    return value


def _choice(value: Any, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        raise ConfigError(f"{where} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _prompts(value: Any, where: str) -> dict[str, Any]:
    """The ``[prompts]`` tables, checked now (shape of textgen/prompts/chat.toml)."""
    from textgen.prompts import PromptError, default_prompts, merge

    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table of prompt tables ([prompts.title] ...)")
    try:
        merge(default_prompts(), value, where)
    except PromptError as exc:
        raise ConfigError(str(exc)) from None
    return value


def _device(value: Any, where: str) -> str:
    if value not in DEVICES:
        raise ConfigError(f"{where} must be one of {', '.join(DEVICES)}, not {value!r}")
    return value


def _threads(value: Any, where: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or isinstance(value, bool):
        raise ConfigError(f"{where} must be a positive integer, not {value!r}")
    return n
