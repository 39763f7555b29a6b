"""`textgen train`: pretrain a backbone on raw text, or fine-tune one on source/target pairs.

Both run unchanged under ``torchrun --nproc_per_node N -m textgen.cli.app train ...`` (DDP; each
rank reads its own shard, rank 0 writes). torch is imported inside the commands only.
"""

from __future__ import annotations

import math
from pathlib import Path

import typer

from textgen.cli.console import fail, warn

app = typer.Typer(
    help="Train or fine-tune models on your own data (checkpoints in --out, resumable).",
    no_args_is_help=True,
)

_STEPS = typer.Option(1000, "--steps", min=1, help="Optimizer steps in total.")
_LR = typer.Option(5e-4, "--lr", help="Peak learning rate (after warm-up).")
_WARMUP = typer.Option(100, "--warmup", min=0, help="Linear warm-up steps.")
_SCHEDULE = typer.Option("cosine", "--schedule", help="Decay after warm-up: cosine, linear or constant.")
_ACCUM = typer.Option(1, "--accumulate", min=1, help="Gradient accumulation steps per optimizer step.")
_EMA = typer.Option(0.0, "--ema", help="EMA decay of the weights (0 = off, e.g. 0.999); saved to OUT/ema.")
_SPARSE = typer.Option(0, "--sparse-k", min=0, help="Sparse softmax over the top k logits (0 = full softmax).")
_PRECISION = typer.Option("auto", "--precision", help="auto, fp32, bf16 or fp16 (autocast on CUDA only).")
_EVAL = typer.Option(200, "--eval-every", min=0, help="Dev evaluation every N steps (keeps OUT/best).")
_SAVE = typer.Option(200, "--save-every", min=1, help="Checkpoint OUT/last every N steps.")
_RESUME = typer.Option(True, "--resume/--no-resume", help="Continue from OUT/last when it exists.")
_PLOT = typer.Option(False, "--plot", help="Write OUT/loss.png (needs matplotlib).")
_SEED = typer.Option(0, "--seed", help="Random seed (data order, initialisation, masking).")
_BATCH = typer.Option(16, "--batch-size", min=1, help="Sequences per step and process.")
_PROGRESS = typer.Option(True, "--progress/--no-progress", help="Progress display on stderr.")


def _config(out: Path, **kw):
    from textgen.training.trainer import TrainConfig

    if kw["warmup"] > kw["steps"]:
        warn(f"--warmup {kw['warmup']} is longer than --steps {kw['steps']}: the learning rate never reaches --lr "
             f"(it stops at {kw['steps'] / kw['warmup']:.0%} of it)")
    try:
        return TrainConfig(out_dir=str(out), **kw)
    except ValueError as e:
        fail(str(e))


def _report(summary: dict, model: Path) -> None:
    """The last line of a training run; a finished run resumed says it had nothing to do."""
    loss = f"loss {summary['last_loss']:.4f}" if not math.isnan(summary["last_loss"]) else "no loss logged"
    if summary.get("steps_run") == 0:
        typer.echo(f"nothing to train: the run is already at step {summary['step']} (raise --steps to train "
                   f"further); {loss}; model in {model}")
    else:
        typer.echo(f"trained to step {summary['step']}: {loss}; model in {model}")


def _run(fn, *args, **kw) -> dict:
    """Run a recipe, turning data/model mistakes into one-line errors (exit 2)."""
    try:
        return fn(*args, **kw)
    except (ValueError, FileNotFoundError, PermissionError, UnicodeDecodeError) as e:
        fail(str(e))


