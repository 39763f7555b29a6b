"""The task commands in-process (typer's CliRunner): inputs, outputs, settings, errors, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import fail_long_inputs, jsonl, run

import textgen.decoding
from textgen.decoding import Hypothesis
from textgen.models.registry import EMBEDDED_DIR
from textgen.tasks import DEFAULT_MODELS

ARTICLE = "今天上午，市图书馆新馆正式向读者开放，馆内藏书超过一百万册。"


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list:
    """Record the DecodingConfig of each decoder call and still decode for real."""
    calls = []
    real = textgen.decoding.generate

    def generate(adapter, inputs, config, **kw):
        calls.append(config)
        return real(adapter, inputs, config, **kw)

    monkeypatch.setattr(textgen.decoding, "generate", generate)
    return calls


# ---------------------------------------------------------------------- inputs
def test_title_of_a_text_argument(tiny_model: Path):
    result = run("title", "-m", tiny_model, ARTICLE)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 1 and result.stdout.strip()


def test_stdin_is_one_document_or_lines(tiny_model: Path):
    whole = run("title", "-m", tiny_model, "-f", "jsonl", input="第一段。\n第二段。\n")
    assert [r["id"] for r in jsonl(whole.stdout)] == [1]
    lines = run("title", "-m", tiny_model, "-f", "jsonl", "--lines", input="第一段。\n第二段。\n")
    assert [r["id"] for r in jsonl(lines.stdout)] == [1, 2]


def test_jsonl_batch_with_bad_records_yields_one_output_each(tiny_model: Path, tmp_path: Path):
    batch = tmp_path / "batch.jsonl"
    batch.write_text(
        "\n".join(
            [
                json.dumps({"id": "a", "text": ARTICLE}, ensure_ascii=False),
                "{broken json",
                json.dumps({"id": "c", "body": "没有文本"}, ensure_ascii=False),
                json.dumps({"id": "d", "text": "  "}),
                json.dumps({"id": "e", "text": "学生们在实验室里认真地做化学实验。"}, ensure_ascii=False),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    result = run("title", "-m", tiny_model, "-i", batch, "-f", "jsonl", "--batch-size", 2)
    assert result.exit_code == 1
    records = jsonl(result.stdout)
    assert [r["id"] for r in records] == ["a", 2, "c", "d", "e"]
    assert [("error" in r) for r in records] == [False, True, True, True, False]
    assert all(r["model"] == str(tiny_model) and r["task"] == "title" for r in records)
    assert records[0]["outputs"][0]["text"] and isinstance(records[0]["outputs"][0]["score"], float)
    assert "3 of 5 records failed" in result.stderr
    assert "[2] line 2: malformed JSON" in result.stderr


def test_directory_input_mirrored_to_output_dir(tiny_model: Path, tmp_path: Path):
    src = tmp_path / "in"
    (src / "news").mkdir(parents=True)
    (src / "a.txt").write_text(ARTICLE, encoding="utf-8")
    (src / "news" / "b.txt").write_text("新的地铁线路明年通车。", encoding="utf-8")
    out = tmp_path / "out"
    result = run("title", "-m", tiny_model, "-i", src, "--output-dir", out, "-f", "jsonl")
    assert result.exit_code == 0, result.output
    assert jsonl((out / "a.jsonl").read_text(encoding="utf-8"))[0]["id"] == "a.txt"
    assert jsonl((out / "news" / "b.jsonl").read_text(encoding="utf-8"))[0]["id"] == "news/b.txt"
    assert result.stdout == ""


def test_nbest_text_output_is_numbered_and_separated(tiny_model: Path):
    result = run("title", "-m", tiny_model, "-n", 3, "--lines", input="第一篇文章。\n第二篇文章。\n")
    assert result.exit_code == 0, result.output
    blocks = result.stdout.split("\n\n")
    assert len([b for b in blocks if b]) == 2
    assert [line[:3] for line in blocks[0].splitlines()] == ["1. ", "2. ", "3. "]


def test_output_file_holds_whole_lines(tiny_model: Path, tmp_path: Path):
    out = tmp_path / "titles.jsonl"
    result = run("title", "-m", tiny_model, "--lines", "-f", "jsonl", "-o", out, input="甲文。\n乙文。\n丙文。\n")
    assert result.exit_code == 0 and result.stdout == ""
    text = out.read_text(encoding="utf-8")
    assert text.endswith("\n") and [r["id"] for r in jsonl(text)] == [1, 2, 3]


def test_resume_skips_ids_already_written(tiny_model: Path, tmp_path: Path):
    out = tmp_path / "titles.jsonl"
    out.write_text('{"id": 1, "outputs": [{"text": "旧", "score": 0}]}\n{"id": 2, "outp', encoding="utf-8")
    result = run("title", "-m", tiny_model, "--lines", "-f", "jsonl", "-o", out, "--resume", input="甲。\n乙。\n丙。\n")
    assert result.exit_code == 0, result.output
    records = jsonl(out.read_text(encoding="utf-8"))
    assert [r["id"] for r in records] == [1, 2, 3] and records[0]["outputs"][0]["text"] == "旧"


# ---------------------------------------------------------------------- warnings
def test_cut_output_is_reported(tiny_model: Path):
    result = run("title", "-m", tiny_model, "--min-new-tokens", 3, "--max-new-tokens", 3, "-f", "jsonl", ARTICLE)
    assert result.exit_code == 0
    (record,) = jsonl(result.stdout)
    assert record["warnings"] == ["output was cut at max_new_tokens=3; raise --max-new-tokens for more"]
    assert "cut at max_new_tokens=3" in result.stderr


def test_empty_output_is_never_silent(tiny_model: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(
        textgen.decoding,
        "generate",
        lambda adapter, inputs, config, **kw: [[Hypothesis([], -0.1, True)] for _ in inputs],
    )
    result = run("title", "-m", tiny_model, ARTICLE)
    assert result.exit_code == 0
    assert result.stdout == "\n" and "output is empty" in result.stderr


# ---------------------------------------------------------------------- decoding settings
def test_defaults_come_from_task_then_model(tiny_model: Path, spy: list):
    assert run("title", "-m", tiny_model, ARTICLE).exit_code == 0
    config = spy[-1]
    assert (config.num_beams, config.no_repeat_ngram_size) == (4, 3)  # the task's built-ins
    assert (config.max_new_tokens, config.min_new_tokens) == (8, 2)  # the model's textgen.json


def test_flags_set_defaults_back_to_neutral(tiny_model: Path, spy: list):
    result = run("title", "-m", tiny_model, "--beam", 1, "--no-repeat-ngram", 0, "--length-penalty", 1.0, ARTICLE)
    assert result.exit_code == 0, result.output
    assert (spy[-1].num_beams, spy[-1].no_repeat_ngram_size, spy[-1].strategy) == (1, 0, "greedy")


def test_explicit_choices_carry_their_implications(tiny_model: Path, spy: list):
    assert run("title", "-m", tiny_model, "--sample", "--top-k", 5, "--seed", 7, ARTICLE).exit_code == 0
    assert (spy[-1].strategy, spy[-1].top_k, spy[-1].seed) == ("sample", 5, 7)
    assert run("title", "-m", tiny_model, "-n", 6, ARTICLE).exit_code == 0
    assert (spy[-1].num_beams, spy[-1].num_return_sequences) == (6, 6)
    assert run("continue", "-m", tiny_model, "--beam", 2, "今天").exit_code == 0
    assert spy[-1].strategy == "beam"


def test_user_config_and_environment(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spy: list):
    config = tmp_path / "config.toml"
    config.write_text(f'device = "cpu"\n[title]\nmodel = "{tiny_model}"\nnum_beams = 2\n', encoding="utf-8")
    monkeypatch.setenv("TEXTGEN_CONFIG", str(config))
    assert run("title", ARTICLE).exit_code == 0  # the model comes from the config file
    assert spy[-1].num_beams == 2
    assert run("title", "--beam", 3, ARTICLE).exit_code == 0
    assert spy[-1].num_beams == 3
    monkeypatch.setenv("TEXTGEN_MODEL", str(tmp_path / "elsewhere"))
    result = run("title", ARTICLE)
    assert result.exit_code == 2 and "elsewhere" in result.stderr


def test_bad_config_file_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model: Path):
    config = tmp_path / "config.toml"
    config.write_text("colour = 'blue'\n", encoding="utf-8")
    monkeypatch.setenv("TEXTGEN_CONFIG", str(config))
    result = run("title", "-m", tiny_model, ARTICLE)
    assert result.exit_code == 2 and "unknown key 'colour'" in result.stderr


def test_bad_decoding_value_is_a_usage_error(tiny_model: Path):
    result = run("title", "-m", tiny_model, "--top-p", 1.5, ARTICLE)
    assert result.exit_code == 2
    assert "top_p must be in (0, 1]" in result.stderr and "Traceback" not in result.output


# ---------------------------------------------------------------------- continue
def test_continue_prints_only_the_continuation(tiny_model: Path):
    prompt = "我们在山顶看到了美丽的日出"
    result = run("continue", "-m", tiny_model, "--seed", 1, "-f", "jsonl", prompt)
    assert result.exit_code == 0, result.output
    text = jsonl(result.stdout)[0]["outputs"][0]["text"]
    assert text and not text.startswith(prompt)


def test_token_healing_respells_and_strips_the_backed_off_word(tiny_model: Path, spy: list):
    # "实验" is a prefix of the vocabulary word "实验室": healing backs it off and the output must
    # re-spell it; only what follows is printed. Without healing nothing is constrained.
    healed = run("continue", "-m", tiny_model, "--seed", 2, "-f", "jsonl", "学生们在实验")
    plain = run("continue", "-m", tiny_model, "--seed", 2, "-f", "jsonl", "--no-heal", "学生们在实验")
    assert healed.exit_code == plain.exit_code == 0
    assert jsonl(healed.stdout)[0]["outputs"] != jsonl(plain.stdout)[0]["outputs"]
    assert not jsonl(healed.stdout)[0]["outputs"][0]["text"].startswith("实验")


# ---------------------------------------------------------------------- usage errors
@pytest.mark.parametrize(
    "args, message",
    [
        (["title", "文本", "-i", "x.txt"], "not both"),
        (["title", "-i", "missing.txt"], "no such file or directory"),
        (["title", "文本", "--resume"], "--resume needs --output"),
        (["title", "文本", "--resume", "-o", "o.txt"], "--resume needs --format jsonl"),
        (["title", "文本", "--output-dir", "d"], "needs --input"),
        (["title", "-m", "no-such-model", "文本"], "model 'no-such-model' not found"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args", [["-i", "a.txt", "-o", "a.txt"], ["-i", "a.txt", "--output-dir", "."], ["-i", ".", "--output-dir", "."]]
)
def test_outputs_never_overwrite_inputs(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    Path("a.txt").write_text(ARTICLE, encoding="utf-8")
    result = run("title", *args)
    assert result.exit_code == 2 and ("would destroy" in result.stderr or "would overwrite" in result.stderr)
    assert Path("a.txt").read_text(encoding="utf-8") == ARTICLE


def test_model_that_does_not_serve_the_task(tmp_path: Path):
    from conftest import save_tiny_model

    model = save_tiny_model(tmp_path / "lm", tasks=["continue"])
    result = run("title", "-m", model, ARTICLE)
    assert result.exit_code == 2 and "serves continue, not 'title'" in result.stderr


def test_models_list_shows_the_directories_settings_name(tiny_model: Path, monkeypatch: pytest.MonkeyPatch):
    def local_rows() -> list[dict]:
        return [r for r in json.loads(run("models", "list", "--format", "json").stdout) if r["source"] == "local"]

    assert local_rows() == []
    monkeypatch.setenv("TEXTGEN_MODEL", str(tiny_model))
    (row,) = local_rows()
    assert (row["path"], row["tasks"]) == (str(tiny_model), ["title", "continue"]) and row["size_bytes"] > 0
    table = run("models", "list")
    assert table.exit_code == 0 and "local" in table.stdout and "title,continue" in table.stdout


def test_help_lists_every_command_and_title_defaults():
    result = run("--help")
    for command in ("title", "summarize", "qa", "search", "continue", "repl", "train", "eval", "models"):
        assert command in result.stdout
    title = " ".join(run("title", "--help").stdout.replace("│", " ").split())  # undo rich's wrapping
    assert "num_beams=4" in title  # the task's own default
    # ... and what the default model's textgen.json changes, which is what a bare run uses, also in
    # the flags' help
    meta = json.loads((EMBEDDED_DIR / DEFAULT_MODELS["title"] / "textgen.json").read_text(encoding="utf-8"))
    sets = {**meta["decoding"]["title"], **meta.get("options", {}).get("title", {})}
    assert f"Beam width; 1 turns beam search off. (title default: {sets.get('num_beams', 4)})" in title
    assert f"Default model: {meta['name']} (built in" in title
    assert "It sets: " + ", ".join(f"{k}={v}" for k, v in sets.items()) in title


def test_version():
    from importlib.metadata import version

    result = run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"textgen {version('textgen-zh')}"


# ---------------------------------------------------------------------- models and devices
def test_pickled_weights_need_allow_pickle(tiny_model: Path, tmp_path: Path):
    import shutil

    import torch
    from safetensors.torch import load_file

    model = tmp_path / "pickled"
    shutil.copytree(tiny_model, model)
    torch.save(load_file(str(model / "model.safetensors")), model / "pytorch_model.bin")
    (model / "model.safetensors").unlink()
    refused = run("title", "-m", model, ARTICLE)
    assert refused.exit_code == 2 and "--allow-pickle" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert run("title", "-m", model, "--allow-pickle", ARTICLE).exit_code == 0


def test_unreadable_model_is_a_usage_error(tmp_path: Path):
    model = tmp_path / "broken"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert", "vocab_size": 10}', encoding="utf-8")
    (model / "model.safetensors").write_bytes(b"not safetensors")
    (model / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n", encoding="utf-8")
    result = run("title", "-m", model, ARTICLE)
    assert result.exit_code == 2 and "cannot load model" in result.stderr and str(model) in result.stderr


def test_device_choices(tiny_model: Path, monkeypatch: pytest.MonkeyPatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert run("title", "-m", tiny_model, "--device", "auto", "--threads", 1, ARTICLE).exit_code == 0
    result = run("title", "-m", tiny_model, "--device", "cuda", ARTICLE)
    assert result.exit_code == 2 and "no CUDA device" in result.stderr
    monkeypatch.setenv("TEXTGEN_DEVICE", "gpu")
    result = run("title", "-m", tiny_model, ARTICLE)
    assert result.exit_code == 2 and "TEXTGEN_DEVICE must be one of auto, cpu, cuda" in result.stderr


def test_progress_bar_on_request(tiny_model: Path, tmp_path: Path):
    lines = tmp_path / "three.txt"
    lines.write_text("甲文。\n乙文。\n丙文。\n", encoding="utf-8")
    result = run("title", "-m", tiny_model, "-i", lines, "--lines", "--progress")
    assert result.exit_code == 0
    assert "generating" in result.stderr and "3/3" in result.stderr  # a file's total is known
    assert len(result.stdout.splitlines()) == 3
    quiet = run("title", "-m", tiny_model, "--lines", input="甲文。\n乙文。\n")
    assert "generating" not in quiet.stderr  # stderr is not a terminal here


def test_a_signal_during_a_write_waits_for_the_whole_line():
    import os
    import signal

    from textgen.cli.output import StopGuard, Stopped

    written = []
    with pytest.raises(Stopped) as stop, StopGuard() as guard, guard.writing():
        os.kill(os.getpid(), signal.SIGTERM)
        written.append("the rest of the line")
    assert written == ["the rest of the line"] and stop.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_a_record_the_model_fails_on_does_not_stop_its_batch(tiny_model: Path, monkeypatch: pytest.MonkeyPatch):
    fail_long_inputs(monkeypatch, ValueError("too long for this test"))
    lines = "短文。\n" + ARTICLE + "\n好天气。\n"
    result = run("title", "-m", tiny_model, "--lines", "-f", "jsonl", "--batch-size", 3, input=lines)
    assert result.exit_code == 1
    records = jsonl(result.stdout)
    assert [r.get("error") for r in records] == [None, "ValueError: too long for this test", None]
    assert records[0]["outputs"] and records[2]["outputs"]
