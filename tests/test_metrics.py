"""ROUGE/BLEU against cases worked out by hand (the arithmetic is in the comments)."""

import math

import pytest

from textgen.evaluation.metrics import MetricReport, score_corpus, score_pair, tokenize


def test_char_scores_clip_repeated_characters():
    # pred 今 天 天 气 很 好, ref 今 天 天 气 不 错: 6 tokens each.
    # ROUGE-1: overlap clipped by count = 今1 + 天2 + 气1 = 4 -> P = R = 4/6 -> F = 66.67
    #          (a set-based ROUGE would count 今 天 气 = 3 of 5 distinct and give 60).
    # ROUGE-2: pred 今天 天天 天气 气很 很好 vs ref 今天 天天 天气 气不 不错 -> 3/5 -> 60
    # ROUGE-L: LCS 今天天气 = 4 -> 4/6 -> 66.67
    # BLEU-4:  p1 = 4/6, p2 = 3/5, p3 = 2/4 (今天天 天天气), p4 = 1/3 (今天天气), BP = 1 (6 vs 6)
    #          -> (4/6 * 3/5 * 2/4 * 1/3) ** (1/4) = (1/15) ** 0.25 = 0.50813
    s = score_pair("今天天气很好", "今天天气不错", "char")
    assert s["rouge1"] == pytest.approx(200 / 3)
    assert s["rouge2"] == pytest.approx(60.0)
    assert s["rougeL"] == pytest.approx(200 / 3)
    assert s["bleu"] == pytest.approx(100 * (1 / 15) ** 0.25)


def test_char_bleu_smoothing_and_brevity_penalty():
    # pred 天 气 (2 tokens) vs ref 今 天 天 气 不 错 (6 tokens).
    # p1 = 2/2, p2 = 1/1, no 3- or 4-grams: method1 turns 0/1 into 0.1/1 for both.
    # BP = exp(1 - 6/2) = exp(-2) -> BLEU = exp(-2) * (1 * 1 * 0.1 * 0.1) ** 0.25 = 0.04280
    # ROUGE-1: P = 2/2, R = 2/6 -> F = 2 * 1 * (1/3) / (4/3) = 0.5; ROUGE-2: P = 1, R = 1/5 -> 1/3
    s = score_pair("天气", "今天天气不错", "char")
    assert s["bleu"] == pytest.approx(100 * math.exp(-2) * 0.1**0.5)
    assert s["rouge1"] == pytest.approx(50.0)
    assert s["rouge2"] == pytest.approx(100 / 3)
    assert s["rougeL"] == pytest.approx(50.0)


def test_word_scores():
    pred, ref = "深度学习的文本生成方法研究", "基于深度学习的中文文本摘要方法"
    assert tokenize(pred, "word") == ["深度", "学习", "的", "文本", "生成", "方法", "研究"]
    assert tokenize(ref, "word") == ["基于", "深度", "学习", "的", "中文", "文本", "摘要", "方法"]
    # ROUGE-1: overlap 深度 学习 的 文本 方法 = 5, P = 5/7, R = 5/8 -> F = 2*5/(7+8) = 66.67
    # ROUGE-2: pred has 6 bigrams, ref 7; shared 深度学习, 学习的 -> F = 2*2/(6+7) = 30.77
    # ROUGE-L: LCS 深度 学习 的 文本 方法 = 5 -> same as ROUGE-1
    # BLEU-4:  p1 = 5/7, p2 = 2/6, p3 = 1/5 (深度学习的), p4 = 0/4 -> 0.1/4 = 0.025,
    #          BP = exp(1 - 8/7) -> exp(-1/7) * (5/7 * 1/3 * 1/5 * 0.025) ** 0.25 = 0.16102
    s = score_pair(pred, ref, "word")
    assert s["rouge1"] == pytest.approx(200 / 3)
    assert s["rouge2"] == pytest.approx(400 / 13)
    assert s["rougeL"] == pytest.approx(200 / 3)
    assert s["bleu"] == pytest.approx(100 * math.exp(-1 / 7) * (0.025 / 21) ** 0.25)


def test_units_lowercase_and_drop_whitespace():
    assert tokenize("BERT 模型\t很好", "char") == list("bert模型很好")
    assert tokenize("BERT 模型", "word") == ["bert", "模型"]
    assert score_pair("A B", "ab", "char")["rouge1"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="unit"):
        tokenize("模型", "byte")


def test_corpus_mean_counts_empty_predictions_as_zero():
    # sample 1 identical (6 chars: every metric 100, BLEU too since all 4-gram orders match);
    # sample 2 empty prediction: 0 everywhere. Mean over n = 2 -> 50.
    report = score_corpus(["今天 天气很好", ""], ["今天天气很好", "明天下雨"], "char")
    assert isinstance(report, MetricReport)
    assert report.n == 2 and report.unit == "char"
    for metric in ("rouge1", "rouge2", "rougeL", "bleu"):
        assert getattr(report, metric) == pytest.approx(50.0)
    d = report.to_dict()
    assert d["unit"] == "char" and "rouge-score" in d["implementation"] and "nltk" in d["implementation"]


def test_corpus_rejects_misaligned_input():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        score_corpus(["a", "b"], ["a"], "char")
    with pytest.raises(ValueError, match="nothing to score"):
        score_corpus([], [], "word")
