"""Token healing (algorithms.md 5.4): the back-off rule, the prefix constraint, and an end-to-end
check per tokenizer family -- our word-mode ChineseTokenizer, a WordPiece vocabulary
(HF BertTokenizer) and a byte-level BPE (GPT-2) -- on models whose logits favour the token
白云机场, so that a prompt ending in 白云 continues as 机场 only when healing is on."""

from __future__ import annotations

import pytest
import torch
from tiny_models import CHARS, save_gpt2, train_byte_bpe

from textgen.decoding import DecodingConfig, generate
from textgen.decoding.healing import (
    Healed,
    HealingConstraint,
    Vocabulary,
    back_off,
    heal,
)
from textgen.models.backbone import BertBackbone, BertConfig
from textgen.models.families import load_adapter
from textgen.tokenizer import SPECIAL_TOKENS, ChineseTokenizer

PROMPT = "广州的白云"
TARGET = "白云机场"


def partial(*bytes_):
    """A byte-level piece that is not a whole UTF-8 character, as adapters report it."""
    return bytes(bytes_).decode("utf-8", "surrogateescape")


# ---------------------------------------------------------------------- the back-off rule
def test_back_off_one_token_whose_text_a_longer_token_extends():
    texts = ["", "广州", "的", "白云", "白云机场", "白"]
    vocab = Vocabulary(texts)
    assert back_off(vocab, [1, 2, 3]) == ([1, 2], "白云".encode())
    assert back_off(vocab, [1, 2, 4]) == ([1, 2, 4], b"")  # nothing extends 白云机场
    assert back_off(vocab, [1, 2]) == ([1, 2], b"")


def test_back_off_several_tokens_when_only_their_joint_text_is_extended():
    texts = ["", "的", "白", "云", "白云机场", "云南"]
    vocab = Vocabulary(texts)
    # "云" alone is extended (云南) but so is "白云" (白云机场): the longer run is backed off
    assert back_off(vocab, [1, 2, 3]) == ([1], "白云".encode())


def test_back_off_never_crosses_a_special_token():
    texts = ["", "白", "云", "白云机场"]
    vocab = Vocabulary(texts)
    assert back_off(vocab, [1, 0, 2]) == ([1, 0, 2], b"")  # "云" alone extends nothing
    assert back_off(vocab, [1, 2, 0]) == ([1, 2, 0], b"")  # the prompt ends in a special token
    assert back_off(vocab, [0, 1, 2]) == ([0], "白云".encode())


def test_back_off_splits_only_between_whole_characters():
    bai = "白".encode()  # e7 99 bd
    texts = ["", partial(*bai[:2]), partial(bai[2]), "白云机场", partial(bai[2]) + "云"]
    vocab = Vocabulary(texts)
    # the last piece (byte bd) is extended by token 4, but backing off only it would split 白
    assert back_off(vocab, [1, 2]) == ([], bai)


# ---------------------------------------------------------------------- the constraint
def test_constraint_allows_tokens_that_extend_or_spell_the_remainder_then_lets_go():
    texts = ["", "白", "云", "白云", "白云机场", "机场", "云山", "山"]
    constraint = HealingConstraint(Vocabulary(texts), ["白云".encode(), b""])
    allowed = lambda gen: torch.isfinite(constraint(torch.tensor(gen, dtype=torch.long).reshape(2, -1), torch.zeros(2, len(texts))))  # noqa: E731
    first = allowed([[], []])
    assert first[0].nonzero().flatten().tolist() == [1, 3, 4]  # 白, 白云, 白云机场 -- not 云 or the end
    assert first[1].all()  # a row with nothing to heal is free
    after_bai = allowed([[1], [7]])
    assert after_bai[0].nonzero().flatten().tolist() == [2, 6]  # 云 or 云山 finish the remainder
    assert allowed([[3], [7]]).all() and allowed([[4], [7]]).all()
    # rows follow their beams
    constraint.reorder(torch.tensor([1, 0]))
    swapped = torch.isfinite(constraint(torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, len(texts))))
    assert swapped[0].all() and swapped[1].nonzero().flatten().tolist() == [1, 3, 4]


