"""`textgen eval`: score models on data (filled in by the evaluation work)."""

import typer

app = typer.Typer(help="Evaluate models: language-model bits per character, title ROUGE/BLEU.", no_args_is_help=True)
