"""A tiny random BertBackbone and a character tokenizer built from the tests' own sentences."""

from __future__ import annotations

from pathlib import Path

import torch

from textgen.models.backbone import BertBackbone, BertConfig
from textgen.tokenizer import ChineseTokenizer, build_vocab

SENTENCES = [
    "今天天气很好，我们去公园散步。",
    "深度学习的文本生成方法研究",
    "基于深度学习的中文文本摘要方法",
    "自然语言处理很有趣。",
    "模型在测试集上取得了较好的结果",
]


def tiny_tokenizer() -> ChineseTokenizer:
    return ChineseTokenizer(build_vocab(SENTENCES, min_char_count=1, min_word_count=1), mode="char")


def tiny_backbone(vocab_size: int, seed: int = 0, max_positions: int = 64) -> BertBackbone:
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
    )
    return BertBackbone(cfg).eval()


def save_tiny_model(path: Path, seed: int = 0) -> Path:
    """A model directory (config.json, model.safetensors, vocab.txt) as the CLI loads it."""
    tokenizer = tiny_tokenizer()
    tiny_backbone(len(tokenizer), seed).save(path)
    tokenizer.save(path)
    return path
