"""Shared fixtures for the command-line tests: tiny random models saved as real model directories,
and an isolated user environment (config, history, HF cache) so no test reads the developer's.

No test needs a trained model: the outputs of a random model are gibberish, so tests check shapes,
counts, ids, warnings and exit codes, with fixed seeds where sampling is involved.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

# Two shared CPU cores: one torch thread per process (set before anything imports torch).
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Our own sentences (not from any data set): enough characters and words for a small vocabulary.
SENTENCES = [
    "今天上午，市图书馆新馆正式向读者开放，馆内藏书超过一百万册。",
    "研究人员提出了一种新的中文文本生成方法，在多个数据集上取得了较好的结果。",
    "春天到了，公园里的花都开了，很多市民带着孩子去散步。",
    "这家工厂去年的产量比前年增长了百分之二十。",
    "法院经审理认为，被告的行为构成违约，应当承担赔偿责任。",
    "我们在山顶看到了美丽的日出，大家都很高兴。",
    "新的地铁线路明年通车，将方便城市东部居民出行。",
    "学生们在实验室里认真地做化学实验。",
]


def save_tiny_model(
    path: Path,
    *,
    tasks: list[str] | None = None,
    decoding: dict | None = None,
    max_positions: int = 128,
    seed: int = 0,
    name: str = "tiny",
) -> Path:
    """A random 2-layer BertBackbone plus a word-mode vocabulary of SENTENCES, saved with a
    textgen.json, exactly the layout the CLI loads."""
    import torch

    from textgen.models.backbone import BertBackbone, BertConfig
    from textgen.tokenizer import ChineseTokenizer, build_vocab

    tokenizer = ChineseTokenizer(build_vocab(SENTENCES, min_char_count=1, min_word_count=1), mode="word")
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
    )
    BertBackbone(config).save(path)
    tokenizer.save(path)
    meta = {"name": name, "tasks": tasks or ["title", "continue"], "attention": "unilm", "decoding": decoding or {}}
    (path / "textgen.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model serving title and continue; outputs of at least 2 tokens so none is empty."""
    return save_tiny_model(
        tmp_path_factory.mktemp("models") / "tiny",
        decoding={
            "title": {"min_new_tokens": 2, "max_new_tokens": 8},
            "continue": {"min_new_tokens": 2, "max_new_tokens": 8},
        },
    )


@pytest.fixture(autouse=True)
def user_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Every test runs as a fresh user: no config file, no history, an empty HF cache, offline."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "HF_HUB_CACHE": str(home / "hf-cache"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    for key in ("TEXTGEN_MODEL", "TEXTGEN_DEVICE", "TEXTGEN_THREADS", "TEXTGEN_CONFIG", "HF_HOME"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for running the real ``textgen`` in a subprocess (the user_env applied)."""
    env = dict(os.environ)
    env.update(extra or {})
    return env


# ---------------------------------------------------------------------- tasks and runs
def load_task(name: str, path: str | Path, *, model: str | None = None, prompts: dict | None = None, **options: Any) -> Any:
    """The task ``name`` over the model at ``path``, built as the runner builds it but without the
    user's config (``options``: task options; a bad one is the task's own ``ValueError``)."""
    from textgen.config import Settings
    from textgen.models.registry import describe
    from textgen.runner import Runner
    from textgen.tasks import TASKS

    runner = Runner(Settings(), device="cpu", prompts=prompts)
    info = describe(Path(path), name=model or Path(path).name, source="local")
    cls = TASKS[name]
    return cls(runner.model(info, cls.kind), options=options, prompts=runner.prompts())


def task_config(name: str, overrides: dict[str, Any] | None = None) -> Any:
    """The task's built-in decoding defaults with ``overrides``."""
    from textgen.decoding.config import build_config
    from textgen.tasks import TASKS

    return build_config(TASKS[name].defaults, overrides or {})


# ---------------------------------------------------------------------- the command line in-process
def run(*args: object, input: str | bytes | None = None) -> Any:
    """``textgen ARGS`` through typer's CliRunner, in-process (stdout and stderr apart)."""
    from typer.testing import CliRunner

    from textgen.cli.app import app  # here, so that tests which need no CLI do not import it

    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def jsonl(text: str) -> list[dict]:
    """The records of JSON Lines output."""
    return [json.loads(line) for line in text.splitlines()]


def fail_long_inputs(monkeypatch: pytest.MonkeyPatch, error: Exception, *, longer_than: int = 12) -> Any:
    """Make the decoder raise ``error`` for any batch holding an input of more than
    ``longer_than`` tokens (a record the model fails on), and decode the others for real.
    Returns the real ``textgen.decoding.generate``, to put back."""
    import textgen.decoding

    real = textgen.decoding.generate

    def generate(adapter, inputs, config, **kw):
        if any(len(ids) > longer_than for ids in inputs):
            raise error
        return real(adapter, inputs, config, **kw)

    monkeypatch.setattr(textgen.decoding, "generate", generate)
    return real


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """``rows`` as a JSON Lines input file."""
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def one_line_error(result: Any, code: int = 2) -> str:
    """The run ended with ``code`` and one line on stderr besides the records' warnings (a tiny
    random model's outputs are often cut at max_new_tokens), no traceback; that line."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and (result.exception is None or isinstance(result.exception, SystemExit))
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("textgen: warning: [")]
    assert len(lines) == 1, result.stderr
    return lines[0]
