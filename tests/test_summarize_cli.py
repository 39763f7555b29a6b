"""``textgen summarize``, ``textgen eval summarize`` and titles of long articles, end to end on a
tiny random model that carries an extractor in its directory."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import SENTENCES, run
from test_summarize import JUDGEMENT, summarize_model  # noqa: F401 -- the fixture

from textgen.summarize.clauses import split_clauses


def test_extract_only_prints_key_clauses_in_document_order(summarize_model: Path):
    r = run("summarize", "-m", summarize_model, "--extract-only", "--format", "jsonl", JUDGEMENT)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    clauses = split_clauses(JUDGEMENT)
    extraction = out["extraction"]
    assert extraction["method"] == "extractor" and extraction["of"] == len(clauses)
    assert extraction["clauses"] == sorted(extraction["clauses"])
    assert extraction["texts"] == [clauses[i] for i in extraction["clauses"]]
    assert out["outputs"][0]["text"] == "".join(extraction["texts"])
    assert len(out["outputs"][0]["text"]) <= 60 or len(extraction["clauses"]) == 1  # the model's rule: 60 chars

    text = run("summarize", "-m", summarize_model, "--extract-only", JUDGEMENT)
    assert text.stdout.strip() == out["outputs"][0]["text"]


def test_a_batch_gets_one_record_each_and_bad_documents_fail_alone(summarize_model: Path, tmp_path: Path):
    docs = [JUDGEMENT, "", "。，；……", "The parties signed a contract, and the buyer paid late.", "今天开庭。",
            "被告应当支付货款" * 200]
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"id": i, "text": d}, ensure_ascii=False) + "\n" for i, d in enumerate(docs)), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    r = run("summarize", "-m", summarize_model, "-i", data, "--format", "jsonl", "-o", out, "--batch-size", "4")
    assert r.exit_code == 1, r.output  # some records failed, the batch went on
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [rec["id"] for rec in records] == list(range(len(docs)))
    assert "empty" in records[1]["error"] and "nothing to summarize" in records[2]["error"]
    assert "not Chinese" in " ".join(records[3].get("warnings", []))
    for rec in (records[0], records[4], records[5]):
        assert rec["outputs"][0]["text"] and "error" not in rec
        assert rec["extraction"]["clauses"] and rec["extraction"]["method"] == "extractor"
    assert records[4]["extraction"]["texts"] == ["今天开庭。"]  # one short sentence: itself
    assert records[5]["extraction"]["of"] == len(split_clauses(docs[5]))  # no punctuation: cut, every piece scored
    assert "2 of 6 records failed" in r.stderr and "Traceback" not in r.output

    r = run("summarize", "-m", summarize_model, "-i", data, "--format", "jsonl", "-o", out, "--resume")
    assert len(out.read_text(encoding="utf-8").splitlines()) == len(docs)


def test_generated_summary_copies_from_the_extraction(summarize_model: Path):
    r = run("summarize", "-m", summarize_model, "--format", "jsonl", "--copy", "text", JUDGEMENT)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    summary, extraction = out["outputs"][0]["text"], "".join(out["extraction"]["texts"])
    assert summary and set(summary.replace(" ", "")) <= set(extraction)


def test_help_teaches_with_an_example():
    r = run("summarize", "--help")
    assert r.exit_code == 0 and "textgen summarize -i samples/judgement.txt" in r.stdout and "--extract-only" in r.stdout


def test_repl_switches_to_summarize(summarize_model: Path):
    r = run("repl", "--model", summarize_model, input=":task summarize\n:set extract_only=true\n" + JUDGEMENT.replace("\n", "") + "\n")
    assert r.exit_code == 0, r.output
    assert "task summarize" in r.stderr
    printed = split_clauses(r.stdout.strip())
    assert printed and set(printed) <= set(split_clauses(JUDGEMENT))


def test_title_of_an_article_longer_than_the_model_reads_is_written_from_its_extraction(summarize_model: Path):
    article = "".join(SENTENCES) * 6
    r = run("title", "-m", summarize_model, "--format", "jsonl", article, "--copy", "off")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["outputs"][0]["text"]
    assert out["extraction"]["method"] == "extractor" and len(out["extraction"]["clauses"]) < out["extraction"]["of"]
    assert any("the title was written from" in w for w in out["warnings"])
    short = json.loads(run("title", "-m", summarize_model, "--format", "jsonl", SENTENCES[0]).stdout)
    assert "extraction" not in short


def test_eval_reports_the_model_its_extractor_and_the_baselines(summarize_model: Path, tmp_path: Path):
    data = tmp_path / "cases.jsonl"
    rows = [{"document": JUDGEMENT, "summary": "被告应当支付货款十二万元。"},
            {"document": JUDGEMENT.replace("十二", "三"), "summary": "合同合法有效，被告应当支付货款。"}]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    preds = tmp_path / "preds.jsonl"
    r = run("eval", "summarize", "--data", data, "-m", summarize_model, "--format", "json", "--baseline-chars", "20",
            "--predictions", preds)
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    systems = report["systems"]
    assert set(systems) == {"model", "extract-only", "lead-20", "last-20", "textrank-20", "oracle extraction"}
    assert systems["lead-20"]["chars"] == 20 and systems["oracle extraction"]["rougeL"] > systems["lead-20"]["rougeL"]
    assert "jieba" in report["unit"] and report["records"] == 2 and report["extractor"] == "extractor"
    assert len(preds.read_text(encoding="utf-8").splitlines()) == 2

    table = run("eval", "summarize", "--data", data, "-m", summarize_model, "--extract-only")
    assert table.exit_code == 0 and "oracle extraction" in table.stdout and "CAIL" in table.stdout
    bad = run("eval", "summarize", "--data", data, "-m", summarize_model, "--ref-field", "nope")
    assert bad.exit_code == 2 and "no reference summary" in bad.stderr
    off = run("eval", "summarize", "--data", data, "-m", summarize_model, "--copy", "off", "--format", "json", "--no-baselines")
    assert off.exit_code == 0 and json.loads(off.stdout)["decoding"]["copy"] == "off", off.output
    bad = run("eval", "summarize", "--data", data, "-m", summarize_model, "--copy", "yes")
    assert bad.exit_code == 2 and "copy must be one of auto, off, text, head" in bad.stderr


def test_a_document_longer_than_other_tasks_read_is_scored_whole(summarize_model: Path):
    from conftest import load_task, task_config

    from textgen.io import Record
    from textgen.tasks import TASKS

    task = load_task("summarize", summarize_model, model="tiny", extract_only=True)
    document = (JUDGEMENT.replace("\n", "") + "\n") * 600  # 120,000 characters
    assert len(document) > TASKS["title"].max_chars
    out = task.run([Record(1, document)], task_config("summarize"))[0]
    assert out.extras["extraction"]["of"] == len(split_clauses(document)) and out.warnings == []


def test_only_an_extraction_the_copy_rule_leaves_nothing_for_is_generated_without_copying(
    summarize_model: Path, monkeypatch
):
    """The copy mechanism leaving no token (NoTokenLeft) is retried without it, one record at a
    time; any other error of the decoder is the record's error, not a reason to drop the copy."""
    from conftest import load_task, task_config

    import textgen.decoding
    from textgen.decoding import NoTokenLeft
    from textgen.decoding.copy import TextCopy
    from textgen.io import Record

    real = textgen.decoding.generate
    failure = [NoTokenLeft("the decoding constraints leave no token to generate for some input")]

    def generate(adapter, inputs, config, *, processors=(), **kw):
        if any(isinstance(p, TextCopy) for p in processors):
            raise failure[0]
        return real(adapter, inputs, config, processors=processors, **kw)

    monkeypatch.setattr(textgen.decoding, "generate", generate)
    task = load_task("summarize", summarize_model, model="tiny")
    assert task.copy_mode() == "text"  # auto, on a model without a copy head
    config = task_config("summarize", {"max_new_tokens": 8})
    retried = task.run([Record(1, JUDGEMENT), Record(2, JUDGEMENT)], config)  # the batch fails, then each record
    for out in retried:
        assert out.error is None and out.candidates and "extraction" in out.extras
        assert "the summary was generated without it" in out.warnings[-1]
    failure[0] = ValueError("some other failure")
    (failed,) = task.run([Record(3, JUDGEMENT)], config)
    assert failed.error == "ValueError: some other failure" and failed.candidates == []
