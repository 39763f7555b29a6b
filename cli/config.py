"""``textgen config``: the settings in force and where each comes from (``show``), and the default
model of every task or of one (``set-model``), written into the config file safely.

Precedence, strongest first (``textgen.config``): flags, environment variables (``TEXTGEN_MODEL``,
``TEXTGEN_DEVICE``, ``TEXTGEN_THREADS``), the config file, the model's textgen.json, the task's
built-in defaults. Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer

from textgen.config import ConfigError, Settings, load_settings, set_task_model
from textgen.models.registry import ModelNotFound, resolve
from textgen.paths import config_path
from textgen.tasks import DEFAULT_MODELS, TASKS

from .console import fail, warn

app = typer.Typer(
    help="The settings in force and where each comes from (show); the default model of every task or of one "
    "(set-model), written into the config file.",
    no_args_is_help=True,
)


def _settings() -> tuple[Settings, dict[str, Any]]:
    """The settings in force, and the config file's own content (to say what comes from it)."""
    try:
        settings = load_settings()
        path = config_path()
        data = tomllib.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (ConfigError, OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        fail(str(exc))
    return settings, data


def load_settings_quietly() -> Settings:
    """The settings, or the defaults when they cannot be read (for a remark, never an error)."""
    try:
        return load_settings()
    except ConfigError:
        return Settings()


def _source(env: str | None, key: str, data: dict[str, Any]) -> str:
    if env and os.environ.get(env):
        return env
    return "config file" if key in data else "default"


def _model_source(task: str, data: dict[str, Any]) -> str:
    if os.environ.get("TEXTGEN_MODEL"):
        return "TEXTGEN_MODEL"
    table = data.get(task)
    if isinstance(table, dict) and "model" in table:
        return f"[{task}] model in the config file"
    if "model" in data:
        return "model in the config file"
    return "built-in default"


def collect() -> dict[str, Any]:
    """Every setting in force: its value and where it comes from (``show``'s JSON form)."""
    settings, data = _settings()
    path = config_path()
    shown: dict[str, Any] = {
        "config_file": {"path": str(path), "exists": path.is_file(),
                        "from": "TEXTGEN_CONFIG" if os.environ.get("TEXTGEN_CONFIG") else "default location"},
        "device": {"value": settings.device, "from": _source("TEXTGEN_DEVICE", "device", data)},
        "threads": {"value": settings.threads, "from": _source("TEXTGEN_THREADS", "threads", data)},
        "dtype": {"value": settings.dtype, "from": _source(None, "dtype", data)},
        "models": {},
    }
    for task in TASKS:
        spec = settings.model_for(task) or DEFAULT_MODELS[task]
        entry: dict[str, Any] = {"value": spec, "from": _model_source(task, data)}
        try:
            info = resolve(spec)
            entry["path"], entry["source"] = str(info.path), info.source
            if not info.serves(task):
                entry["problem"] = f"serves {', '.join(info.tasks)}, not {task}"
        except ModelNotFound as exc:
            entry["problem"] = str(exc)
        if settings.task_decoding.get(task):
            entry["decoding"] = settings.task_decoding[task]
        shown["models"][task] = entry
    return shown


@app.command("show")
def show_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the settings as one JSON object.")] = False,
) -> None:
    """The settings in force: the config file, device, threads, dtype, and the default model of
    each task (with the decoding settings the config file gives it), each with where it comes from.

    Example: textgen config show"""
    shown = collect()
    if as_json:
        typer.echo(json.dumps(shown, ensure_ascii=False, indent=2))
        return
    f = shown["config_file"]
    typer.echo(f"config file  {f['path']} ({'exists' if f['exists'] else 'not found'}; {f['from']})")
    rows = [
        ("device", shown["device"]["value"] + (" (cuda when available, else cpu)" if shown["device"]["value"] == "auto" else ""),
         shown["device"]["from"]),
        ("threads", str(shown["threads"]["value"] or "torch's default"), shown["threads"]["from"]),
        ("dtype", shown["dtype"]["value"] or "fp32 on CPU, the checkpoint's on CUDA", shown["dtype"]["from"]),
    ]
    for task, entry in shown["models"].items():
        where = entry["from"] + (f"; {entry['source']}: {entry['path']}" if "path" in entry else "")
        extra = "".join(
            [f"; decoding {' '.join(f'{k}={v}' for k, v in entry['decoding'].items())}" if "decoding" in entry else "",
             f"; problem: {entry['problem']}" if "problem" in entry else ""]
        )
        rows.append((task, entry["value"], where + extra))
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    typer.echo("\n".join(f"{k.ljust(width)}  {v.ljust(value_width)}  ({w})" for k, v, w in rows))


@app.command("set-model")
def set_model_command(
    name: Annotated[str, typer.Argument(help="Embedded name, model directory or cached hub id.", show_default=False)],
    task: Annotated[
        str | None,
        typer.Option("--task", help=f"Only for this task ({', '.join(TASKS)}): writes model under [TASK].", show_default=False),
    ] = None,
) -> None:
    """Make NAME the default model of every task (model = "NAME" at the top of the config file)
    or of one task (--task: model = "NAME" under [TASK]). The rest of the file is kept as it is;
    a file the change cannot be made to safely is left alone.

    Example: textgen config set-model mini-zh-title --task title"""
    if task is not None and task not in TASKS:
        fail(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    try:
        info = resolve(name)
    except ModelNotFound as exc:
        fail(str(exc))
    if task is not None and not info.serves(task):
        fail(f"model {name!r} serves {', '.join(info.tasks)}, not {task!r}")
    value = name
    if info.source == "local" and not Path(name).expanduser().is_absolute():
        value = str(Path(name).expanduser().absolute())  # the file is read from any directory
    if task is None:
        from textgen.models.store import StoreError, set_default

        try:
            path = set_default(value)
        except StoreError as exc:
            fail(str(exc), 1)
        typer.echo(f'default model of every task: {value} (model = "{value}" in {path})')
        own = [t for t in TASKS if load_settings_quietly().task_models.get(t)]
        if own:
            typer.echo(f"{', '.join(own)} keep{'s' if len(own) == 1 else ''} the model of their own table ([TASK] model)")
        refused = [t for t in TASKS if not info.serves(t) and t not in own]
        if refused:
            warn(f"{name} serves {', '.join(info.tasks)}: {', '.join(refused)} will refuse it; "
                 "give them a model of their own with --task")
    else:
        try:
            path = set_task_model(task, value)
        except ConfigError as exc:
            fail(str(exc), 1)
        typer.echo(f"default model of {task}: {value} ([{task}] model in {path})")
    if os.environ.get("TEXTGEN_MODEL"):
        warn(f"TEXTGEN_MODEL={os.environ['TEXTGEN_MODEL']} is set and beats the config file's models")
