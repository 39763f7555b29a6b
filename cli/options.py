"""The options every generation command shares, declared once.

Typer reads a command's options from its function signature. ``title`` and ``continue`` share some
thirty options, so instead of two copies of a long signature the options are ``inspect.Parameter``
objects built here and assembled into each command's signature by ``cli.tasks``.

Decoding flags default to ``None`` meaning "not given": only flags the user typed override the task,
model and config defaults, and each flag can set a default back to neutral (``--beam 1``,
``--no-repeat-ngram 0``, ``--repetition-penalty 1``, ``--no-sample``).
"""

from __future__ import annotations

import inspect
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

INPUT, OUTPUT, MODEL, DECODING, ENGINE = "Input", "Output", "Model", "Decoding", "Engine"


class Format(str, Enum):
    text = "text"
    jsonl = "jsonl"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Engine(str, Enum):
    local = "local"
    ray = "ray"


class Dtype(str, Enum):
    bf16 = "bf16"
    fp16 = "fp16"
    fp32 = "fp32"


# Decoding flags: python name -> (DecodingConfig field, type, flags, help).
_DECODING: dict[str, tuple[str, type, tuple[str, ...], str]] = {
    "beam": ("num_beams", int, ("--beam", "-b"), "Beam width; 1 turns beam search off."),
    "sample": ("do_sample", bool, ("--sample/--no-sample",), "Sample instead of searching."),
    "top_k": ("top_k", int, ("--top-k",), "Sample among the k likeliest tokens; 0 = no limit."),
    "top_p": (
        "top_p",
        float,
        ("--top-p",),
        "Sample from the smallest set of tokens with this much probability; 1 = off.",
    ),
    "temperature": ("temperature", float, ("--temperature", "-t"), "Sampling temperature; 1 = neutral."),
    "num": ("num_return_sequences", int, ("--num", "-n"), "Outputs per input (an n-best list)."),
    "max_new_tokens": (
        "max_new_tokens",
        int,
        ("--max-new-tokens",),
        "Most tokens to generate; a warning says when an output hits it.",
    ),
    "min_new_tokens": (
        "min_new_tokens",
        int,
        ("--min-new-tokens",),
        "Fewest tokens to generate before the end may come.",
    ),
    "length_penalty": (
        "length_penalty",
        float,
        ("--length-penalty",),
        "Beam score exponent on length; > 1 favours longer outputs.",
    ),
    "repetition_penalty": (
        "repetition_penalty",
        float,
        ("--repetition-penalty",),
        "Penalty on tokens already present; 1 = off.",
    ),
    "no_repeat_ngram": (
        "no_repeat_ngram_size",
        int,
        ("--no-repeat-ngram",),
        "Never repeat an n-gram of this size; 0 = off.",
    ),
    "seed": ("seed", int, ("--seed",), "Random seed, for repeatable sampling."),
}
# flag name -> DecodingConfig field. The REPL's :set accepts either name.
DECODING_FLAGS: dict[str, str] = {name: spec[0] for name, spec in _DECODING.items()}
# DecodingConfig field -> the flag as typed (--top-p), for messages.
FLAG_NAMES: dict[str, str] = {spec[0]: spec[2][0].split("/")[0] for spec in _DECODING.values()}


def _option(
    name: str, annotation: Any, default: Any, *flags: str, panel: str, help: str, **kw: Any
) -> inspect.Parameter:
    info = typer.Option(*flags, help=help, rich_help_panel=panel, **kw)
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[annotation, info]
    )


def input_params() -> list[inspect.Parameter]:
    text = typer.Argument(
        help="Text to process. Without it: -i, or stdin when piped; on a terminal, the REPL.", show_default=False
    )
    return [
        inspect.Parameter(
            "text", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=Annotated[str | None, text]
        ),
        _option(
            "input",
            Path | None,
            None,
            "--input",
            "-i",
            panel=INPUT,
            show_default=False,
            help="Read FILE (.txt document, .jsonl records, .tsv rows) or every --glob file in DIR.",
        ),
        _option(
            "lines",
            bool,
            False,
            "--lines",
            panel=INPUT,
            help="One record per line (stdin or .txt) instead of one document.",
        ),
        _option(
            "field",
            str | None,
            None,
            "--field",
            panel=INPUT,
            show_default=False,
            help="JSONL: the text field (default: text). TSV: column index (default: 0) or header name.",
        ),
        _option("glob", str, "*.txt", "--glob", panel=INPUT, help="Files to read from an input directory."),
        _option(
            "encoding",
            str | None,
            None,
            "--encoding",
            panel=INPUT,
            show_default=False,
            help="Encoding of the input bytes, e.g. gb18030 or big5 (default: UTF-8, else detected).",
        ),
    ]


