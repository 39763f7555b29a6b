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

``set_task_model`` writes a task's ``model`` key into the file (``textgen config set-model NAME
--task T``) with the care of ``textgen.models.store.set_default`` (the top-level key): the rest of
the file is kept byte for byte, the result is checked to differ only in that key, and it replaces
the file atomically.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from textgen.paths import config_path, replace_file

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

    def model_for(self, task: str) -> str | None:
        """The model named for ``task``: ``TEXTGEN_MODEL`` / top-level ``model`` only when the
        task's own table names none (environment beats the file; see ``load_settings``)."""
        return self.task_models.get(task) or self.model

    def named_models(self) -> list[str]:
        """Every model these settings name."""
        return [m for m in (self.model, *self.task_models.values()) if m]


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
    from textgen.prompts import PromptError, merge
    from textgen.tasks import PROMPTS

    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table of prompt tables ([prompts.title] ...)")
    try:
        merge(PROMPTS, value, where)
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


# ---------------------------------------------------------------------- writing a task's model
_TABLE_HEADER = re.compile(r"\s*\[")
_MODEL_KEY = re.compile(r"""\s*(model|"model"|'model')\s*=""")


def set_task_model(task: str, name: str, path: str | Path | None = None) -> Path:
    """Write ``model = "<name>"`` into the ``[task]`` table of the user config file (``path``,
    else ``textgen.paths.config_path()``), creating the table or the file if needed and keeping
    the rest of the file as it is. Returns the file's path. ``ConfigError`` for a file that is not
    valid TOML, one where the change would alter anything else (then the line to add by hand is
    named), or one that cannot be written."""
    path = Path(path).expanduser() if path is not None else config_path()
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        before = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot set the {task} model in {path}: {exc}") from None
    line = f"model = {json.dumps(name, ensure_ascii=False).replace(chr(0x7F), chr(92) + 'u007f')}"
    header = re.compile(rf"""\s*\[\s*({re.escape(task)}|"{re.escape(task)}"|'{re.escape(task)}')\s*\]\s*(#.*)?$""")
    lines = text.splitlines(keepends=True)
    start = next((i for i, text_line in enumerate(lines) if header.match(text_line.rstrip("\r\n"))), None)
    if start is None:
        gap = "" if not text else ("\n" if text.endswith("\n") else "\n\n")
        new = f"{text}{gap}[{task}]\n{line}\n"
    else:
        end = next((i for i in range(start + 1, len(lines)) if _TABLE_HEADER.match(lines[i])), len(lines))
        hit = next((i for i in range(start + 1, end) if _MODEL_KEY.match(lines[i])), None)
        if hit is not None:
            lines[hit] = line + (lines[hit][len(lines[hit].rstrip("\r\n")) :] or "\n")
        else:
            if not lines[start].endswith("\n"):
                lines[start] += "\n"
            lines.insert(start + 1, line + "\n")
        new = "".join(lines)
    try:
        after = tomllib.loads(new)
    except tomllib.TOMLDecodeError:
        after = None
    table = before.get(task, {})
    if not isinstance(table, dict) or after != {**before, task: {**table, "model": name}}:
        raise ConfigError(f"cannot set the {task} model in {path} safely; add the line {line} under [{task}] by hand")
    try:
        replace_file(path, new)
    except OSError as exc:
        raise ConfigError(f"cannot write the config file {path}: {exc.strerror or exc}") from None
    return path
