"""`textgen train`: pretrain and fine-tune models (filled in by the training work)."""

import typer

app = typer.Typer(help="Train or fine-tune models on your own data.", no_args_is_help=True)