def output_params() -> list[inspect.Parameter]:
    return [
        _option(
            "format",
            Format | None,
            None,
            "--format",
            "-f",
            panel=OUTPUT,
            show_default=False,
            help="text (the default): outputs only; jsonl: one JSON record per input record, with the "
            "version and settings it was made with.",
        ),
        _option("json", bool, False, "--json", panel=OUTPUT, help="The same as --format jsonl."),
        _option(
            "output",
            Path | None,
            None,
            "--output",
            "-o",
            panel=OUTPUT,
            show_default=False,
            help="Write to FILE instead of stdout.",
        ),
        _option(
            "output_dir",
            Path | None,
            None,
            "--output-dir",
            panel=OUTPUT,
            show_default=False,
            help="Write one output file per input file, mirroring the input directory.",
        ),
        _option(
            "resume",
            bool,
            False,
            "--resume",
            panel=OUTPUT,
            help="Skip ids already in the JSONL output and append the rest.",
        ),
        _option(
            "progress",
            bool | None,
            None,
            "--progress/--no-progress",
            panel=OUTPUT,
            show_default=False,
            help="Progress bar on stderr (default: when stderr is a terminal).",
        ),
        _option(
            "quiet",
            bool,
            False,
            "--quiet",
            "-q",
            panel=OUTPUT,
            help="No warnings, notes or progress on stderr; errors are still shown.",
        ),
        _option(
            "verbose",
            bool,
            False,
            "--verbose",
            "-v",
            panel=OUTPUT,
            help="Also print the model, device and settings in force when the run starts.",
        ),
        _option(
            "stream",
            bool | None,
            None,
            "--stream/--no-stream",
            panel=OUTPUT,
            show_default=False,
            help="Print the output as it is generated (default: for a single input on a terminal).",
        ),
    ]


def model_params() -> list[inspect.Parameter]:
    return [
        _option(
            "model",
            str | None,
            None,
            "--model",
            "-m",
            panel=MODEL,
            show_default=False,
            help="Embedded model name, model directory, or HF hub id in the local cache "
            "(default: $TEXTGEN_MODEL, the config file, the task's built-in model).",
        ),
        _option(
            "device",
            Device | None,
            None,
            "--device",
            panel=MODEL,
            show_default=False,
            help="auto, cpu or cuda (default: $TEXTGEN_DEVICE, the config file, auto).",
        ),
        _option(
            "threads",
            int | None,
            None,
            "--threads",
            panel=MODEL,
            show_default=False,
            min=1,
            help="CPU threads for torch.",
        ),
        _option(
            "allow_pickle",
            bool,
            False,
            "--allow-pickle",
            panel=MODEL,
            help="Load pickled weights (pytorch_model.bin); pickles can run code.",
        ),
        _option(
            "dtype",
            Dtype | None,
            None,
            "--dtype",
            panel=MODEL,
            show_default=False,
            help="Weights of Hugging Face models: bf16, fp16 or fp32 (default: the config file, "
            "else fp32 on CPU and the checkpoint's on CUDA).",
        ),
        _option(
            "prompt_file",
            Path | None,
            None,
            "--prompt-file",
            panel=MODEL,
            show_default=False,
            help="Chat models: a TOML file of task prompts (`textgen models prompts` prints the "
            "shipped ones to start from).",
        ),
        _option(
            "server",
            str | None,
            None,
            "--server",
            panel=MODEL,
            show_default=False,
            envvar="TEXTGEN_SERVER",
            help="Run on a `textgen serve` at this URL (http://HOST:PORT) instead of loading a model here "
            "(default: $TEXTGEN_SERVER; its token: $TEXTGEN_SERVE_TOKEN).",
        ),
    ]


def run_params() -> list[inspect.Parameter]:
    return [_option("batch_size", int, 8, "--batch-size", panel=MODEL, min=1, help="Records per decoder call.")]


def engine_params() -> list[inspect.Parameter]:
    return [
        _option(
            "engine",
            Engine,
            Engine.local,
            "--engine",
            panel=ENGINE,
            help="local: this process; ray: a Ray cluster, one model per worker "
            "(install the ray extra; docs/scale.md).",
        ),
        _option(
            "ray_address",
            str | None,
            None,
            "--ray-address",
            panel=ENGINE,
            show_default=False,
            help="--engine ray: the cluster to join: auto, HOST:PORT or ray://HOST:10001 "
            "(default: $RAY_ADDRESS, else a local Ray on this machine).",
        ),
        _option(
            "workers",
            int,
            1,
            "--workers",
            panel=ENGINE,
            min=1,
            help="--engine ray: worker actors, each holding the model and using --threads CPUs.",
        ),
    ]


def decoding_params(
    task_name: str, task_defaults: dict[str, Any], fields: tuple[str, ...] | None = None
) -> list[inspect.Parameter]:
    """Decoding flags (only those of ``fields``, the DecodingConfig fields a task reads, when
    given); a flag whose setting the task changes shows the task's value in its help (the others
    start neutral, as their help says)."""
    params = []
    for name, (field, kind, flags, text) in _DECODING.items():
        if fields is not None and field not in fields:
            continue
        if field in task_defaults:
            value = task_defaults[field]
            text += f" ({task_name} default: {str(value).lower() if isinstance(value, bool) else value})"
        params.append(_option(name, kind | None, None, *flags, panel=DECODING, show_default=False, help=text))
    return params


def decoding_overrides(values: dict[str, Any]) -> dict[str, Any]:
    """DecodingConfig overrides from the decoding flags the user gave (those not None)."""
    return {DECODING_FLAGS[k]: v for k, v in values.items() if k in DECODING_FLAGS and v is not None}
