"""``textgen models``: the models at hand (embedded, in the local HF cache, named in your settings,
in folders you name), and the prompts chat models are given."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from textgen.models.registry import has_chat_template, list_models

from .console import fail
from .engine import EngineError, settings

app = typer.Typer(help="List the models textgen can use without downloading anything.", no_args_is_help=True)


class ListFormat(str, Enum):
    text = "text"
    json = "json"


@app.command("list")
def list_command(
    format: Annotated[
        ListFormat,
        typer.Option(
            "--format",
            "-f",
            help="text: a table; json: an array of {name, source, path, size_bytes, tasks, chat}.",
        ),
    ] = ListFormat.text,
    dirs: Annotated[
        list[Path] | None,
        typer.Option(
            "--dir", help="Also list this model directory, or the model directories inside this folder (repeatable)."
        ),
    ] = None,
) -> None:
    """Embedded models, models in the local Hugging Face cache, and the model directories your
    settings ($TEXTGEN_MODEL, the config file) or --dir name, with the tasks they serve. A
    decoder-only model whose tokenizer has a chat template (Qwen, Llama ...) is a chat model and
    serves every task.

    Example: textgen models list --dir ~/models"""
    try:
        user = settings()
    except EngineError as exc:
        fail(str(exc))
    models = list_models(user.named_models(), dirs or ())
    chat = [has_chat_template(m.path) for m in models]
    if format is ListFormat.json:
        rows = [{**m.to_json(), "chat": c} for m, c in zip(models, chat)]
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not models:
        typer.echo("no models: none embedded, none in the HF cache (pass a model directory with --model)")
        return
    rows = [
        (m.name, m.source + (" chat" if c else ""), f"{m.size_bytes / 1e6:.1f} MB", ",".join(m.tasks) or "-", str(m.path))
        for m, c in zip(models, chat)
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4])


@app.command("prompts")
def prompts_command(
    prompt_file: Annotated[
        Path | None, typer.Option("--prompt-file", help="Show these prompts over the shipped ones and the config file's.")
    ] = None,
) -> None:
    """Print the prompts chat models get for each task (TOML): the shipped ones, with the config
    file's [prompts] tables and --prompt-file over them. Save the output, edit it, and pass it back
    with --prompt-file.

    Example: textgen models prompts > prompts.toml"""
    from textgen.prompts import PromptError, load_prompts, read_prompt_file, to_toml

    try:
        user = settings()
        layers = [user.prompts] + ([read_prompt_file(prompt_file)] if prompt_file else [])
        typer.echo(to_toml(load_prompts(*layers)), nl=False)
    except (EngineError, PromptError) as exc:
        fail(str(exc))
