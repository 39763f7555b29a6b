"""textgen qa's algorithm (textgen.qa) and task, on a tiny random UniLM model.

The random model writes gibberish, so these tests check what must hold for any model: answers
are spans of the passage at their offsets, no duplicates, question marks, windows that cover long
passages, the decoding after a target prefix and the round-trip score computed exactly, errors
for bad records while the batch goes on.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import SENTENCES, load_task, save_tiny_model, task_config

from textgen.io import Record
from textgen.models.backbone import BertBackbone
from textgen.models.families import load_adapter
from textgen.output import Output, format_text
from textgen.qa.check import answer_log_prob
from textgen.qa.pairs import QAPair, as_question, is_duplicate
from textgen.qa.prefill import TargetPrefix
from textgen.qa.rule import rule_question
from textgen.qa.script import simplify
from textgen.qa.spans import Spelling
from textgen.qa.windows import answer_window, tiles
from textgen.tasks import TASKS
from textgen.tokenizer import ChineseTokenizer, build_vocab

PASSAGE = "".join(SENTENCES)  # under 200 characters: one window
LONG = PASSAGE * 3  # several windows


@pytest.fixture(scope="module")
def qa_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model serving qa whose [SEP] is likely enough that answers and questions end, with
    weights large enough that its outputs depend on the input (else every question is the same)."""
    path = save_tiny_model(tmp_path_factory.mktemp("qa") / "tiny-qa", tasks=["title", "qa"], name="tiny-qa")
    model = BertBackbone.load(path)
    sep = ChineseTokenizer.from_dir(path).sep_id
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3, generator=generator)
        model.head_bias[sep] = 6.0
    model.save(path)
    return path


def config(**overrides):
    return task_config("qa", {"seed": 0, "min_new_tokens": 2, **overrides})


# ---------------------------------------------------------------------- windows, spans, pairs
def test_tiles_cover_a_long_passage_with_overlapping_training_windows():
    text = "".join(chr(0x4E00 + i % 500) for i in range(1234))
    ws = tiles(text, size=200, overlap=50)
    assert all(w.text == text[w.offset : w.offset + len(w.text)] and len(w.text) == 200 for w in ws)
    assert ws[0].offset == 0 and ws[-1].offset + 200 == len(text)
    assert all(b.offset - a.offset <= 150 for a, b in zip(ws, ws[1:]))  # neighbours share >= 50 characters
    assert tiles("短文本", size=200) == [answer_window("短文本", 0, 0)]
    w = answer_window(text, 700, 5)
    assert w.offset <= 700 and 705 <= w.offset + len(w.text) and abs((700 - w.offset) - (w.offset + 200 - 705)) <= 1


def test_locate_maps_the_tokens_spelling_back_to_the_users_characters():
    tok = ChineseTokenizer(build_vocab(["馆内藏书超过一百万册", "New York 与 “北京”"], min_char_count=1, min_word_count=1), mode="char")
    adapter = SimpleNamespace(tokenizer=tok)
    window = "他说：New York 的“北京”馆内藏书超过一百万册。"
    spelling = Spelling(adapter, window)
    ids = lambda text: tok.encode(text)  # noqa: E731
    lo, hi = spelling.locate(adapter, ids("new york"))  # lowercased, the space not spelled
    assert window[lo:hi] == "New York"
    lo, hi = spelling.locate(adapter, ids("“北京”"))
    assert window[lo:hi] == "“北京”"
    lo, hi = spelling.locate(adapter, ids("一百万册。"))  # the full stop is not part of an answer
    assert window[lo:hi] == "一百万册"
    assert spelling.locate(adapter, ids("上海")) is None and spelling.locate(adapter, ids("。")) is None


def test_an_answer_inside_a_word_is_widened_to_the_word():
    tok = ChineseTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "都江堰", "都", "江", "堰", "在", "四川", "四", "川", "，"], mode="word")
    adapter = SimpleNamespace(tokenizer=tok)
    assert [tok.token_text(t) for t in tok.encode("都江堰在四川")] == ["都江堰", "在", "四川"]
    spelling = Spelling(adapter, "都江堰在四川")
    assert spelling.locate(adapter, tok.encode("江")) == (0, 3)  # inside 都江堰: the whole word
    assert spelling.locate(adapter, tok.encode("堰在四")) == (0, 6)
    assert spelling.locate(adapter, tok.encode("在")) == (3, 4)
    # an occurrence on token boundaries wins over an earlier one inside a word
    assert Spelling(adapter, "都江堰在四川，江堰").locate(adapter, tok.encode("江")) == (7, 8)


