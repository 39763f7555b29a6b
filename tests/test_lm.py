"""Bits per character and masked-token accuracy of a tiny random backbone, checked by hand."""

import math

import pytest
import torch

from textgen.evaluation.lm import counted_chars, lm_cost, masked_lm_score
from textgen.models.backbone import BertBackbone, BertConfig
from textgen.tokenizer import ChineseTokenizer, build_vocab

# Character mode, so token counts below can be read off the texts.
SENTENCES = ["今天天气很好，我们去公园散步。", "深度学习的文本生成方法研究", "自然语言处理很有趣。", "模型在测试集上取得了较好的结果"]


def tiny_backbone(vocab_size: int, seed: int = 0) -> BertBackbone:
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    return BertBackbone(cfg).eval()


@pytest.fixture(scope="module")
def tok():
    return ChineseTokenizer(build_vocab(SENTENCES, min_char_count=1, min_word_count=1), mode="char")


@pytest.fixture(scope="module")
def model(tok):
    return tiny_backbone(len(tok))


def _window_bits(model, inputs: list[int], targets: list[int]) -> float:
    """Cost in bits of ``targets`` given causal inputs, straight from the logits."""
    with torch.no_grad():
        logits = model(torch.tensor([inputs]), mode="causal")[0]
    logp = torch.log_softmax(logits, -1)
    return -sum(float(logp[t, y]) for t, y in enumerate(targets)) / math.log(2)


def test_counted_chars_drop_whitespace_only():
    assert counted_chars(" 今天 天气\t很好，\n ok ") == "今天天气很好，ok"


def test_bits_per_char_equals_sum_from_logits(model, tok):
    text = "今天 天气很好"  # 6 counted characters; the space is not one
    ids = tok.encode(text)
    # [CLS] t1..t6 predicts t1..t6 and the closing [SEP]: 7 predictions.
    expected = _window_bits(model, [tok.cls_id, *ids], [*ids, tok.sep_id]) / 6
    assert lm_cost(model, tok, [text]).bits_per_char == pytest.approx(expected, rel=1e-5)
    cost = lm_cost(model, tok, [text])
    assert (cost.chars, cost.tokens) == (6, 7)


def test_long_text_is_cut_into_windows_that_restart_at_cls(model, tok):
    text = "今天天气很好"
    s = [*tok.encode(text), tok.sep_id]  # 7 targets; max_len 4 -> windows of 4 and 3 predictions
    expected = _window_bits(model, [tok.cls_id, *s[0:3]], s[0:4]) + _window_bits(model, [tok.cls_id, *s[4:6]], s[4:7])
    assert lm_cost(model, tok, [text], max_len=4).bits == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="max_len"):
        lm_cost(model, tok, [text], max_len=65)


def test_padding_and_batching_do_not_change_the_cost(model, tok):
    texts = ["今天天气很好，我们去公园散步。", "模型", "", "自然语言处理很有趣。"]
    one = lm_cost(model, tok, texts, batch_size=1)
    four = lm_cost(model, tok, texts, batch_size=4)
    assert four.bits == pytest.approx(one.bits, rel=1e-5)
    # The empty text still pays for its [SEP]; its zero characters add nothing to the divisor.
    assert one.tokens == sum(len(tok.encode(t)) + 1 for t in texts)
    assert one.chars == sum(len(counted_chars(t)) for t in texts)


def test_random_model_costs_about_log2_vocab_bits_per_token(model, tok):
    # Initial weights (std 0.02) give nearly flat logits: about log2(V) bits for every token.
    cost = lm_cost(model, tok, ["深度学习的文本生成方法研究", "基于深度学习的中文文本摘要方法"])
    assert cost.bits_per_token == pytest.approx(math.log2(len(tok)), abs=0.1)


def test_masked_accuracy_counts_restored_originals(tok):
    model = tiny_backbone(len(tok))
    good = tok.token_to_id["好"]
    with torch.no_grad():
        model.head_bias[good] = 100.0  # the model answers 好 at every position
    # 10 ordinary tokens -> round(1.5) = 2 masked, all originally 好: 2 correct;
    # 6 ordinary tokens  -> round(0.9) = 1 masked, never 好: 0 correct. Accuracy 2/3.
    score = masked_lm_score(model, tok, ["好" * 10, "深度学习方法"], seed=3)
    assert (score.correct, score.masked) == (2, 3)
    assert masked_lm_score(model, tok, ["好" * 10, "深度学习方法"], seed=3).accuracy == pytest.approx(2 / 3)
    assert model.training is False


def test_masked_accuracy_is_deterministic_per_seed(model, tok):
    texts = ["今天天气很好，我们去公园散步。", "模型在测试集上取得了较好的结果"]
    a = masked_lm_score(model, tok, texts, seed=1)
    assert a == masked_lm_score(model, tok, texts, seed=1)
    assert a.masked == 2 + 2  # 15 and 15 ordinary tokens -> round(2.25) = 2 each
    with pytest.raises(ValueError, match="mask_prob"):
        masked_lm_score(model, tok, texts, mask_prob=1.0)


def test_training_mode_is_restored(tok):
    model = tiny_backbone(len(tok)).train()
    lm_cost(model, tok, ["模型"])
    assert model.training is True
