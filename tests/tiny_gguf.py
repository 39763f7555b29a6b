"""A tiny random-weight GGUF file of the Qwen2 architecture over the real Qwen2 byte-level BPE,
written with the ``gguf`` package, so the tests load a real GGUF through llama.cpp.

The layout follows what llama.cpp's converter writes for Qwen2 checkpoints (tensor names
``token_embd``, ``blk.N.attn_q/k/v`` with biases, ``attn_output``, ``attn_norm``, ``ffn_norm``,
``ffn_gate/up/down``, ``output_norm``, ``output``; metadata under ``qwen2.*`` and
``tokenizer.ggml.*``); the token ids, types and special ids are those of Qwen2.5 instruct models:
EOS ``<|im_end|>``, padding and BOS ``<|endoftext|>`` (never added: ``add_bos_token`` is false).

Numpy arrays are written in row-major order; GGUF lists dimensions innermost first, so a torch
``Linear`` weight ``[out, in]`` is written as is (the file then says ``[in, out]``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

# A small ChatML template, as Qwen's instruct models use (our own wording, not Qwen's template).
CHATML = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

EOS = "<|im_end|>"  # 151645
PAD = "<|endoftext|>"  # 151643, also Qwen2.5's BOS id in GGUF files

_LOOKS_SPECIAL = re.compile(r"^<\|.*\|>$")


def qwen2_vocab(tokenizer_dir: Path) -> tuple[list[str], list[int], list[str], dict[str, int]]:
    """Tokens (byte-level strings, by id), their GGUF token types, the merges and the ids of the
    added tokens, from a Qwen2 tokenizer directory (vocab.json, merges.txt, tokenizer_config.json)."""
    from gguf import TokenType

    vocab = json.loads((tokenizer_dir / "vocab.json").read_text(encoding="utf-8"))
    config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    added = {int(i): t for i, t in config.get("added_tokens_decoder", {}).items()}
    size = max([*vocab.values(), *added]) + 1
    tokens: list[str | None] = [None] * size
    types = [int(TokenType.NORMAL)] * size
    for text, i in vocab.items():
        tokens[i] = text
    for i, tok in added.items():
        tokens[i] = tok["content"]
        # As the converter does: special added tokens, and any that look like <|...|>, are control
        # tokens; the others (<tool_call>, <think> ...) are user-defined text.
        special = tok.get("special") or _LOOKS_SPECIAL.match(tok["content"])
        types[i] = int(TokenType.CONTROL if special else TokenType.USER_DEFINED)
    missing = [i for i, t in enumerate(tokens) if t is None]
    if missing:
        raise ValueError(f"{tokenizer_dir}: no token for ids {missing[:5]}")
    merges = [
        line for line in (tokenizer_dir / "merges.txt").read_text(encoding="utf-8").split("\n")
        if line and not line.startswith("#version")
    ]
    ids = {tok["content"]: i for i, tok in added.items()}
    return tokens, types, merges, ids  # type: ignore[return-value]


def write_tiny_qwen2(
    path: Path,
    tokenizer_dir: Path,
    *,
    seed: int = 0,
    layers: int = 2,
    hidden: int = 64,
    heads: int = 4,
    kv_heads: int = 2,
    ffn: int = 128,
    context_length: int = 256,
    chat_template: str | None = CHATML,
    bos: bool = True,
    eos_bias: float = 0.0,
    name: str = "tiny-qwen2",
) -> Path:
    """Write the file and return its path. Weights are random (``seed``); the embedding and the
    output matrix are f16, everything else f32. ``eos_bias`` > 0 lengthens the output rows of
    ``<|im_end|>`` and ``<|endoftext|>`` so that some outputs end early."""
    from gguf import GGUFWriter, LlamaFileType

    tokens, types, merges, ids = qwen2_vocab(tokenizer_dir)
    vocab = len(tokens)
    head_dim = hidden // heads
    rng = np.random.default_rng(seed)

    def normal(*shape: int, std: float) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    w = GGUFWriter(str(path), "qwen2")
    w.add_name(name)
    w.add_file_type(LlamaFileType.MOSTLY_F16)
    w.add_context_length(context_length)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_freq_base(1_000_000.0)
    w.add_layer_norm_rms_eps(1e-6)

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_eos_token_id(ids[EOS])
    w.add_pad_token_id(ids[PAD])
    if bos:
        w.add_bos_token_id(ids[PAD])
    w.add_add_bos_token(False)
    if chat_template is not None:
        w.add_chat_template(chat_template)

    # Large output weights make the random model's next-token distributions peaked, so greedy
    # and beam choices are far from ties (the batch tests compare tokens across batch shapes).
    embed = normal(vocab, hidden, std=1.0)
    output = normal(vocab, hidden, std=0.5)
    if eos_bias:
        for token in (EOS, PAD):
            row = output[ids[token]]
            output[ids[token]] = row / np.linalg.norm(row) * np.linalg.norm(output, axis=1).mean() * (1 + eos_bias)
    w.add_tensor("token_embd.weight", embed.astype(np.float16))
    scale = 1.0 / np.sqrt(hidden)
    for i in range(layers):
        blk = f"blk.{i}"
        w.add_tensor(f"{blk}.attn_norm.weight", np.ones(hidden, np.float32))
        w.add_tensor(f"{blk}.attn_q.weight", normal(hidden, hidden, std=scale))
        w.add_tensor(f"{blk}.attn_q.bias", normal(hidden, std=0.02))
        w.add_tensor(f"{blk}.attn_k.weight", normal(kv_heads * head_dim, hidden, std=scale))
        w.add_tensor(f"{blk}.attn_k.bias", normal(kv_heads * head_dim, std=0.02))
        w.add_tensor(f"{blk}.attn_v.weight", normal(kv_heads * head_dim, hidden, std=scale))
        w.add_tensor(f"{blk}.attn_v.bias", normal(kv_heads * head_dim, std=0.02))
        w.add_tensor(f"{blk}.attn_output.weight", normal(hidden, hidden, std=scale))
        w.add_tensor(f"{blk}.ffn_norm.weight", np.ones(hidden, np.float32))
        w.add_tensor(f"{blk}.ffn_gate.weight", normal(ffn, hidden, std=scale))
        w.add_tensor(f"{blk}.ffn_up.weight", normal(ffn, hidden, std=scale))
        w.add_tensor(f"{blk}.ffn_down.weight", normal(hidden, ffn, std=1.0 / np.sqrt(ffn)))
    w.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    w.add_tensor("output.weight", output.astype(np.float16))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
