"""The characters-plus-words tokenizer: word units, clean decoding, HF-compatible vocabularies."""

from __future__ import annotations

from pathlib import Path

import pytest

from textgen.tokenizer import SPECIAL_TOKENS, ChineseTokenizer, build_vocab, read_vocab

GOOGLE_VOCAB = Path(__file__).resolve().parents[2] / "shared" / "data" / "google_zh_vocab.txt"

# Our own sentences: mixed Chinese, English words, numbers, full-width and ASCII punctuation.
MIXED = [
    "我用Python 3.11写了一个程序，花了20分钟！",
    "Hello World是第一个程序。",
    "2024年GDP增长5.2%，比去年高。",
    "他说：“明天见。”然后走了……",
    "机器学习（machine learning）很有用；深度学习更强。",
]
COMMON = (
    "今天上午，市政府召开新闻发布会，介绍了今年经济运行的总体情况。"
    "记者从会上了解到，全市居民人均可支配收入同比增长百分之六点五，消费市场持续回暖。"
    "研究人员提出了一种基于深度学习的方法，实验结果表明该方法有效。"
)

PUNCT = "今天，我们去公园；明天（周六）不去！"


@pytest.fixture(scope="module")
def word_tok() -> ChineseTokenizer:
    corpus = MIXED + [COMMON] * 3 + ["广州白云机场很大，白云山也很美。"] * 5 + [PUNCT, "大家"]
    # the corpus is too small to make "白云机场" a vocabulary word on its own: add it
    return ChineseTokenizer(build_vocab(corpus, min_char_count=1, min_word_count=2) + ["白云机场"], mode="word")


def test_vocabulary_words_stay_whole_and_other_text_falls_back_to_characters(word_tok):
    assert "白云机场" in word_tok.token_to_id
    tokens = word_tok.tokenize("广州的白云机场很大")
    assert "白云机场" in tokens
    # a jieba word that is not in the vocabulary falls back to its characters
    assert "大白" not in word_tok.token_to_id
    assert word_tok.tokenize("大白") == ["大", "白"]
    assert len(word_tok.encode(COMMON)) < len(COMMON)  # word units shorten the sequence


@pytest.mark.parametrize("text", MIXED)
def test_round_trip_gives_clean_text(word_tok, text):
    out = word_tok.decode(word_tok.encode(text))
    assert "##" not in out and "[UNK]" not in out
    expected = text.lower()
    # spaces survive only between two latin words / numbers; no space ever sits next to a CJK character
    assert out.replace(" ", "") == expected.replace(" ", "")
    assert all(not (a == " " and ("\u4e00" <= b <= "\u9fff")) for a, b in zip(out, out[1:]))


def test_english_words_and_numbers_keep_their_spacing(word_tok):
    assert word_tok.decode(word_tok.encode("Hello World是程序")) == "hello world是程序"
    assert word_tok.decode(word_tok.encode("Python 3.11写程序")) == "python 3.11写程序"


def test_full_width_punctuation_is_kept(word_tok):
    assert word_tok.decode(word_tok.encode(PUNCT)) == PUNCT


def test_special_tokens_are_skipped_unless_asked(word_tok):
    ids = word_tok.encode("今天", add_special_tokens=True)
    assert ids[0] == word_tok.cls_id and ids[-1] == word_tok.sep_id
    assert word_tok.decode(ids) == "今天"
    assert word_tok.decode(ids, skip_special_tokens=False).startswith("[CLS]")


def test_save_and_load_keep_mode_and_ids(tmp_path, word_tok):
    word_tok.save(tmp_path)
    again = ChineseTokenizer.from_dir(tmp_path)
    assert again.mode == "word" and again.vocab == word_tok.vocab
    assert again.encode(COMMON) == word_tok.encode(COMMON)
    assert read_vocab(tmp_path / "vocab.txt")[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)


def test_the_saved_vocabulary_loads_in_transformers(tmp_path, word_tok):
    from transformers import BertTokenizer

    word_tok.save(tmp_path)
    hf = BertTokenizer.from_pretrained(tmp_path)
    assert len(hf) == len(word_tok)
    assert hf.tokenize("今天天气") == ChineseTokenizer(word_tok.vocab, mode="char").tokenize("今天天气")


def test_build_vocab_puts_specials_first_and_ranks_by_frequency():
    vocab = build_vocab(["的的的好", "的好人"], min_char_count=1, min_word_count=1)
    assert vocab[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    assert vocab.index("的") < vocab.index("好") < vocab.index("人")


def test_a_vocabulary_without_special_tokens_is_refused():
    with pytest.raises(ValueError, match="special tokens"):
        ChineseTokenizer(["的", "了"], mode="char")


@pytest.mark.skipif(not GOOGLE_VOCAB.exists(), reason="../shared/data/google_zh_vocab.txt is not beside the repo")
def test_bert_base_chinese_vocabulary_reads_common_text_without_unk():
    tok = ChineseTokenizer(read_vocab(GOOGLE_VOCAB), mode="char")
    assert len(tok) == 21128  # the transformers 5.x vocab_file trap would give 5 tokens
    ids = tok.encode(COMMON + "他说：“明天见。”")
    assert tok.unk_id not in ids
    assert tok.decode(tok.encode(COMMON)) == COMMON


@pytest.mark.skipif(not GOOGLE_VOCAB.exists(), reason="../shared/data/google_zh_vocab.txt is not beside the repo")
def test_char_mode_matches_transformers_bert_tokenizer():
    from transformers import BertTokenizer

    hf = BertTokenizer(vocab=str(GOOGLE_VOCAB))
    ours = ChineseTokenizer(read_vocab(GOOGLE_VOCAB), mode="char")
    for text in [COMMON, *MIXED[:3]]:
        assert ours.tokenize(text) == hf.tokenize(text)