@app.command()
def pretrain(
    data: Path = typer.Option(..., "--data", exists=True, dir_okay=False, help="Raw text, one document a line."),
    out: Path = typer.Option(..., "--out", help="Run directory: OUT/last, OUT/best, OUT/log.jsonl."),
    base: Path = typer.Option(None, "--base", exists=True, file_okay=False, help="Continue from a model directory (textgen or HF BERT with vocab.txt)."),
    dev: Path = typer.Option(None, "--dev", exists=True, dir_okay=False, help="Held-out text for dev losses."),
    hidden: int = typer.Option(256, "--hidden", min=32, help="Width of a new backbone (ignored with --base)."),
    layers: int = typer.Option(4, "--layers", min=1, help="Layers of a new backbone (ignored with --base)."),
    vocab_chars: int = typer.Option(8000, "--vocab-chars", help="Most frequent characters kept in a new vocabulary."),
    vocab_words: int = typer.Option(8000, "--vocab-words", help="Top jieba words added to a new vocabulary (0 = characters only)."),
    window: int = typer.Option(128, "--window", min=8, help="Tokens per training window."),
    batch_size: int = _BATCH, steps: int = _STEPS, lr: float = _LR, warmup: int = _WARMUP, schedule: str = _SCHEDULE,
    accumulate: int = _ACCUM, ema: float = _EMA, sparse_k: int = _SPARSE, precision: str = _PRECISION,
    eval_every: int = _EVAL, save_every: int = _SAVE, resume: bool = _RESUME, plot: bool = _PLOT, seed: int = _SEED,
    progress: bool = _PROGRESS,
) -> None:
    """Pretrain with masked LM + causal LM + UniLM seq2seq on text spans (one model, three masks).

    Example: textgen train pretrain --data corpus.txt --out runs/lm --steps 2000
    """
    from textgen.training.recipes import pretrain as run_pretrain
    from textgen.training.recipes import read_texts

    cfg = _config(out, steps=steps, lr=lr, warmup=warmup, schedule=schedule, accumulate=accumulate, ema=ema,
                  sparse_k=sparse_k, precision=precision, eval_every=eval_every if dev else 0, save_every=save_every,
                  resume=resume, plot=plot, seed=seed, progress=progress)
    summary = _run(
        run_pretrain, read_texts(data), cfg, base=base, dev_texts=read_texts(dev) if dev else (), hidden=hidden,
        layers=layers, max_chars=vocab_chars, num_words=vocab_words, window=window, batch_size=batch_size,
        tokenizer_mode="word" if vocab_words > 0 else "char",
    )
    _report(summary, out / "last")


@app.command()
def seq2seq(
    data: Path = typer.Option(..., "--data", exists=True, dir_okay=False, help="Pairs: .jsonl (fields --source/--target) or .tsv (column indices)."),
    base: Path = typer.Option(..., "--base", exists=True, file_okay=False, help="Model directory to start from: textgen's or a HF BERT checkpoint with vocab.txt."),
    out: Path = typer.Option(..., "--out", help="Run directory: OUT/last, OUT/best (by dev loss), OUT/log.jsonl."),
    dev: Path = typer.Option(None, "--dev", exists=True, dir_okay=False, help="Held-out pairs for the dev loss."),
    source: str = typer.Option("text", "--source", help="Source field (.jsonl) or column index (.tsv, default 1)."),
    target: str = typer.Option("title", "--target", help="Target field (.jsonl) or column index (.tsv, default 0)."),
    task: str = typer.Option("title", "--task", help="Task the fine-tuned model serves (recorded in textgen.json)."),
    max_source: int = typer.Option(200, "--max-source", min=8, help="Source tokens kept (the lead of the text)."),
    max_target: int = typer.Option(40, "--max-target", min=1, help="Target tokens kept."),
    noise: float = typer.Option(0.0, "--noise", min=0.0, max=0.5, help="Random input-token replacement probability against exposure bias."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Allow pickled pytorch_model.bin weights (can run code)."),
    batch_size: int = _BATCH, steps: int = _STEPS, lr: float = typer.Option(1e-4, "--lr", help="Peak learning rate."),
    warmup: int = _WARMUP, schedule: str = _SCHEDULE, accumulate: int = _ACCUM, ema: float = _EMA, sparse_k: int = _SPARSE,
    precision: str = _PRECISION, eval_every: int = _EVAL, save_every: int = _SAVE, resume: bool = _RESUME,
    plot: bool = _PLOT, seed: int = _SEED, progress: bool = _PROGRESS,
) -> None:
    """Fine-tune UniLM-style ([CLS] source [SEP] target [SEP]) into a title/summary model.

    Example: textgen train seq2seq --base DIR --data pairs.jsonl --out runs/title --sparse-k 10
    Then: textgen title --model runs/title/best "..."
    """
    from textgen.training.recipes import finetune_seq2seq, read_pairs

    cfg = _config(out, steps=steps, lr=lr, warmup=warmup, schedule=schedule, accumulate=accumulate, ema=ema,
                  sparse_k=sparse_k, precision=precision, eval_every=eval_every if dev else 0, save_every=save_every,
                  resume=resume, plot=plot, seed=seed, progress=progress)
    pairs = _run(read_pairs, data, source, target)
    dev_pairs = _run(read_pairs, dev, source, target) if dev else ()
    summary = _run(
        finetune_seq2seq, pairs, base, cfg, dev_pairs=dev_pairs, max_source=max_source, max_target=max_target,
        batch_size=batch_size, noise=noise, task=task, allow_pickle=allow_pickle,
    )
    _report(summary, out / "best" if (out / "best").exists() else out / "last")
