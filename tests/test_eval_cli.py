"""`textgen eval lm` and `textgen eval title` end to end with the tiny random model of conftest
(word-mode tokenizer, so tokens and characters differ)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from textgen.cli.eval import app
from textgen.evaluation.lm import lm_cost
from textgen.evaluation.metrics import score_corpus
from textgen.models.backbone import BertBackbone
from textgen.tokenizer import ChineseTokenizer

ARTICLES = [
    ("春天到了，公园里的花都开了，很多市民去散步。", "公园里的花"),
    ("新的地铁线路明年通车，方便居民出行。", "地铁线路明年通车"),
    ("学生们在实验室里认真地做化学实验。", "学生做实验"),
]


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_eval_help_does_not_import_torch():
    code = (
        "import sys; from typer.testing import CliRunner; from textgen.cli.eval import app; "
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
        "r = CliRunner().invoke(app, ['title', '--help']); assert '--unit' in r.output, r.output; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1], check=True)
    assert out.stdout.strip() == "False"


def test_eval_lm_json_matches_the_library(tiny_model, tmp_path):
    texts = ["春天到了，公园里的花都开了。", "学生们在实验室里 认真地做实验。"]
    data = tmp_path / "texts.txt"
    data.write_text(f"{texts[0]}\n\n{texts[1]}\n", encoding="utf-8")
    result = invoke("lm", "--data", data, "--model", tiny_model, "--format", "json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    tok = ChineseTokenizer.from_dir(tiny_model)
    expected = lm_cost(BertBackbone.load(tiny_model), tok, texts)
    assert out["texts"] == 2  # the blank line is not a text
    assert out["chars"] == 14 + 15 == expected.chars  # the space is not counted
    # word tokens: 春天 到 了 ， 公园 里 的 花都 开 了 。 = 11 and 学生 们 在 实验室 里 认真 地 做 实验 。 = 10,
    # plus one end token each
    assert out["tokens"] == 11 + 10 + 2 == expected.tokens
    assert out["bits_per_char"] == pytest.approx(expected.bits_per_char, abs=1e-4)
    assert out["masked_tokens"] == 2 + 2  # round(0.15 * 11) = 2, round(0.15 * 10) = round(1.5) = 2
    assert 0 <= out["masked_accuracy"] <= 1 and out["model"] == str(tiny_model)


def test_eval_lm_table(tiny_model, tmp_path):
    data = tmp_path / "texts.jsonl"
    data.write_text(json.dumps({"text": "公园里的花"}, ensure_ascii=False) + "\n", encoding="utf-8")
    result = invoke("lm", "--data", data, "--model", tiny_model, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "bits / char" in result.stdout and "5 non-whitespace chars" in result.stdout


def _write_jsonl(path: Path) -> Path:
    lines = [json.dumps({"id": f"a{i}", "text": text, "title": ref}, ensure_ascii=False) for i, (text, ref) in enumerate(ARTICLES)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_eval_title_scores_its_own_predictions(tiny_model, tmp_path):
    data = _write_jsonl(tmp_path / "pairs.jsonl")
    preds = tmp_path / "preds.jsonl"
    result = invoke("title", "--data", data, "--model", tiny_model, "--unit", "word", "--format", "json",
                    "--predictions", preds, "--device", "cpu", "--batch-size", "2", "--beam", "1")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["unit"] == "word" and report["n"] == 3 and report["decoding"]["num_beams"] == 1
    rows = [json.loads(line) for line in preds.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["a0", "a1", "a2"]
    assert [r["reference"] for r in rows] == [ref for _, ref in ARTICLES]
    expected = score_corpus([r["prediction"] for r in rows], [r["reference"] for r in rows], "word")
    for metric in ("rouge1", "rouge2", "rougeL", "bleu"):
        assert report[metric] == pytest.approx(getattr(expected, metric))


def test_eval_title_tsv_reads_the_same_pairs(tiny_model, tmp_path):
    # CSL layout: title<TAB>abstract (the defaults --ref-col 0 --text-col 1).
    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{ref}\t{text}\n" for text, ref in ARTICLES), encoding="utf-8")
    tsv = invoke("title", "--data", data, "--model", tiny_model, "--format", "json", "--device", "cpu")
    jsonl = invoke("title", "--data", _write_jsonl(tmp_path / "pairs.jsonl"), "--model", tiny_model, "--format", "json", "--device", "cpu")
    assert tsv.exit_code == 0, tsv.output
    a, b = json.loads(tsv.stdout), json.loads(jsonl.stdout)
    assert a["unit"] == "char" and (a["rouge1"], a["bleu"], a["n"]) == (b["rouge1"], b["bleu"], b["n"])
    limited = invoke("title", "--data", data, "--model", tiny_model, "--format", "json", "--device", "cpu", "--limit", "1")
    assert json.loads(limited.stdout)["n"] == 1
    table = invoke("title", "--data", data, "--model", tiny_model, "--device", "cpu")
    assert "ROUGE-L F1" in table.stdout and "characters" in table.stdout


@pytest.mark.parametrize(
    ("command", "name", "content", "message"),
    [
        ("title", "missing.jsonl", None, "no such file"),
        ("title", "pairs.txt", "标题\t正文\n", "eval title reads .jsonl"),
        ("title", "pairs.jsonl", '{"text": "正文"}\n', "no reference title in field 'title'"),
        ("title", "pairs.jsonl", '{"text": "正文", "title": "标题"}\n{oops\n', "line 2: malformed JSON"),
        ("title", "pairs.tsv", "标题\n", "has 1 columns, no column 1"),
        ("lm", "texts.tsv", "文本\n", "eval lm reads .txt"),
        ("lm", "texts.txt", "\n \n", "no texts to evaluate"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tiny_model, tmp_path, command, name, content, message):
    data = tmp_path / name
    if content is not None:
        data.write_text(content, encoding="utf-8")
    result = invoke(command, "--data", data, "--model", tiny_model)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_unknown_model_is_one_line_and_exit_2(tmp_path):
    data = _write_jsonl(tmp_path / "pairs.jsonl")
    result = invoke("title", "--data", data, "--model", str(tmp_path / "nowhere"))
    assert result.exit_code == 2 and "nowhere" in result.stderr


def test_eval_title_copy_flag_constrains_the_predictions(tiny_model, tmp_path):
    data = _write_jsonl(tmp_path / "pairs.jsonl")
    runs = {}
    for mode in ("text", "off"):
        preds = tmp_path / f"{mode}.jsonl"
        result = invoke("title", "--data", data, "--model", tiny_model, "--format", "json", "--predictions", preds,
                        "--beam", "1", "--copy", mode)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["decoding"]["copy"] == mode
        runs[mode] = [json.loads(line)["prediction"] for line in preds.read_text(encoding="utf-8").splitlines()]
    assert all(set(p.replace(" ", "")) <= set(article) for p, (article, _) in zip(runs["text"], ARTICLES))
    assert not all(set(p) <= set(article) for p, (article, _) in zip(runs["off"], ARTICLES))


def test_eval_lm_windows_default_to_the_trained_context(tiny_model, tmp_path):
    import shutil

    model = tmp_path / "short-context"
    shutil.copytree(tiny_model, model)
    meta = json.loads((model / "textgen.json").read_text(encoding="utf-8"))
    (model / "textgen.json").write_text(json.dumps({**meta, "max_context_tokens": 6}), encoding="utf-8")
    text = "春天到了，公园里的花都开了。"
    data = tmp_path / "texts.txt"
    data.write_text(text + "\n", encoding="utf-8")
    out = json.loads(invoke("lm", "--data", data, "--model", model, "--format", "json").stdout)
    expected = lm_cost(BertBackbone.load(model), ChineseTokenizer.from_dir(model), [text], max_len=6)
    assert out["max_len"] == 6 and out["bits_per_char"] == pytest.approx(expected.bits_per_char, abs=1e-4)
    whole = json.loads(invoke("lm", "--data", data, "--model", tiny_model, "--format", "json").stdout)
    assert whole["max_len"] == 128 and whole["bits_per_char"] != pytest.approx(out["bits_per_char"], abs=1e-3)


def test_eval_title_reports_every_penalty_it_used(tiny_model, tmp_path):
    data = tmp_path / "dev.jsonl"
    row = {"text": "今天上午，市图书馆新馆正式向读者开放，馆内藏书超过一百万册。", "title": "新馆开放"}
    data.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    result = invoke("title", "-m", tiny_model, "--data", data, "--format", "json")
    assert result.exit_code == 0, result.output
    decoding = json.loads(result.stdout)["decoding"]
    assert decoding["repetition_penalty"] == 1.0 and "length_penalty" in decoding
