"""`textgen search` end to end on a tiny random model: the three modes, JSONL keyword lists,
batches with bad records, resume, traces, seeds, the REPL, and every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import jsonl, run, save_tiny_model
from textgen.cli.app import app
from typer.testing import CliRunner

FAST = ["--steps", "6", "--chains", "2", "--top-k", "4", "--seed", "1"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-search", tasks=["search", "continue"])


def search(model: Path, *args: object, input: str | None = None):
    """``textgen search -m MODEL`` with the fast settings."""
    return run("search", "-m", model, *FAST, *args, input=input)


def test_keywords_from_text_with_every_separator(model: Path):
    r = search(model, "图书馆 开放，市民、春天")
    assert r.exit_code == 0, r.output
    line = r.stdout.strip()
    assert all(k in line for k in ("图书馆", "开放", "市民", "春天")) and line.endswith("。")
    assert line.index("图书馆") < line.index("开放") < line.index("市民") < line.index("春天")


def test_jsonl_keyword_lists_bad_records_resume_and_trace(model: Path, tmp_path: Path):
    data = tmp_path / "kw.jsonl"
    rows = [{"id": "a", "keywords": ["图书馆", "市民"]}, {"id": "b", "keywords": []}, {"id": "c", "keywords": [1, 2]},
            {"id": "d", "text": "春天 公园"}, {"id": "e", "keywords": "工厂 产量"}]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) + "not json\n", encoding="utf-8")
    out, trace = tmp_path / "out.jsonl", tmp_path / "trace.jsonl"
    r = search(model, "-i", data, "-f", "jsonl", "-o", out, "--trace", trace, "-n", "2")
    assert r.exit_code == 1  # some records failed, the batch went on
    got = {rec["id"]: rec for rec in jsonl(out.read_text(encoding="utf-8"))}
    assert set(got) == {"a", "b", "c", "d", "e", 6}
    assert "no keywords" in got["b"]["error"] and "list of strings" in got["c"]["error"] and "malformed" in got[6]["error"]
    for rid, words in (("a", ["图书馆", "市民"]), ("d", ["春天", "公园"]), ("e", ["工厂", "产量"])):
        texts = [o["text"] for o in got[rid]["outputs"]]
        assert 1 <= len(texts) <= 2 and len(set(texts)) == len(texts)
        assert all(all(w in t for w in words) for t in texts)
        stats = got[rid]["search"]
        assert stats["mode"] == "keywords" and stats["proposals"] >= 12
    steps = jsonl(trace.read_text(encoding="utf-8"))
    assert {s["id"] for s in steps} == {"a", "d", "e"}
    assert set(steps[0]) == {"id", "chain", "step", "move", "accepted", "changed", "text", "log_score", "temperature"}
    assert all("图书馆" in s["text"] for s in steps if s["id"] == "a")
    # Resume keeps what succeeded and retries only the failed records (which fail again).
    again = search(model, "-i", data, "-f", "jsonl", "-o", out, "--resume")
    assert again.exit_code == 1 and "3 records already written" in again.stderr
    kept = {rec["id"]: rec for rec in jsonl(out.read_text(encoding="utf-8")) if "error" not in rec}
    assert {k: v["outputs"] for k, v in kept.items()} == {k: got[k]["outputs"] for k in "ade"}


def test_same_seed_same_output_whatever_the_batch(model: Path, tmp_path: Path):
    data = tmp_path / "kw.txt"
    data.write_text("图书馆 市民\n春天 公园\n工厂 产量\n", encoding="utf-8")
    one = search(model, "-i", data, "--lines", "--batch-size", "1")
    three = search(model, "-i", data, "--lines", "--batch-size", "3")
    assert one.exit_code == three.exit_code == 0
    assert one.stdout == three.stdout and len(one.stdout.splitlines()) == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["，、 "], "no keywords"),
        (["--mode", "infill", "没有空白的句子。"], "no blank to fill"),
        (["--mode", "rewrite", "--keep", "火星", "今天天气很好。"], "not in the text: 火星"),
        (["--mode", "rewrite", "--keep", "天气", "天气"], "nothing to rewrite"),
        (["图" * 300], "the model reads at most"),
        (["图" * 5000], "characters long; the model reads at most"),
    ],
)
def test_bad_input_is_an_error_record(model: Path, args: list[str], message: str):
    r = search(model, "-f", "jsonl", *args)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert message in jsonl(r.stdout)[0]["error"] and message in r.stderr


@pytest.mark.parametrize(
    "args, message",
    [(["--mode", "nope"], "mode must be one of keywords, infill, rewrite"), (["--steps", "0"], "steps must be >= 1"),
     (["--gamma", "0"], "gamma must be > 0"), (["--anneal", "-1"], "anneal must be >= 0")],
)
def test_bad_settings_are_usage_errors(model: Path, args: list[str], message: str):
    r = search(model, *args, "图书馆")
    assert r.exit_code == 2 and message in r.stderr


def test_one_twenty_and_unknown_keywords(model: Path):
    one = search(model, "图书馆")
    assert one.exit_code == 0 and "图书馆" in one.stdout
    twenty = ["图书馆", "市民", "春天", "公园", "工厂", "产量", "法院", "被告", "山顶", "日出",
              "地铁", "线路", "学生", "实验", "研究", "方法", "孩子", "散步", "城市", "居民"]
    many = search(model, " ".join(twenty))
    assert many.exit_code == 0 and all(k in many.stdout for k in twenty)
    unknown = search(model, "-f", "jsonl", "𠀀𠀁 图书馆")
    assert unknown.exit_code == 0
    rec = jsonl(unknown.stdout)[0]
    assert "𠀀𠀁" in rec["outputs"][0]["text"] and "does not know" in rec["warnings"][0]


def test_infill_fixed_variable_and_only_blanks(model: Path):
    r = search(model, "--mode", "infill", "-f", "jsonl", "-n", "2", "今天[MASK]＿很好，我们__。")
    assert r.exit_code == 0, r.output
    for out in jsonl(r.stdout)[0]["outputs"]:
        text = out["text"]
        assert text.startswith("今天") and text[4:].startswith("很好，我们") and text.endswith("。") and len(text) > 10
    only = search(model, "--mode", "infill", "[MASK][MASK]")
    assert only.exit_code == 0 and len(only.stdout.strip()) == 2
    free = search(model, "--mode", "infill", "__")
    assert free.exit_code == 0 and free.stdout.strip()


def test_rewrite_keeps_pinned_words(model: Path):
    r = search(model, "--mode", "rewrite", "--keep", "图书馆、读者", "-f", "jsonl", "今天上午，市图书馆新馆正式向读者开放。")
    assert r.exit_code == 0, r.output
    text = jsonl(r.stdout)[0]["outputs"][0]["text"]
    assert "图书馆" in text and "读者" in text and text != "今天上午，市图书馆新馆正式向读者开放。"


def test_repl_switches_to_search_and_sets_its_options(model: Path):
    script = ":task search\n:set mode=infill steps=4 chains=1 top_k=3\n今天很＿。\n:set mode=keywords\n图书馆 市民\n"
    r = run("repl", "--model", model, "--task", "continue", input=script)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("今天很") and "图书馆" in lines[1]


def test_help_teaches_every_mode():
    r = CliRunner().invoke(app, ["search", "--help"], env={"COLUMNS": "120"})
    assert r.exit_code == 0
    for example in ('textgen search "图书馆 开放 市民"', "--mode infill", "--mode rewrite --keep", "--trace", "--anneal"):
        assert example in r.stdout


@pytest.mark.parametrize("flag", ["--beam", "--top-p", "--repetition-penalty", "--no-repeat-ngram", "--length-penalty",
                                  "--min-new-tokens", "--sample"])
def test_decoding_flags_that_search_does_not_read_are_not_offered(model: Path, flag: str):
    value = [] if flag == "--sample" else ["2"]
    r = search(model, flag, *value, "图书馆")
    assert r.exit_code == 2 and "No such option" in r.stderr and flag in r.stderr
    assert flag not in CliRunner().invoke(app, ["search", "--help"], env={"COLUMNS": "200"}).stdout


def test_a_hugging_face_causal_lm_scores_and_our_model_proposes(model: Path, tmp_path: Path):
    from tiny_models import save_gpt2

    gpt2 = tmp_path / "gpt2"
    save_gpt2(gpt2)
    r = search(gpt2, "--proposer", model, "-f", "jsonl", "图书馆 市民")
    assert r.exit_code == 0, r.output
    rec = jsonl(r.stdout)[0]
    assert "图书馆" in rec["outputs"][0]["text"] and "市民" in rec["outputs"][0]["text"]
    assert rec["search"]["proposals"] == 12
    bad = search(gpt2, "--proposer", gpt2, "图书馆")
    assert bad.exit_code == 1 and "not a BERT-family model" in bad.stderr


def test_hf_scorer_batches_sentences_of_any_length_exactly(tmp_path: Path):
    import torch
    from tiny_models import save_gpt2

    from textgen.search import HFScorer

    model, tok = save_gpt2(tmp_path / "gpt2")
    scorer = HFScorer(model, tok, max_logits=3 * 64 * model.config.vocab_size)  # forces row chunks
    texts = ["白云机场", "广州的白云机场很大", "我们去白云山"]
    together = scorer.sentence_logp(texts)
    alone = torch.cat([scorer.sentence_logp([t]) for t in texts])
    ids = [tok.eos_token_id, *tok("白云机场", add_special_tokens=False)["input_ids"], tok.eos_token_id]
    with torch.no_grad():
        logp = model(torch.tensor([ids])).logits[0, :-1].log_softmax(-1)
    manual = logp.gather(1, torch.tensor(ids[1:])[:, None]).sum()
    assert torch.allclose(together, alone, atol=1e-4) and abs(float(together[0]) - float(manual)) < 1e-4
