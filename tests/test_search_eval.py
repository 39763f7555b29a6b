"""Evaluating keyword-to-sentence search: the held-out split built from CSL keyword files (our own
stand-in files here), the metrics, and `textgen eval search` on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SENTENCES, save_tiny_model
from textgen.cli.app import app
from typer.testing import CliRunner

from textgen.search.evaluate import coverage, distinct_ratio, judge_corpus, repeated_trigrams
from textgen.search.heldout import keyword_sets, sentences


def test_sentences_split_at_sentence_ends_but_not_decimals():
    text = "温度升高了3.5度.结果表明,方法有效。下一句？最后;"
    assert sentences(text) == ["温度升高了3.5度.", "结果表明,方法有效。", "下一句？", "最后;"]


def test_keyword_sets_follow_the_fixed_split(tmp_path: Path):
    kg, ts = [], []
    for k in range(20):
        title = f"第{k}篇论文的标题"
        abstract = f"本文研究了城市公园的管理方法{k}.城市公园与市民健康和绿地规划有关,我们提出了新的评价体系."
        kg.append(f"to keywords\t{abstract} {title}\t城市公园_市民健康_绿地规划_城市_不在文中的词")
        ts.append(f"to title\t{abstract}\t{title}")
    (tmp_path / "csl_kg_dev.tsv").write_text("\n".join(kg) + "\n", encoding="utf-8")
    (tmp_path / "csl_ts_dev.tsv").write_text("\n".join(ts) + "\n", encoding="utf-8")
    dev, test = keyword_sets("dev", tmp_path), keyword_sets("test", tmp_path)
    assert [s.id for s in dev] == ["csl-kg-dev-0", "csl-kg-dev-10"]
    assert [s.id for s in test] == ["csl-kg-test-1", "csl-kg-test-11"]
    # The sentence with the most keywords; 城市 is dropped (inside 城市公园), the absent one never used.
    assert test[0].keywords == ["城市公园", "市民健康", "绿地规划"]
    assert test[0].reference == "城市公园与市民健康和绿地规划有关,我们提出了新的评价体系."
    assert keyword_sets("test", tmp_path, min_keywords=4) == []
    with pytest.raises(ValueError, match="split"):
        keyword_sets("train", tmp_path)


def test_metrics_catch_missing_keywords_and_repetition():
    assert coverage("图书馆向市民开放。", ["图书馆", "市民", "春节"]) == pytest.approx(2 / 3)
    assert distinct_ratio("的的的的") == 0.25 and distinct_ratio("图书 馆") == 1.0
    assert repeated_trigrams("我们的我们的") == 0.5  # 我们的 twice among the four trigrams
    assert repeated_trigrams("图书馆开放") == 0.0
    assert judge_corpus(["甲乙丙。图书馆向市民开放。", "别的文本"], ["图书馆向市民开放。"]) == ["别的文本"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-search", tasks=["search"])


def test_eval_search_reports_every_metric(model: Path, tmp_path: Path):
    data = tmp_path / "sets.jsonl"
    rows = [{"id": "a", "keywords": ["图书馆", "读者"], "reference": SENTENCES[0]},
            {"keywords": ["公园", "市民"], "reference": SENTENCES[2]}]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    judge = tmp_path / "judge.txt"
    judge.write_text("\n".join(SENTENCES * 3), encoding="utf-8")
    preds = tmp_path / "preds.jsonl"
    r = CliRunner().invoke(app, ["eval", "search", "--data", str(data), "-m", str(model), "--judge-data", str(judge),
                                 "--steps", "4", "--chains", "2", "--top-k", "4", "--predictions", str(preds), "-f", "json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["sets"] == 2 and result["coverage"] == 1.0 and result["all_keywords"] == 1.0
    assert set(result["bits_per_char"]) == {"output", "concatenation", "reference"}
    assert "2 holding a reference dropped" not in result["judge"] and "6 holding a reference dropped" in result["judge"]
    assert result["proposals"] == 16 and result["proposals_per_second"] > 0
    assert [json.loads(line)["id"] for line in preds.read_text(encoding="utf-8").splitlines()] == ["a", "2"]


@pytest.mark.parametrize("line, message", [('{"keywords": [], "reference": "句子。"}', "list of non-empty strings"),
                                           ('{"keywords": ["词"]}', "needs \"reference\""), ("{oops", "malformed JSON")])
def test_eval_search_bad_data_is_a_usage_error(model: Path, tmp_path: Path, line: str, message: str):
    data = tmp_path / "bad.jsonl"
    data.write_text(line + "\n", encoding="utf-8")
    r = CliRunner().invoke(app, ["eval", "search", "--data", str(data), "-m", str(model), "--judge-data", str(data)])
    assert r.exit_code == 2 and message in r.stderr
