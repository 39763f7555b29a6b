"""The minor items of the adversarial pass (issue 10), each reproduced through the real command
line first: locking, the REPL, decoding values, directory runs, models, training and help.
Tiny random models; the outputs are gibberish, so the tests check ids, counts, files, messages."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from conftest import SENTENCES, save_tiny_model
from textgen.cli.app import app
from typer.testing import CliRunner

ARTICLE = "今天上午，市图书馆新馆正式向读者开放，馆内藏书超过一百万册。"


def run(*args: object, input: str | bytes | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


# ---------------------------------------------------------------------- two runs, one output file
@pytest.mark.skipif(sys.platform == "win32", reason="flock: Linux and other Unix systems")
def test_a_second_run_cannot_write_the_file_another_run_is_writing(tiny_model: Path, tmp_path: Path):
    import fcntl

    out = tmp_path / "out.jsonl"
    out.write_text('{"id": 1, "outputs": [], "task": "title"}\n', encoding="utf-8")
    with out.open("rb") as other:  # another run holds the file (flock locks belong to open files)
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        second = run("continue", "-m", tiny_model, "-f", "jsonl", "-o", out, "第二个进程")
        assert second.exit_code == 2 and "being written by another textgen run" in second.stderr
        assert out.read_text(encoding="utf-8") == '{"id": 1, "outputs": [], "task": "title"}\n'
    after = run("continue", "-m", tiny_model, "-f", "jsonl", "-o", out, "第二个进程")
    assert after.exit_code == 0 and [r["task"] for r in jsonl(out.read_text(encoding="utf-8"))] == ["continue"]


# ---------------------------------------------------------------------- the REPL
def repl(model: Path, script: str, *args: object):
    return CliRunner().invoke(app, ["repl", "--model", str(model), *map(str, args)], input=script)


def test_repl_keeps_set_values_with_their_task(tiny_model: Path):
    result = repl(tiny_model, ":set beam=5\n:task continue\n:set\n:task title\n:set\n")
    assert result.exit_code == 0, result.output
    continued, title = result.stderr.split("task continue, model")[2], result.stderr.split("task title, model")[-1]
    assert "num_beams=1 do_sample=True" in continued  # continuation keeps sampling
    assert "num_beams=5" in title and "its own :set values are back" in result.stderr


def test_repl_takes_decoding_flags_and_rejects_bad_values(tiny_model: Path):
    result = repl(tiny_model, ":set\n:set copy=maybe\n:set temperature=nan\n:set top_p=0.5\n", "--beam", 2)
    assert result.exit_code == 0, result.output
    assert "num_beams=2" in result.stderr
    assert "copy must be one of" in result.stderr and "temperature must be a finite number" in result.stderr
    assert "top_p is ignored: it acts in sampling" in result.stderr


def test_repl_paste_ended_by_ctrl_d_is_answered(tiny_model: Path):
    result = repl(tiny_model, ":paste\n第一行\n第二行")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 1 and "Traceback" not in result.output


def test_repl_paste_cancelled_by_ctrl_c_stays_in_the_repl(
    tiny_model: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    """Ctrl-C arrives as KeyboardInterrupt from the line reader (prompt_toolkit's behaviour)."""
    import textgen.cli.repl as repl_module

    script = iter([":paste", "第一行", KeyboardInterrupt, "春天到了。", EOFError])

    def read(prompt: str) -> str:
        item = next(script)
        if isinstance(item, type):
            raise item
        return item

    monkeypatch.setattr(repl_module, "line_reader", lambda: read)
    assert repl_module.run_repl("title", model=str(tiny_model)) == 0
    out, err = capsys.readouterr()
    assert "paste cancelled (1 lines dropped)" in err
    assert len(out.splitlines()) == 1  # the REPL went on and answered the next line


def test_repl_messages_name_its_own_commands(tiny_model: Path, tmp_path: Path):
    lm = save_tiny_model(tmp_path / "lm", tasks=["continue"])
    result = repl(tiny_model, f":model {lm}\n")
    assert ":model" in result.stderr and "--model" not in result.stderr


# ---------------------------------------------------------------------- decoding values
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_temperature_is_a_usage_error(value: str, tiny_model: Path):
    result = run("continue", "-m", tiny_model, "--temperature", value, "今天")
    assert result.exit_code == 2 and "temperature must be a finite number" in result.stderr


def test_sampling_flags_with_beam_search_are_warned_about(tiny_model: Path):
    result = run("title", "-m", tiny_model, "--top-p", 0.5, "--temperature", 0.7, ARTICLE)
    assert result.exit_code == 0, result.output
    assert "--top-p is ignored" in result.stderr and "--temperature is ignored" in result.stderr


def test_a_default_length_that_does_not_fit_a_short_window_is_shortened(tmp_path: Path):
    model = save_tiny_model(tmp_path / "short", max_positions=40)  # continue's default: 64 new tokens
    result = run("continue", "-m", model, "-f", "jsonl", "今天上午")
    assert result.exit_code == 0, result.output
    assert "generating at most" in result.stderr and jsonl(result.stdout)[0]["outputs"]
    refused = run("continue", "-m", model, "--max-new-tokens", 60, "今天上午")
    assert refused.exit_code == 2 and "lower --max-new-tokens" in refused.stderr


# ---------------------------------------------------------------------- directory runs and input formats
def test_a_second_directory_run_does_not_read_its_own_outputs(tiny_model: Path, tmp_path: Path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_text(ARTICLE, encoding="utf-8")
    (tree / "b.txt").write_text(SENTENCES[1], encoding="utf-8")
    for _ in range(2):
        result = run("title", "-m", tiny_model, "-i", tree, "--output-dir", tree / "out")
        assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*.txt")) == ["a.txt", "b.txt", "out/a.txt", "out/b.txt"]
    first = run("title", "-m", tiny_model, "-i", tree, "--glob", "?.txt", "-o", tree / "c.txt")
    assert first.exit_code == 0 and len(first.stdout) == 0
    ids = [line.split("\t")[0] for line in (tree / "c.txt").read_text(encoding="utf-8").splitlines()]
    assert ids == ["a.txt", "b.txt", "out/a.txt", "out/b.txt"]  # not c.txt, created for this run
    again = run("title", "-m", tiny_model, "-i", tree, "--glob", "?.txt", "-o", tree / "c.txt")
    assert again.exit_code == 2 and "is one of the input files" in again.stderr  # c.txt may be an input now


def test_two_inputs_that_would_share_an_output_file_are_refused(tiny_model: Path, tmp_path: Path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text(ARTICLE, encoding="utf-8")
    (tmp_path / "in" / "a.md").write_text(SENTENCES[1], encoding="utf-8")
    result = run("title", "-m", tiny_model, "-i", tmp_path / "in", "--glob", "a.*", "--output-dir", tmp_path / "out")
    assert result.exit_code == 2 and "would both write" in result.stderr and not (tmp_path / "out" / "a.txt").exists()


def test_text_output_of_a_directory_run_names_each_file(tiny_model: Path, tmp_path: Path):
    (tmp_path / "a.txt").write_text(ARTICLE, encoding="utf-8")
    (tmp_path / "b.txt").write_text(SENTENCES[1], encoding="utf-8")
    result = run("title", "-m", tiny_model, "-i", tmp_path)
    assert result.exit_code == 0, result.output
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["a.txt", "b.txt"]


def test_json_input_and_flags_that_do_not_apply(tiny_model: Path, tmp_path: Path):
    data = tmp_path / "batch.json"
    data.write_text(json.dumps([{"id": "x", "text": ARTICLE}, {"text": SENTENCES[1]}], ensure_ascii=False), encoding="utf-8")
    result = run("title", "-m", tiny_model, "-i", data, "--lines", "-f", "jsonl")
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in jsonl(result.stdout)] == ["x", 2]
    assert "--lines has no effect on .json input" in result.stderr
    piped = run("title", "-m", tiny_model, "--field", "body", input=ARTICLE)
    assert piped.exit_code == 0 and "--field has no effect here" in piped.stderr


def test_blank_lines_are_not_records(tiny_model: Path):
    result = run("title", "-m", tiny_model, "--lines", "-f", "jsonl", input=f"{ARTICLE}\n\n   \n{SENTENCES[1]}\n")
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in jsonl(result.stdout)] == [1, 4]


def test_a_huge_record_is_cut_before_it_is_tokenized(tiny_model: Path, monkeypatch: pytest.MonkeyPatch):
    from textgen.models.adapters import BackboneCausal, BackboneSeq2Seq

    seen: list[int] = []
    real = BackboneSeq2Seq.encode

    def encode(self, text):
        seen.append(len(text))
        return real(self, text)

    monkeypatch.setattr(BackboneSeq2Seq, "encode", encode)
    monkeypatch.setattr(BackboneCausal, "encode", encode)
    result = run("title", "-m", tiny_model, "-f", "jsonl", input="春天到了。" * 2_000_000)
    assert result.exit_code == 0, result.output
    assert max(seen) <= 100_000  # Task.max_chars
    assert jsonl(result.stdout)[0]["warnings"][0] == "the input is 10,000,000 characters long; only its first 100,000 are used"
    seen.clear()
    direct = run("continue", "-m", tiny_model, "-f", "jsonl", "--max-new-tokens", 8, input="春" * 5000)
    assert direct.exit_code == 0 and 0 < max(seen) <= (128 - 8 - 1) * 16  # cut to what 119 tokens can hold


# ---------------------------------------------------------------------- models
def test_nan_weights_are_refused_when_loading(tiny_model: Path, tmp_path: Path):
    import torch
    from safetensors.torch import load_file, save_file

    model = tmp_path / "nan"
    shutil.copytree(tiny_model, model)
    state = load_file(str(model / "model.safetensors"))
    name = next(k for k in state if k.endswith("query.weight"))
    state[name][0, 0] = float("nan")
    save_file(state, str(model / "model.safetensors"))
    result = run("title", "-m", model, ARTICLE)
    assert result.exit_code == 2 and "NaN or infinite" in result.stderr and name in result.stderr
    assert torch.isnan(state[name]).any()


def test_a_model_that_is_a_file_and_an_embedded_name_shadowed_by_a_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from textgen.models.registry import DEFAULT_MODELS, ModelNotFound, resolve

    monkeypatch.chdir(tmp_path)
    Path("notes.txt").write_text("不是模型", encoding="utf-8")
    with pytest.raises(ModelNotFound, match="is a file; a model is a directory"):
        resolve("notes.txt")
    name = DEFAULT_MODELS["title"]
    save_tiny_model(tmp_path / name)
    info = resolve(name)
    assert info.source == "embedded" and "./" + name in info.note
    assert resolve("./" + name).source == "local"


def test_saved_weights_get_the_usual_file_mode(tmp_path: Path):
    model = save_tiny_model(tmp_path / "m")
    umask = os.umask(0)
    os.umask(umask)
    assert (model / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask


def test_bart_titles_have_no_spaces_between_chinese_characters(tmp_path: Path):
    from tiny_models import save_bart

    save_bart(tmp_path / "bart")
    result = run("title", "-m", tmp_path / "bart", "--min-new-tokens", 3, "-f", "jsonl", "今天天气很好我们去白云山")
    assert result.exit_code == 0, result.output
    text = jsonl(result.stdout)[0]["outputs"][0]["text"]
    assert text and " " not in text


# ---------------------------------------------------------------------- training
def test_train_resume_mistakes_are_one_line(tmp_path: Path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES * 2) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    base = ["train", "pretrain", "--data", corpus, "--out", out, "--layers", 1, "--window", 16, "--batch-size", 4,
            "--vocab-words", 30, "--no-progress"]
    first = run(*base, "--steps", 2, "--warmup", 5, "--hidden", 32)
    assert first.exit_code == 0, first.output
    assert "--warmup 5 is longer than --steps 2" in first.stderr
    again = run(*base, "--steps", 2, "--warmup", 1, "--hidden", 32)
    assert again.exit_code == 0 and "nothing to train" in again.stdout and "nan" not in again.stdout
    wider = run(*base, "--steps", 4, "--warmup", 1, "--hidden", 64)
    assert wider.exit_code == 2 and "hidden_size 32, not 64" in wider.stderr and "Traceback" not in wider.output
    meta = json.loads((out / "last" / "textgen.json").read_text(encoding="utf-8"))
    assert meta["decoding"]["continue"]["max_new_tokens"] < 18 // 2 + 1  # fits the 16-token window


# ---------------------------------------------------------------------- help, version, eval
def test_version():
    from importlib.metadata import version

    result = run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"textgen {version('textgen-zh')}"


def test_eval_title_reports_every_penalty_it_used(tiny_model: Path, tmp_path: Path):
    data = tmp_path / "dev.jsonl"
    data.write_text(json.dumps({"text": ARTICLE, "title": "新馆开放"}, ensure_ascii=False) + "\n", encoding="utf-8")
    result = run("eval", "title", "-m", tiny_model, "--data", data, "--format", "json")
    assert result.exit_code == 0, result.output
    decoding = json.loads(result.stdout)["decoding"]
    assert decoding["repetition_penalty"] == 1.0 and "length_penalty" in decoding
