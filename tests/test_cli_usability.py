"""What seasoned command-line users expect of the task commands: messages that suggest only what
can work, progress for a long document, ``-q``/``-v``, ``--json``, the settings each output was
made with, ``textgen config``, and ``--temperature 0`` as greedy decoding. Through the real command
line with tiny random models."""

from __future__ import annotations

import json
import signal
import tomllib
from pathlib import Path

import pytest
from conftest import jsonl, one_line_error, run, write_jsonl

ARTICLES = [
    "今天上午，市图书馆新馆正式向读者开放，馆内藏书超过一百万册。",
    "春天到了，公园里的花都开了，很多市民带着孩子去散步。",
    "学生们在实验室里认真地做化学实验。",
]


def _stop_after_first_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGINT arrives once the first record is written."""
    from textgen.cli.output import Stopped
    from textgen.runner import Runner

    real = Runner.run

    def stopping(self, job, records, **kw):
        for item in real(self, job, records, **kw):
            yield item
            raise Stopped(signal.SIGINT)

    monkeypatch.setattr(Runner, "run", stopping)


# ---------------------------------------------------------------------- the stop message
@pytest.mark.parametrize("where", ["jsonl-file", "jsonl-stdout", "text-file"])
def test_the_stop_message_suggests_resume_only_where_it_works(
    where: str, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    batch = write_jsonl(tmp_path / "b.jsonl", [{"id": i, "text": t} for i, t in enumerate(ARTICLES)])
    _stop_after_first_record(monkeypatch)
    fmt = "text" if where.startswith("text") else "jsonl"
    out = ["-o", tmp_path / "out"] if where.endswith("file") else []
    result = run("title", "-m", tiny_model, "-i", batch, "-f", fmt, "--batch-size", 1, *out)
    assert result.exit_code == 130, result.output
    stop = [line for line in result.stderr.splitlines() if "stopped by SIGINT" in line]
    assert len(stop) == 1 and "after 1 records" in stop[0]
    if where == "jsonl-file":
        assert "rerun with --resume to finish" in stop[0]
    else:
        assert "rerun with --resume" not in stop[0] and "-o FILE" in stop[0]


# ---------------------------------------------------------------------- a long document on a terminal
def _on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import textgen.cli.tasks as tasks

    monkeypatch.setattr(tasks, "_stderr_is_terminal", lambda: True)
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich draws as on a terminal


def test_a_long_single_document_shows_what_is_running_on_a_terminal(tiny_model: Path, monkeypatch: pytest.MonkeyPatch):
    long = ARTICLES[0] * 700  # over 20,000 characters
    _on_a_terminal(monkeypatch)
    result = run("title", "-m", tiny_model, "-f", "jsonl", long)
    assert result.exit_code == 0, result.output
    assert f"a {len(long):,}-character document" in result.stderr
    assert len(jsonl(result.stdout)) == 1
    quiet = run("title", "-m", tiny_model, "-f", "jsonl", "--no-progress", long)
    assert "character document" not in quiet.stderr
    short = run("title", "-m", tiny_model, "-f", "jsonl", ARTICLES[0])
    assert "character document" not in short.stderr


# ---------------------------------------------------------------------- -q, -v, --json
def test_quiet_drops_warnings_but_not_errors(tiny_model: Path, tmp_path: Path):
    batch = tmp_path / "b.jsonl"
    batch.write_text('{"id": "ok", "text": "春天到了，公园里的花都开了。"}\n{"id": "blank", "text": ""}\n', encoding="utf-8")
    loud = run("title", "-m", tiny_model, "-i", batch, "-f", "jsonl", "--top-p", 0.5)
    assert "warning:" in loud.stderr
    quiet = run("title", "-q", "-m", tiny_model, "-i", batch, "-f", "jsonl", "--top-p", 0.5)
    assert quiet.exit_code == 1 and "warning" not in quiet.stderr
    assert "[blank]" in quiet.stderr and "1 of 2 records failed" in quiet.stderr
    assert len(jsonl(quiet.stdout)) == 2
    both = run("title", "-q", "-v", "-m", tiny_model, ARTICLES[0])
    assert one_line_error(both).endswith("give -q or -v, not both")


def test_verbose_prints_the_model_device_and_settings_at_start(tiny_model: Path):
    result = run("title", "--verbose", "-m", tiny_model, "--device", "cpu", "--beam", 2, ARTICLES[0])
    assert result.exit_code == 0, result.output
    err = result.stderr
    assert f"model {tiny_model} (local: {tiny_model.resolve()})" in err and "device cpu" in err
    assert "num_beams=2" in err and "method=write" in err and "beam search" in err


def test_json_is_format_jsonl(tiny_model: Path):
    result = run("title", "--json", "-m", tiny_model, ARTICLES[0])
    assert result.exit_code == 0, result.output
    assert jsonl(result.stdout)[0]["id"] == 1
    clash = run("title", "--json", "-f", "text", "-m", tiny_model, ARTICLES[0])
    assert "--json" in one_line_error(clash)
    same = run("title", "--json", "-f", "jsonl", "-m", tiny_model, ARTICLES[0])
    assert same.exit_code == 0, same.output


# ---------------------------------------------------------------------- what each output was made with
def test_jsonl_outputs_record_the_version_and_settings(tiny_model: Path):
    from importlib.metadata import version

    result = run("title", "-m", tiny_model, "--json", "--beam", 2, "-n", 2, ARTICLES[0])
    assert result.exit_code == 0, result.output
    made = jsonl(result.stdout)[0]["textgen"]
    assert made["version"] == version("textgen-zh")
    settings = made["settings"]
    assert settings["num_beams"] == 2 and settings["num_return_sequences"] == 2
    assert settings["max_new_tokens"] == 8  # the model's textgen.json
    assert "temperature" not in settings and "top_p" not in settings  # neutral values are left out
    assert settings["method"] == "write" and settings["copy"] == "off"  # the task options in force
    text = run("title", "-m", tiny_model, ARTICLES[0])
    assert "textgen" not in text.stdout and "version" not in text.stdout


# ---------------------------------------------------------------------- --temperature 0
def test_temperature_0_is_greedy_decoding(tiny_model: Path):
    first = run("continue", "-m", tiny_model, "--json", "--temperature", 0, "今天上午")
    assert first.exit_code == 0, first.output
    assert "ignored" not in first.stderr
    settings = jsonl(first.stdout)[0]["textgen"]["settings"]
    assert "do_sample" not in settings  # greedy: the neutral value
    again = run("continue", "-m", tiny_model, "--json", "--temperature", 0, "今天上午")
    assert jsonl(again.stdout)[0]["outputs"] == jsonl(first.stdout)[0]["outputs"]
    negative = run("continue", "-m", tiny_model, "--temperature", -1, "今天上午")
    assert "temperature must be > 0" in one_line_error(negative)


# ---------------------------------------------------------------------- textgen config
def test_config_show_names_each_setting_and_where_it_comes_from(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    config = tmp_path / "config.toml"
    config.write_text(f'device = "cpu"\n\n[title]\nmodel = "{tiny_model}"\nnum_beams = 2\n', encoding="utf-8")
    monkeypatch.setenv("TEXTGEN_CONFIG", str(config))
    monkeypatch.setenv("TEXTGEN_THREADS", "3")
    result = run("config", "show")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert str(config) in result.stdout

    def line(start: str) -> str:
        (hit,) = [x for x in lines if x.split()[:1] == [start]]
        return hit

    assert "cpu" in line("device") and "config file" in line("device")
    assert "3" in line("threads") and "TEXTGEN_THREADS" in line("threads")
    assert "default" in line("dtype")
    assert str(tiny_model) in line("title") and "[title] model" in line("title") and "num_beams=2" in line("title")
    assert "mini-zh" in line("summarize") and "built-in" in line("summarize")
    shown = json.loads(run("config", "show", "--json").stdout)
    assert shown["device"] == {"value": "cpu", "from": "config file"}
    assert shown["models"]["title"]["value"] == str(tiny_model)


def test_config_set_model_writes_the_file_safely(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    config = tmp_path / "config.toml"
    config.write_text('# my settings\ndevice = "cpu"  # keep\n\n[title]\nnum_beams = 2\n', encoding="utf-8")
    monkeypatch.setenv("TEXTGEN_CONFIG", str(config))
    result = run("config", "set-model", tiny_model, "--task", "title")
    assert result.exit_code == 0, result.output
    assert tomllib.loads(config.read_text(encoding="utf-8")) == {
        "device": "cpu", "title": {"num_beams": 2, "model": str(tiny_model)}}
    assert "# my settings" in config.read_text(encoding="utf-8") and "# keep" in config.read_text(encoding="utf-8")
    again = run("config", "set-model", "mini-zh-title", "--task", "title")  # replaces the task's model
    assert again.exit_code == 0, again.output
    assert tomllib.loads(config.read_text(encoding="utf-8"))["title"] == {"num_beams": 2, "model": "mini-zh-title"}
    top = run("config", "set-model", "mini-zh")
    assert top.exit_code == 0, top.output
    data = tomllib.loads(config.read_text(encoding="utf-8"))
    assert data["model"] == "mini-zh" and data["title"]["model"] == "mini-zh-title"
    new_task = run("config", "set-model", "mini-zh", "--task", "summarize")
    assert new_task.exit_code == 0 and tomllib.loads(config.read_text(encoding="utf-8"))["summarize"] == {"model": "mini-zh"}
    shown = run("config", "show").stdout
    assert "mini-zh-title" in shown
    assert "no-such-task" in one_line_error(run("config", "set-model", "mini-zh", "--task", "no-such-task"))
    assert "nowhere': no such file or directory" in one_line_error(run("config", "set-model", str(tmp_path / "nowhere")))
    before = config.read_text(encoding="utf-8")
    serves = run("config", "set-model", tiny_model, "--task", "summarize")  # tiny serves title and continue
    assert "summarize" in one_line_error(serves) and config.read_text(encoding="utf-8") == before
    broken = tmp_path / "broken.toml"
    broken.write_text("device = \n", encoding="utf-8")
    monkeypatch.setenv("TEXTGEN_CONFIG", str(broken))
    refused = run("config", "set-model", "mini-zh", "--task", "title")
    assert str(broken) in one_line_error(refused, 1) and broken.read_text(encoding="utf-8") == "device = \n"
    assert str(broken) in one_line_error(run("config", "set-model", "mini-zh"), 1)
