"""The title selector (textgen.titles) and ``textgen title --method clause``.

A tiny random backbone makes the clause vectors; the articles are built here from our own
sentences, with the headline planted at a position (the second clause), which the selector's
position features let it learn. Everything else is the real code: clause splitting, the
encoder, labels, the training loop, saving into the model directory, loading, the task, the CLI.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from conftest import SENTENCES, load_task, run, save_tiny_model

from textgen.decoding.config import build_config
from textgen.io import Record
from textgen.models.backbone import BertBackbone
from textgen.summarize.extractor import backbone_fingerprint
from textgen.summarize.training import TrainConfig, predict, train_tagger
from textgen.summarize.vectors import ClauseEncoder
from textgen.titles.selector import MAX_CLAUSES, NAME, candidates, headline, position_features, selector_for
from textgen.titles.training import build_documents, chosen_headlines, headline_score, labels
from textgen.tokenizer import ChineseTokenizer


def articles(n: int, seed: int) -> list[tuple[str, str]]:
    """Articles of 3-5 of our sentences; the title is the article's second clause."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        article = "".join(rng.sample(SENTENCES, rng.randint(3, 5)))
        out.append((article, headline(candidates(article), 1)))
    return out


def test_candidates_skip_clauses_without_letters_and_stop_at_the_head():
    text = "……，" + "。".join(f"第{i}句话" for i in range(60)) + "。"
    clauses = candidates(text)
    assert len(clauses) == MAX_CLAUSES and clauses[0] == "第0句话。"
    assert candidates("……！？。") == [] and candidates("") == []
    # an ASCII full stop before a Chinese character ends a sentence; not inside 0.7 or before Latin letters
    # (the last clause of a line keeps its line break)
    assert candidates("我们设计了模型XY-Net.该模型使精度提高0.7%.见e.g. 附录") == [
        "我们设计了模型XY-Net.", "该模型使精度提高0.7%.", "见e.g. 附录\n"]


def test_a_line_break_ends_a_headline():
    """A heading line without final punctuation is not glued to the next line (…会议要求…)."""
    text = "市政府召开防汛工作会议\n要求各部门加强值班值守，确保安全度汛。\n"
    clauses = candidates(text)
    assert clauses[0] == "市政府召开防汛工作会议\n"
    assert headline(clauses, 0, min_chars=16) == "市政府召开防汛工作会议"
    # within a line a short clause still takes the next one with it
    assert headline(["央视网消息，", "国家卫生健康委今天通报。\n"], 0, min_chars=8) == "央视网消息，国家卫生健康委今天通报"


def test_headline_strips_punctuation_and_takes_the_next_clause_when_too_short():
    clauses = ["央视网消息", "（新闻联播）：", "国家卫生健康委今天通报，", "新增病例170例。"]
    assert headline(clauses, 2) == "国家卫生健康委今天通报"
    assert headline(clauses, 0) == "央视网消息（新闻联播）"  # 5 characters: the next clause joins
    assert headline(clauses, 3, min_chars=20) == "新增病例170例"  # nothing follows the last clause
    assert headline(["第一行文字\n第二行文字，", "后面"], 0) == "第一行文字 第二行文字"


def test_position_features_mark_the_lead_and_sentence_ends():
    f = position_features(["第一句，", "第二句。", "第三句"])
    assert f.shape == (3, 6)
    assert f[:, 0].tolist() == pytest.approx([1, 0.5, 1 / 3]) and f[:, 2].tolist() == [1, 0, 0]
    assert f[:, 5].tolist() == [0, 1, 0] and f[1, 3] == pytest.approx(4 / 500)


def test_labels_are_the_clauses_closest_to_the_title():
    clauses = ["今天上午，", "市图书馆新馆正式向读者开放，", "馆内藏书超过一百万册。"]
    assert labels(clauses, "市图书馆新馆开放") == [1]
    assert labels(clauses, "无关") == []  # no shared character: no label


