"""``textgen models``: the models at hand (embedded, in the local HF cache, named in your settings)."""

from __future__ import annotations

import json
from enum import Enum
from typing import Annotated

import typer

from textgen.models.registry import list_models

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
            "--format", "-f", help="text: a table; json: an array of {name, source, path, size_bytes, tasks}."
        ),
    ] = ListFormat.text,
) -> None:
    """Embedded models, models in the local Hugging Face cache, and the model directories your
    settings ($TEXTGEN_MODEL, the config file) name, with the tasks they serve."""
    try:
        user = settings()
    except EngineError as exc:
        fail(str(exc))
    models = list_models(user.named_models())
    if format is ListFormat.json:
        typer.echo(json.dumps([m.to_json() for m in models], ensure_ascii=False, indent=2))
        return
    if not models:
        typer.echo("no models: none embedded, none in the HF cache (pass a model directory with --model)")
        return
    rows = [(m.name, m.source, f"{m.size_bytes / 1e6:.1f} MB", ",".join(m.tasks) or "-", str(m.path)) for m in models]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4])