def test_duplicates_are_same_answers_overlapping_spans_or_near_identical_questions():
    a = QAPair("大熊猫主要生活在哪里？", "四川", 10, -1.0)
    assert is_duplicate(QAPair("别的问题吗？", "四 川。", 40, -2.0), [a])  # same answer text
    assert is_duplicate(QAPair("哪三个省？", "四川、陕", 10, -2.0), [a])  # half of the shorter answer overlaps
    assert is_duplicate(QAPair("大熊猫主要生活在哪儿？", "山区", 30, -2.0), [a])  # near-identical question
    assert not is_duplicate(QAPair("大熊猫每天吃多少竹子？", "十几公斤", 50, -2.0), [a])
    assert as_question("，大熊猫吃什么。") == "大熊猫吃什么？" and as_question("Why?") == "Why?"
    assert as_question("，。") == "" and as_question("？") == ""  # nothing asked


def test_choice_takes_each_windows_best_in_turn_after_dropping_duplicates():
    from textgen.qa.generator import _spread

    def pair(q, a, start, score):
        return QAPair(q, a, start, score)

    items = [(0, pair("甲在哪？", "北京", 0, -1.0)),  # the same answer as a better pair: dropped
             (0, pair("丁在哪儿？", "上海", 20, -1.2)),  # near-identical to a better question: dropped
             (0, pair("乙是谁？", "李冰", 10, -1.5)),
             (1, pair("丙有多少？", "一百", 300, -3.0)), (1, pair("丁在哪？", "北京", 320, -0.5))]
    assert [(k, p.answer) for k, p in _spread(items, 5, is_duplicate)] == [(1, "北京"), (0, "李冰"), (1, "一百")]
    # each window's best comes before any window's second best
    turns = [(0, pair("甲？", "甲", 0, -0.1)), (0, pair("乙？", "乙", 9, -0.2)), (1, pair("丙？", "丙", 300, -0.3))]
    assert [p.answer for _, p in _spread(turns, 2, is_duplicate)] == ["甲", "丙"]


def test_rule_baseline_replaces_the_answer_in_its_sentence():
    passage = "乔戈里峰很高。世界第二高山峰是乔戈里峰，海拔8611米。它在喀喇昆仑山脉。"
    start = passage.index("乔戈里峰，")
    assert rule_question(passage, "乔戈里峰", start) == "世界第二高山峰是什么，海拔8611米？"
    assert rule_question(passage, "乔戈里峰", 0) == "什么很高？"


def test_traditional_passages_keep_their_offsets():
    script = simplify("臺灣的電腦螢幕很大。")
    assert script.traditional and script.text == "台湾的电脑萤幕很大。" and len(script.text) == len(script.original)
    assert script.question("这是什么问题？") == "這是什麼問題？"
    assert not simplify(PASSAGE).traditional


def test_one_rare_character_leaves_a_simplified_passage_in_its_script():
    """The script is decided on the whole passage: 於 (a surname, which t2s turns into 于) in a
    simplified passage changes nothing; a passage in traditional characters is still converted."""
    passage = "记者於晓明报道：" + PASSAGE
    script = simplify(passage)
    assert not script.traditional and script.text == passage
    assert script.question("这是什么问题？") == "这是什么问题？"
    traditional = simplify("臺北市立圖書館的新館今天開放，館內藏書超過一百萬冊，很多讀者一早就來了。")
    assert traditional.traditional and traditional.text.startswith("台北市立图书馆的新馆今天开放")
    assert len(traditional.text) == len(traditional.original)
    assert simplify("圖書館").traditional  # a short text (an answer) whose characters are mostly traditional
    assert not simplify("他在大學教中文和日文。").traditional  # one character of ten: too few to tell


# ---------------------------------------------------------------------- decoding pieces
def test_target_prefix_continues_exactly_as_a_full_forward_pass(qa_model):
    adapter = load_adapter(qa_model, "seq2seq")
    tok, model = adapter.tokenizer, adapter.model
    sources = [tok.encode(SENTENCES[0]), tok.encode(SENTENCES[3])]
    prefixes = [[*tok.encode("市图书馆"), tok.sep_id], [*tok.encode("春天到了，公园"), tok.sep_id]]  # different lengths
    wrapped = TargetPrefix(adapter, prefixes)
    with torch.inference_mode():
        logits, state = wrapped.start(sources, 4)
        nxt = torch.tensor([tok.encode("学生")[0]] * 2)
        logits2, _ = wrapped.step(state, nxt)
        for row, (src, prefix) in enumerate(zip(sources, prefixes)):
            for extra, got in (([], logits), ([int(nxt[row])], logits2)):
                ids = [tok.cls_id, *src, tok.sep_id, *prefix, *extra]
                types = [0] * (len(src) + 2) + [1] * (len(prefix) + len(extra))
                full = model(torch.tensor([ids]), mode="unilm", token_type_ids=torch.tensor([types]))[0, -1]
                assert torch.allclose(got[row], full, atol=1e-4)