@pytest.fixture(scope="module")
def selector_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A tiny model whose title selector is trained here on planted data (as
    scripts/train_title_selector.py trains and saves one)."""
    model = save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-titles", tasks=["title"])
    meta = json.loads((model / "textgen.json").read_text(encoding="utf-8"))
    meta["options"] = {"title": {"method": "clause"}}  # as the embedded title model presets it
    (model / "textgen.json").write_text(json.dumps(meta), encoding="utf-8")
    encoder = ClauseEncoder(BertBackbone.load(model), ChineseTokenizer.from_dir(model))
    train, held = build_documents(articles(80, 0), encoder), build_documents(articles(20, 1), encoder)
    torch.manual_seed(0)
    tagger, run_info = train_tagger(train, held, TrainConfig(width=16, epochs=12, batch_size=8, lr=3e-3), score=headline_score)
    tagger.save(model, {"backbone_sha256": backbone_fingerprint(model)}, NAME)
    return model, {"held": held, "probs": predict(tagger, held), **run_info}


def test_the_selector_learns_where_headlines_are(selector_model):
    _, info = selector_model
    held, probs = info["held"], info["probs"]
    chosen = chosen_headlines(held, probs)
    assert sum(c == d.summary for c, d in zip(chosen, held)) >= 0.9 * len(held)
    assert headline_score(held, probs) > 90 and info["score"] > 90


def test_title_method_clause_gives_the_likeliest_clauses_of_the_article(selector_model):
    model, _ = selector_model
    article, title = articles(1, 7)[0]
    task = load_task("title", str(model), model="tiny", method="clause")
    task.check_ready()
    out = task.run([Record("a", article), Record("b", "……"), Record("c", "只有一句话。")], build_config({"num_return_sequences": 3}))
    first = out[0].candidates
    assert first[0].text == title and first[0].clause == 1 and out[0].extras["method"] == "clause"
    assert out[0].to_dict()["outputs"][0]["clause"] == 1 and out[0].to_dict()["method"] == "clause"
    assert len(first) == 3 and len({o.text for o in first}) == 3
    assert [o.score for o in first] == sorted((o.score for o in first), reverse=True)
    assert all(o.text in article for o in first)
    assert out[1].candidates == [] and "no clause with letters or digits" in out[1].error
    assert [o.text for o in out[2].candidates] == ["只有一句话"] and "1 of 3 headlines" in out[2].warnings[0]
    task.selector().min_chars = 40  # as title-selector.json's "min_chars" sets it: short clauses take the next ones
    longer = task.run([Record("a", article)], build_config({}))[0].candidates[0].text
    assert longer.startswith(title) and len(longer) > len(title)


def test_cli_method_clause_and_a_model_without_a_selector(selector_model, tiny_model):
    model, _ = selector_model
    article, title = articles(1, 8)[0]
    result = run("title", "--model", model, "--format", "jsonl", article)  # the model's preset
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["outputs"][0]["text"] == title
    result = run("title", "--model", model, "--copy", "text", "--format", "jsonl", article)  # --copy asks for writing
    assert result.exit_code == 0 and "method" not in json.loads(result.stdout), result.output
    result = run("title", "--model", tiny_model, "--method", "clause", article)
    assert result.exit_code == 2 and "no title selector" in result.output and "Traceback" not in result.output


def test_repl_chooses_by_preset_and_writes_after_set_copy(selector_model):
    model, _ = selector_model
    article, title = articles(1, 9)[0]
    script = f"{article}\n:set copy=text min_new_tokens=2 max_new_tokens=6\n:set\n{article}\n:set method=clause\n{article}\n"
    result = run("repl", "--model", model, "--task", "title", input=script)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 3 and lines[0] == lines[2] == title  # preset clause, then clause again
    assert lines[1] != title, result.output  # written by the (random) model after :set copy=text
    assert "method=write copy=text" in result.stderr  # :set shows what is in force


def test_a_selector_of_other_weights_is_refused(selector_model, tmp_path):
    model, _ = selector_model
    other = save_tiny_model(tmp_path / "other", seed=1)
    for name in (f"{NAME}.safetensors", f"{NAME}.json"):
        (other / name).write_bytes((model / name).read_bytes())
    adapter = load_task("title", str(other), model="other").adapter
    selector, reason = selector_for(other, adapter)
    assert selector is None and "other backbone weights" in reason


def test_method_clause_warns_about_decoding_flags_and_caps_a_headline(selector_model):
    """--beam, --max-new-tokens, --sample do nothing for a chosen clause: say so; a text without
    punctuation is one clause, and no headline is 256 characters long."""
    from textgen.tasks.title import MAX_CLAUSE_CHARS

    model, _ = selector_model
    done = run("title", "--model", str(model), "--method", "clause", "--beam", "5", "--max-new-tokens", "9", "今天天气很好。我们去公园。")
    assert done.exit_code == 0 and "--beam, --max-new-tokens are ignored: --method clause" in done.output
    quiet = run("title", "--model", str(model), "--method", "clause", "-n", "2", "今天天气很好。我们去公园。")
    assert "ignored" not in quiet.output  # -n is what clause reads
    endless = "今天天气很好我们一起去公园散步然后去图书馆看书再去商场买东西" * 8
    task = load_task("title", str(model), method="clause")
    out = task.run([Record("a", endless)], build_config({}))[0]
    assert 0 < len(out.text) <= MAX_CLAUSE_CHARS and endless.startswith(out.text)
    assert any(f"longer than {MAX_CLAUSE_CHARS} characters" in w for w in out.warnings)
