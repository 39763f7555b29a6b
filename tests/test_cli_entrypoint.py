"""The installed ``textgen`` console script, run as a user runs it (subprocesses)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import subprocess_env

TEXTGEN = shutil.which("textgen", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
pytestmark = pytest.mark.skipif(
    TEXTGEN is None, reason="the textgen console script is not installed (pip install -e .)"
)


def textgen(*args: object, input: bytes | None = None, env: dict[str, str] | None = None, timeout: float = 120):
    return subprocess.run(
        [TEXTGEN, *map(str, args)], input=input, capture_output=True, env=subprocess_env(env), timeout=timeout
    )


@pytest.mark.parametrize(
    "command", [[], ["title"], ["continue"], ["repl"], ["models"], ["train"], ["eval"], ["summarize"], ["config"]]
)
def test_help_never_imports_torch_or_transformers(command: list[str]):
    result = textgen(*command, "--help", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0, result.stderr.decode()
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in result.stderr.decode().splitlines()
        if line.startswith("import time:")
    }
    assert "typer" in imported  # the import log is really there
    assert not imported & {"torch", "transformers", "prompt_toolkit"}
    assert b"Usage: textgen" in result.stdout


def test_pipe_with_invalid_utf8_warns_and_answers(tiny_model: Path):
    result = textgen("title", "-m", tiny_model, input="今天上午，新馆正式开放。".encode() + b"\xff\xfe\n")
    assert result.returncode == 0, result.stderr.decode()
    assert len(result.stdout.decode().splitlines()) == 1
    assert "not valid UTF-8" in result.stderr.decode()
    assert b"Traceback" not in result.stderr


def test_batch_with_bad_records_exit_1_and_one_output_each(tiny_model: Path, tmp_path: Path):
    batch = tmp_path / "batch.jsonl"
    batch.write_text(
        '{"id": "ok", "text": "春天到了，公园里的花都开了。"}\n{"id": "bad"\n{"id": "blank", "text": ""}\n',
        encoding="utf-8",
    )
    result = textgen("title", "-m", tiny_model, "-i", batch, "-f", "jsonl")
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [(r["id"], "error" in r) for r in records] == [("ok", False), (2, True), ("blank", True)]
    assert "2 of 3 records failed" in result.stderr.decode()


def test_unknown_model_is_one_line_exit_2(tmp_path: Path):
    result = textgen("title", "-m", tmp_path / "no-model-here", "文本")
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "no-model-here" in lines[0] and "available" in lines[0]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_stop_then_resume_writes_each_id_once(signum: int, tiny_model: Path, tmp_path: Path):
    """Every fourth record repeats the id "dup": the repeats are named dup#2, dup#3 ... the same way
    in both runs, so none is lost or written twice."""
    batch = tmp_path / "batch.jsonl"
    n = 40
    ids = [f"r{i}" if i % 4 else "dup" for i in range(n)]
    batch.write_text(
        "".join(
            json.dumps({"id": rid, "text": f"第{i}篇：新的地铁线路明年通车。"}, ensure_ascii=False) + "\n"
            for i, rid in enumerate(ids)
        ),
        encoding="utf-8",
    )
    unique = [f"r{i}" for i in range(n) if i % 4] + ["dup"] + [f"dup#{k}" for k in range(2, n // 4 + 1)]
    out = tmp_path / "out.jsonl"
    slow = ["--beam", 1, "--min-new-tokens", 100, "--max-new-tokens", 100, "--batch-size", 1]
    proc = subprocess.Popen(
        [TEXTGEN, "title", "-m", str(tiny_model), "-i", str(batch), "-f", "jsonl", "-o", str(out), *map(str, slow)],
        stderr=subprocess.PIPE,
        env=subprocess_env(),
    )
    deadline = time.monotonic() + 60
    while (not out.exists() or out.read_bytes().count(b"\n") < 2) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, stderr.decode()
    assert "--resume" in stderr.decode() and b"Traceback" not in stderr
    first = out.read_bytes()
    assert first.endswith(b"\n")
    done = [json.loads(line)["id"] for line in first.decode().splitlines()]
    assert 2 <= len(done) < n

    result = textgen("title", "-m", tiny_model, "-i", batch, "-f", "jsonl", "-o", out, "--resume", "--beam", 1)
    assert result.returncode == 0, result.stderr.decode()
    ids = [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()]
    assert ids[: len(done)] == done
    assert sorted(ids) == sorted(unique)