def test_round_trip_score_is_the_readers_mean_answer_log_prob(qa_model):
    adapter = load_adapter(qa_model, "seq2seq")
    tok, model = adapter.tokenizer, adapter.model
    rows = [(SENTENCES[0], "新馆开放", "市图书馆"), (SENTENCES[4], "法院", "违约")]
    sources, questions, answers = ([tok.encode(r[k]) for r in rows] for k in range(3))
    scores = answer_log_prob(adapter, sources, questions, answers)
    for (src, q, a), score in zip(zip(sources, questions, answers), scores):
        ids = [tok.cls_id, *src, tok.sep_id, *q, tok.sep_id, *a, tok.sep_id]
        types = [0] * (len(src) + 2) + [1] * (len(q) + len(a) + 2)
        with torch.no_grad():
            logp = model(torch.tensor([ids]), mode="unilm", token_type_ids=torch.tensor([types]))[0].log_softmax(-1)
        scored = range(len(ids) - len(a) - 1, len(ids))
        assert score == pytest.approx(sum(float(logp[p - 1, ids[p]]) for p in scored) / len(scored), abs=1e-4)


# ---------------------------------------------------------------------- the task
def test_free_generation_gives_span_answers_distinct_pairs_and_question_marks(qa_model):
    task = load_task("qa", qa_model, model="tiny-qa")
    short, long = task.run([Record("s", PASSAGE), Record("l", LONG)], config(num_return_sequences=4))
    for rec, out in ((PASSAGE, short), (LONG, long)):
        pairs = out.pairs
        assert all(isinstance(p, QAPair) for p in pairs) and 1 <= len(pairs) <= 4
        assert len(pairs) == 4 or f"{len(pairs)} of 4 pairs" in " ".join(out.warnings)
        for k, p in enumerate(pairs):
            assert rec[p.start : p.start + len(p.answer)] == p.answer  # a span, at its offset
            assert p.question.endswith("？") and len(p.question) > 1
            assert not is_duplicate(p, pairs[:k])
        assert [p.score for p in pairs] == sorted((p.score for p in pairs), reverse=True)
    assert len(tiles(LONG)) > 1
    assert max(p.start for p in long.pairs) - min(p.start for p in long.pairs) > 200  # from several parts


def test_answer_aware_records_and_bad_ones_in_one_batch(qa_model):
    task = load_task("qa", qa_model, model="tiny-qa")
    twice = SENTENCES[0] + SENTENCES[5] + SENTENCES[0]
    records = [
        Record(1, PASSAGE, fields={"answer": "市图书馆"}),
        Record(2, twice, fields={"answer": "市图书馆", "answer_start": len(SENTENCES[0] + SENTENCES[5]) + 5}),
        Record(3, PASSAGE, fields={"answer": ["地铁线路", "化学实验"]}),
        Record(4, PASSAGE, fields={"answer": "不在文中"}),
        Record(5, PASSAGE, fields={"answer": "  "}),
        Record(6, "你好。"),
        Record(7, PASSAGE, fields={"answer": 7}),
        Record(8, PASSAGE, fields={"answer": []}),
    ]
    out = task.run(records, config())
    assert out[0].pairs[0].answer == "市图书馆" and out[0].pairs[0].start == PASSAGE.index("市图书馆")
    assert out[1].pairs[0].start == len(SENTENCES[0] + SENTENCES[5]) + 5 and out[1].warnings == []
    assert "warnings" not in out[1].to_dict()
    assert [p.answer for p in out[2].pairs] == ["地铁线路", "化学实验"]
    assert all(p.question.endswith("？") for o in out[:3] for p in o.pairs)
    assert "is not in the passage" in out[3].error and "empty" in out[4].error
    assert "too short" in out[5].error and "string or a list of strings" in out[6].error
    assert "empty list" in out[7].error
    assert all(o.pairs == [] and o.to_dict()["pairs"] == [] and "outputs" not in o.to_dict() for o in out[3:])
    # --answer asks every record about the same answer; a repeated answer is asked at its first place, said so
    task = task.with_options(answer="市图书馆")
    (only,) = task.run([Record(9, twice)], config())
    assert only.pairs[0].start == 5 and "occurs 2 times" in only.warnings[0]


def test_traditional_passage_gets_answers_from_its_own_characters(qa_model):
    task = load_task("qa", qa_model, model="tiny-qa", answer="圖書館")
    passage = "今天上午，市圖書館新館正式向讀者開放。" + PASSAGE
    (out,) = task.run([Record(1, passage)], config())
    pair = out.pairs[0]
    assert pair.answer == "圖書館" and passage[pair.start : pair.start + 3] == "圖書館"


