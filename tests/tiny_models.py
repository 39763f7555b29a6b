"""Tiny random models and tokenizers, built in the tests and saved like real model directories,
so the tests exercise the real loading code (config.json + model.safetensors + tokenizer files).

Nothing is downloaded: tokenizers are built or trained here from a few sentences.
"""

from __future__ import annotations

from pathlib import Path

import torch

SENTENCES = [
    "广州的白云机场很大",
    "我们去白云机场接人",
    "白云机场的航班很多",
    "白云山在广州的北边",
    "白云路上车很多",
    "今天天气很好我们去白云山",
    "广州白云机场有地铁",
    "飞机从白云机场起飞",
    "机场大巴开往白云机场",
    "蓝天白云很好看",
]
CHARS = sorted(set("".join(SENTENCES)))


def _wrap(tokenizer_object, path: Path, **special):
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=tokenizer_object, **special)
    tok.save_pretrained(path)
    return tok


def char_tokenizer(path: Path, specials: list[str], template: str, **special):
    """A WordLevel tokenizer over single Chinese characters (BERT-style CJK splitting); the
    post-processor adds the family's specials (``template`` such as ``"$A </s>"``)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {t: i for i, t in enumerate(specials + CHARS)}
    unk = special.get("unk_token")
    tok = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    tok.normalizer = normalizers.BertNormalizer(handle_chinese_chars=True, lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    pieces = template.split()
    tok.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(p, vocab[p]) for p in pieces if p != "$A"]
    )
    return _wrap(tok, path, **special)


def save_t5(path: Path, seed: int = 0, width: int = 32, layers: int = 2, vocab_size: int | None = None,
            eos_factor: float = -1.5):
    """A random T5 over the character tokenizer; ``vocab_size`` may exceed the tokenizer (for
    benchmarks with a realistic output layer)."""
    from transformers import T5Config, T5ForConditionalGeneration

    tok = char_tokenizer(path, ["<pad>", "</s>", "<unk>"], "$A </s>", pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(seed)
    cfg = T5Config(
        vocab_size=max(vocab_size or 0, len(tok)), d_model=width, d_kv=width // 4, d_ff=2 * width, num_layers=layers,
        num_decoder_layers=layers, num_heads=4, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
        tie_word_embeddings=False,
    )
    model = T5ForConditionalGeneration(cfg)
    _favour_eos(model.get_output_embeddings().weight, 1, factor=eos_factor)
    model.save_pretrained(path)
    return model, tok


def save_bart(path: Path, seed: int = 0, width: int = 32, eos_factor: float = 2.0):
    from transformers import BartConfig, BartForConditionalGeneration

    tok = char_tokenizer(
        path, ["<s>", "<pad>", "</s>", "<unk>"], "<s> $A </s>",
        bos_token="<s>", pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
    )
    torch.manual_seed(seed)
    cfg = BartConfig(
        vocab_size=len(tok), d_model=width, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=2 * width, decoder_ffn_dim=2 * width, max_position_embeddings=64,
        bos_token_id=0, pad_token_id=1, eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=None,
        tie_word_embeddings=False,
    )
    model = BartForConditionalGeneration(cfg)
    _favour_eos(model.get_output_embeddings().weight, 2, factor=eos_factor)
    model.save_pretrained(path)
    return model, tok


def train_byte_bpe(path: Path, vocab_size: int = 300):
    """A GPT-2 style byte-level BPE trained on SENTENCES, so it holds multi-character tokens
    such as 白云 and 白云机场."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(SENTENCES * 20, trainer=trainer)
    eot = "<|endoftext|>"
    return _wrap(tok, path, bos_token=eot, eos_token=eot, unk_token=eot, pad_token=eot)


def save_gpt2(path: Path, seed: int = 0, width: int = 32, layers: int = 2, tokenizer=None, vocab_size: int | None = None,
              eos_factor: float = 6.0):
    """A random GPT-2 over the trained byte-level BPE (or over ``tokenizer`` if given)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = tokenizer if tokenizer is not None else train_byte_bpe(path)
    if tokenizer is not None:
        tok.save_pretrained(path)
    eos = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=max(vocab_size or 0, len(tok)), n_embd=width, n_layer=layers, n_head=4, n_positions=256,
        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
    )
    model = GPT2LMHeadModel(cfg)
    _favour_eos(model.get_output_embeddings().weight, eos, factor=eos_factor)
    model.save_pretrained(path)
    return model, tok


def _favour_eos(weight: torch.Tensor, eos: int, factor: float) -> None:
    """Scale the end token's output row so random models end at varied lengths instead of always
    or never, which is what exercises the finished-hypothesis logic (factors tuned per family)."""
    with torch.no_grad():
        weight[eos] *= factor


# ---------------------------------------------------------------------- chat models (textgen/models/chat.py)
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def save_qwen2(path: Path, tokenizer_dir: Path, seed: int = 0, width: int = 16, layers: int = 2,
               eos_factor: float = 1.0, vocab_size: int = 151936):
    """A random Qwen2 over a real Qwen2 tokenizer directory with a ChatML template (as Qwen's
    instruct models have); its generation config names only <|endoftext|>, as a base model's does."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.chat_template = CHATML
    tok.save_pretrained(path)
    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=max(vocab_size, len(tok)), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024, tie_word_embeddings=True,
        bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    model = Qwen2ForCausalLM(cfg)
    for end in ("<|im_end|>", "<|endoftext|>"):
        _favour_eos(model.get_output_embeddings().weight, tok.convert_tokens_to_ids(end), factor=eos_factor)
    model.save_pretrained(path)
    return model, tok


def save_llama(path: Path, seed: int = 0, width: int = 32, layers: int = 2, eos_factor: float = 1.0,
               max_positions: int = 1024, vocab_size: int | None = None):
    """A random Llama over the trained byte-level BPE plus Llama 3's chat tokens and template: a
    BOS token, headers, and <|eot_id|> closing each turn."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = train_byte_bpe(path)
    tok.add_special_tokens({
        "bos_token": "<|begin_of_text|>",
        "additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
    })
    tok.chat_template = LLAMA3
    tok.save_pretrained(path)
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=max(vocab_size or 0, len(tok)), hidden_size=width, intermediate_size=2 * width,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg)
    for end in ("<|eot_id|>", "<|endoftext|>"):
        _favour_eos(model.get_output_embeddings().weight, tok.convert_tokens_to_ids(end), factor=eos_factor)
    model.save_pretrained(path)
    return model, tok