def test_strip_removes_the_respelled_remainder_only():
    assert Healed([1], "白云").strip("白云机场很大") == "机场很大"
    assert Healed([1], "ab cd").strip("ab  cdef") == "ef"  # decoder spacing is not matched
    assert Healed([1], "白云").strip("蓝天") == "蓝天"
    assert Healed([1], "").strip("白云") == "白云"


# ---------------------------------------------------------------------- end to end, per family
def backbone_dir(path):
    """Our backbone with a word-mode vocabulary (白云 and 白云机场 are words) and an LM head bias
    that favours 白云机场 whatever the context."""
    vocab = list(SPECIAL_TOKENS) + CHARS + ["广州", "白云", TARGET, "机场"]
    tokenizer = ChineseTokenizer(vocab, mode="word")
    tokenizer.save(path)
    torch.manual_seed(0)
    model = BertBackbone(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                    intermediate_size=64, max_position_embeddings=64))
    with torch.no_grad():
        model.head_bias[vocab.index(TARGET)] = 30.0
    model.save(path)
    return path


def favour(model, token_id: int) -> None:
    """Make a GPT-2 emit ``token_id`` in every context: the final LayerNorm outputs a constant
    vector e_0 and, through the tied output embeddings, only the target scores on that axis."""
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.zero_()
        model.transformer.ln_f.bias[0] = 1.0
        wte = model.transformer.wte.weight
        wte[:, 0] = 0.0
        wte[token_id, 0] = 30.0


def wordpiece_gpt2_dir(path):
    from transformers import BertTokenizer

    vocab = list(SPECIAL_TOKENS) + CHARS + ["白云", TARGET]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab=str(path / "vocab.txt"))
    model, _ = save_gpt2(path, tokenizer=tokenizer)
    favour(model, vocab.index(TARGET))
    model.save_pretrained(path)
    return path


def bytelevel_gpt2_dir(path):
    tokenizer = train_byte_bpe(path)
    assert {"白云", TARGET} <= {tokenizer.decode([i]) for i in range(len(tokenizer))}
    model, _ = save_gpt2(path, tokenizer=tokenizer)
    target = next(i for i in range(len(tokenizer)) if tokenizer.decode([i]) == TARGET)
    favour(model, target)
    model.save_pretrained(path)
    return path


FAMILIES = {"chinese-word": backbone_dir, "wordpiece": wordpiece_gpt2_dir, "byte-bpe": bytelevel_gpt2_dir}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("beams", [1, 3])
def test_healing_continues_the_word_the_prompt_stops_inside(tmp_path, family, beams):
    adapter = load_adapter(FAMILIES[family](tmp_path), "causal")
    ids = adapter.encode(PROMPT)
    assert adapter.decode(ids[-1:]) != TARGET and TARGET in adapter.token_texts()
    config = DecodingConfig(max_new_tokens=4, num_beams=beams)

    def continuation(enabled):
        healed, constraint = heal(adapter, [PROMPT, "蓝天"], enabled=enabled)
        processors = [constraint] if constraint is not None else []
        out = generate(adapter, [h.context_ids for h in healed], config, processors=processors)
        return healed, [h.strip(adapter.decode(o[0].token_ids)) for h, o in zip(healed, out)]

    healed, (text, other) = continuation(True)
    assert healed[0].remainder.endswith("白云") and len(healed[0].context_ids) < len(ids)
    assert text.startswith("机场"), text
    assert other.startswith(TARGET)  # a prompt with nothing to heal is untouched

    plain, (text_off, _) = continuation(False)
    assert plain[0].context_ids == ids and plain[0].remainder == ""
    assert not text_off.startswith("机场") and text_off.startswith(TARGET)


def test_wordpiece_backs_off_two_character_tokens(tmp_path):
    adapter = load_adapter(wordpiece_gpt2_dir(tmp_path), "causal")
    ids = adapter.encode(PROMPT)
    assert [adapter.decode([i]) for i in ids] == list(PROMPT)  # BERT splits every CJK character
    (healed,), constraint = heal(adapter, [PROMPT])
    assert healed.context_ids == ids[:-2] and healed.remainder == "白云" and healed.backed_off == 2
    assert constraint is not None


def test_nothing_to_heal_gives_no_constraint(tmp_path):
    adapter = load_adapter(backbone_dir(tmp_path), "causal")
    healed, constraint = heal(adapter, ["蓝天", "白云机场"])
    assert constraint is None and [h.remainder for h in healed] == ["", ""]
