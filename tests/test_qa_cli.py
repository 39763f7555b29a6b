"""`textgen qa` and `textgen eval qa` end to end, on the tiny QA model of test_qa.py."""

from __future__ import annotations

import json

import pytest
from conftest import SENTENCES
from test_qa import PASSAGE, qa_model  # noqa: F401 -- the fixture
from typer.testing import CliRunner

from textgen.cli.app import app
from textgen.qa.evaluate import read_qa_data


def qa(model, *args: str, **kw):
    return CliRunner().invoke(app, ["qa", "--model", str(model), "--seed", "0", "--min-new-tokens", "2", *map(str, args)], **kw)


def test_text_output_prints_question_answer_blocks(qa_model):  # noqa: F811
    r = qa(qa_model, "-n", "3", PASSAGE)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[-1] == "" and 2 <= len(lines) - 1 <= 6 and (len(lines) - 1) % 2 == 0
    for q, a in zip(lines[:-1:2], lines[1:-1:2]):
        assert q.startswith("问：") and q.endswith("？") and a.startswith("答：") and a[2:] in PASSAGE


def test_jsonl_batch_with_answers_and_a_bad_record_goes_on(qa_model, tmp_path):  # noqa: F811
    data = tmp_path / "in.jsonl"
    rows = [{"id": "free", "text": PASSAGE}, {"id": "aware", "text": PASSAGE, "answer": "地铁线路"},
            {"id": "bad", "text": PASSAGE, "answer": "火星"}, {"id": "short", "text": "好。"}]
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    r = qa(qa_model, "-i", data, "--format", "jsonl", "-o", out, "-n", "2")
    assert r.exit_code == 1 and "2 of 4 records failed" in r.stderr
    assert "[bad] the answer '火星' is not in the passage" in r.stderr and "[short] the passage is too short" in r.stderr
    got = {o["id"]: o for o in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert list(got) == ["free", "aware", "bad", "short"]
    assert 1 <= len(got["free"]["pairs"]) <= 2 and set(got["free"]["pairs"][0]) == {"question", "answer", "start", "score"}
    assert got["aware"]["pairs"][0]["start"] == PASSAGE.index("地铁线路") and got["bad"]["pairs"] == []


def test_answer_flag_and_bad_option_values(qa_model):  # noqa: F811
    r = qa(qa_model, "--answer", "市图书馆", "--no-check", "--question-beams", "2", PASSAGE)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[1] == "答：市图书馆"
    bad = qa(qa_model, "--question-beams", "0", PASSAGE)
    assert bad.exit_code == 2 and "question_beams must be at least 1" in bad.stderr
    bad = qa(qa_model, "--copy", "text", PASSAGE)
    assert bad.exit_code == 2 and "copy must be one of numbers, head, off" in bad.stderr
    headless = qa(qa_model, "--copy", "head", "--answer", "市图书馆", PASSAGE)
    assert headless.exit_code == 1 and "copy=head needs a model with a copy head; tiny-qa has none" in headless.stderr


def test_repl_switches_to_qa_and_sets_an_answer(qa_model):  # noqa: F811
    script = f":task qa\n:set answer=化学实验 min_new_tokens=2\n{PASSAGE}\n:quit\n"
    r = CliRunner().invoke(app, ["repl", "--model", str(qa_model)], input=script)
    assert r.exit_code == 0, r.output
    assert "task qa" in r.stderr and "答：化学实验" in r.stdout


# ---------------------------------------------------------------------- eval qa
def _squad(tmp_path):
    qas = [{"question": "市图书馆什么时候开放？", "answers": [{"text": "今天上午", "answer_start": 0}]},
           {"question": "藏书有多少？", "answers": [{"text": "一百万册", "answer_start": 3}]},  # a wrong start is repaired
           {"question": "有没有？", "answers": [{"text": "YES", "answer_start": -1}]},  # skipped
           {"question": "不能回答", "answers": [], "is_impossible": True}]  # skipped
    data = {"data": [{"paragraphs": [{"context": PASSAGE, "qas": qas},
                                     {"context": SENTENCES[4] * 2, "qas": [{"question": "谁违约？", "answers": [{"text": "被告"}]}]}]}]}
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_eval_reads_squad_json_and_jsonl_alike(tmp_path):
    passages = read_qa_data(_squad(tmp_path))
    assert [len(p.golds) for p in passages] == [2, 1]
    assert passages[0].golds[1].start == PASSAGE.index("一百万册") and passages[1].golds[0].start == SENTENCES[4].index("被告")
    lines = [{"passage": p.text, "question": g.question, "answer": g.answer} for p in passages for g in p.golds]
    jsonl = tmp_path / "dev.jsonl"
    jsonl.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines), encoding="utf-8")
    assert read_qa_data(jsonl) == passages


def test_eval_qa_reports_question_scores_spans_and_the_rule_baseline(qa_model, tmp_path):  # noqa: F811
    preds = tmp_path / "preds.jsonl"
    r = CliRunner().invoke(app, ["eval", "qa", "--data", str(_squad(tmp_path)), "--model", str(qa_model), "--format", "json",
                                 "-n", "2", "--predictions", str(preds), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    aware, free = report["aware"], report["free"]
    assert aware["questions"] == 3 and aware["without_question_mark"] == 0 and report["unit"] == "char"
    assert 0 <= aware["model"]["rougeL"] <= 100 and aware["rule_baseline"]["n"] == 3
    assert free["pairs"] >= 1 and free["span_answers_pct"] == 100.0 and free["duplicates"] == 0
    rows = [json.loads(line) for line in preds.read_text(encoding="utf-8").splitlines()]
    assert sum(r["mode"] == "aware" for r in rows) == 3 and sum(r["mode"] == "free" for r in rows) == free["pairs"]
    table = CliRunner().invoke(app, ["eval", "qa", "--data", str(_squad(tmp_path)), "--model", str(qa_model), "--mode", "aware"])
    assert table.exit_code == 0 and "rule baseline" in table.stdout and "free generation" not in table.stdout


@pytest.mark.parametrize(("name", "content", "message"), [
    ("dev.txt", "x", "reads SQuAD-style .json or .jsonl"),
    ("dev.json", '{"data": [{"title": 1}]}', "not SQuAD-style JSON"),
    ("dev.jsonl", '{"passage": "文", "question": 3}\n', "line 1: needs string fields"),
    ("dev.jsonl", '{"passage": "文本", "question": "问", "answer": "无"}\n', "no answerable questions"),
])
def test_eval_qa_bad_data_is_one_line_and_exit_2(qa_model, tmp_path, name, content, message):  # noqa: F811
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    r = CliRunner().invoke(app, ["eval", "qa", "--data", str(path), "--model", str(qa_model)])
    assert r.exit_code == 2 and message in r.stderr and "Traceback" not in r.output
