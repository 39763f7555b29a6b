"""The trigram Kneser-Ney baseline: exact normalisation and a hand-computed toy corpus."""

import math

import pytest

from textgen.evaluation.ngram import BOS, EOS, UNK, TrigramKN

TEXTS = ["今天天气很好，我们去公园散步。", "今天下雨，我们在家看书。", "明天天气很好。", "公园里人很多"]


@pytest.mark.parametrize(
    "context",
    [BOS + BOS, BOS + "今", "今天", "天气", "很好", "好。", "气好", "甲乙", UNK + UNK, "书" + EOS],
    ids=["start", "after-first", "seen", "seen2", "seen3", "end", "unseen-trigram", "unknown-chars", "unk", "after-end"],
)
def test_probabilities_sum_to_one_over_vocabulary_unknown_and_end(context):
    model = TrigramKN.train(TEXTS, min_count=1)
    assert model.symbols == model.vocab | {UNK, EOS}
    assert math.fsum(model.prob(w, context) for w in model.symbols) == pytest.approx(1.0, abs=1e-12)


def test_toy_corpus_by_hand():
    # Texts "ab", "ac" -> streams B B a b E and B B a c E (B = begin, E = end).
    # Trigrams: BBa x2, Bab, abE, Bac, acE. Continuation counts N(.vw): Ba 1, ab 1, bE 1, ac 1, cE 1.
    # Unigram level: N(.a) = N(.b) = N(.c) = 1, N(.E) = 2; N(..) = 5, T1 = 4, |V| = 5 (a b c UNK E):
    #   P1(a) = (0.25 + 0.75*4/5) / 5 = 0.17, P1(E) = (1.25 + 0.6) / 5 = 0.37, P1(UNK) = 0.6/5 = 0.12
    # P(a|BB): P2(a|B) = (0.25 + 0.75*1*0.17) / 1 = 0.3775; P3 = (2 - 0.75 + 0.75*1*0.3775) / 2 = 0.7665625
    # P(b|Ba): P2(b|a) = (0.25 + 0.75*2*0.17) / 2 = 0.2525;  P3 = (0.25 + 0.75*2*0.2525) / 2 = 0.314375
    # P(E|ab): P2(E|b) = (0.25 + 0.75*1*0.37) / 1 = 0.5275;  P3 = (0.25 + 0.75*1*0.5275) / 1 = 0.645625
    model = TrigramKN.train(["ab", "ac"], min_count=1)
    assert model.prob("a", BOS + BOS) == pytest.approx(0.7665625)
    assert model.prob("b", BOS + "a") == pytest.approx(0.314375)
    assert model.prob(EOS, "ab") == pytest.approx(0.645625)
    assert model.prob(UNK, "zz") == pytest.approx(0.12)  # unseen contexts fall through to P1
    cost = model.cost(["a b"])  # whitespace is not a character
    assert cost.bits == pytest.approx(-math.log2(0.7665625 * 0.314375 * 0.645625))
    assert (cost.chars, cost.tokens) == (2, 3)


def test_rare_characters_become_the_unknown_symbol():
    model = TrigramKN.train(["aab", "ac"], min_count=2)
    assert model.vocab == {"a"}
    assert model.prob("z", "aa") == model.prob("b", "aa") == model.prob(UNK, "aa")
    assert model.unknown_rate(["ab", "zz"]) == pytest.approx(3 / 4)


def test_trained_text_is_cheaper_than_unseen_text():
    model = TrigramKN.train(TEXTS, min_count=1)
    assert model.bits_per_char(["今天天气很好"]) < model.bits_per_char(["好很气天天今"])
    with pytest.raises(ValueError, match="discount"):
        TrigramKN.train(TEXTS, discount=1.0)