def test_questions_about_a_simplified_passage_with_one_rare_character_stay_simplified(qa_model):
    import opencc

    t2s = opencc.OpenCC("t2s").convert
    task = load_task("qa", qa_model, model="tiny-qa")
    (out,) = task.run([Record(1, "记者於晓明报道：" + PASSAGE)], config(num_return_sequences=4))
    assert out.pairs and all(p.question == t2s(p.question) for p in out.pairs), [p.question for p in out.pairs]


def test_source_prefixes_come_from_the_models_textgen_json(qa_model, tmp_path):
    import shutil

    model = tmp_path / "prefixed"
    shutil.copytree(qa_model, model)
    meta = json.loads((model / "textgen.json").read_text(encoding="utf-8"))
    meta["source_prefix"] = {"qa": "问答：", "qa_check": "阅读：", "title": 3}
    (model / "textgen.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    task = load_task("qa", model, model="m")
    assert task.model_dir.source_prefix == {"qa": "问答：", "qa_check": "阅读："}
    assert (task.driver().qa_prefix, task.driver().check_prefix) == ("问答：", "阅读：")  # what the generator reads
    assert load_task("qa", qa_model, model="m").driver().qa_prefix == ""


NUMBERS = ["工厂去年生产了2023吨钢，比前年多了18.5吨。", "新馆藏书120万册，每天接待3000名读者。", "地铁线路长45公里，设有12个车站。"]


@pytest.fixture(scope="module")
def number_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model with a copy head whose output layer favours tokens with digits: left free, its
    questions hold numbers the passage does not have."""
    from textgen.models.backbone import BertConfig

    path = tmp_path_factory.mktemp("numbers") / "tiny-numbers"
    tok = ChineseTokenizer(build_vocab(SENTENCES + NUMBERS + ["7 9 5 64 88"], min_char_count=1, min_word_count=1), mode="word")
    torch.manual_seed(0)
    model = BertBackbone(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=64, max_position_embeddings=128, copy_head=True))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
        model.head_bias[tok.sep_id] = 5.0
        for i in range(len(tok)):
            if any(c.isdigit() for c in tok.token_text(i)):
                model.head_bias[i] = 3.0
    model.save(path)
    tok.save(path)
    (path / "textgen.json").write_text(json.dumps({"name": "tiny-numbers", "tasks": ["qa"]}), encoding="utf-8")
    return path


@pytest.mark.parametrize("copy", ["numbers", "head"])
def test_questions_never_hold_a_number_the_passage_lacks(number_model, copy):
    from textgen.evaluation.metrics import unfaithful_numbers

    passage = "".join(NUMBERS)
    answers = ["工厂", "钢", "新馆", "读者", "地铁线路", "车站"]
    records = [Record(i, passage, fields={"answer": a}) for i, a in enumerate(answers)]
    faithful = load_task("qa", number_model, model="m", copy=copy).run(records, config(max_new_tokens=8))
    free = load_task("qa", number_model, model="m", copy="off").run(records, config(max_new_tokens=8))
    questions = lambda outs: [p.question for o in outs for p in o.pairs]  # noqa: E731
    assert len(questions(faithful)) == len(answers)
    assert not any(unfaithful_numbers(q, passage) for q in questions(faithful))
    assert any(unfaithful_numbers(q, passage) for q in questions(free))  # the rule is what keeps them out


def test_text_output_is_one_question_answer_block_per_pair():
    out = Output(1, "qa", "m", pairs=[QAPair("甲？", "乙", 0, -1.0), QAPair("丙？", "丁", 3, -2.0)])
    assert format_text(out) == "问：甲？\n答：乙\n问：丙？\n答：丁\n\n"
    assert format_text(Output(2, "qa", "m", pairs=[], error="x")) == "\n"


def test_question_beams_must_be_positive():
    with pytest.raises(ValueError, match="question_beams must be at least 1"):
        TASKS["qa"].check_option("question_beams", 0)


def test_a_model_that_cannot_write_answer_sep_question_is_refused_at_load():
    from textgen.models.loaded import Model
    from textgen.models.model_dir import ModelDir
    from textgen.tasks.qa import QATask

    model = Model("gpt", ModelDir(Path("gpt"), "gpt"), SimpleNamespace(name="gpt"))  # e.g. a Hugging Face model's adapter
    with pytest.raises(ValueError, match="qa needs a UniLM model in textgen's BERT format.*gpt is a SimpleNamespace"):
        QATask(model)
