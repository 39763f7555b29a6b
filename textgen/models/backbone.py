"""A compact BERT in torch: one set of weights, three attention modes, a KV cache.

Why not ``transformers``' ``BertModel``: in transformers 5.x its mask handling rejects
per-example 3-D UniLM masks and it keeps no cache for this use. This module keeps masks, cache
and heads in one file, and reads/writes the Hugging Face BERT checkpoint layout
(``config.json`` + ``model.safetensors``), so any Chinese BERT/RoBERTa drops in.

Attention modes (algorithms.md section 0), chosen per call:

* ``bidirectional``: every token sees every non-pad token (masked LM, Gibbs sampling);
* ``causal``: token i sees tokens j <= i (language model, continuation, MH scoring);
* ``unilm``: from segment ids s, c = cumsum(s); i sees j iff c[j] <= c[i] -- the source is
  bidirectional, the target causal and the source never sees the target.

With a cache, new tokens are appended after the cached ones and see all cached (non-pad) keys
plus the new tokens causally, which is exactly the causal and UniLM rule for targets.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("bidirectional", "causal", "unilm")


@dataclass
class BertConfig:
    """The subset of Hugging Face's BertConfig this backbone uses (same field names)."""

    vocab_size: int = 21128
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    initializer_range: float = 0.02
    pad_token_id: int = 0
    copy_head: bool = False  # the SPACES B/I/O copy head (3 classes)

    @classmethod
    def from_dict(cls, d: dict) -> BertConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_hf_dict(self) -> dict:
        d = asdict(self)
        d.update(model_type="bert", architectures=["BertForMaskedLM"])
        return d


_ACTS = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


class KVCache:
    """Per-layer keys/values plus what the next step needs: which cached keys are real
    (not padding) and each row's next position id."""

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], key_mask: torch.Tensor, next_pos: torch.Tensor):
        self.keys = keys  # each [B, H, T, D]
        self.values = values
        self.key_mask = key_mask  # [B, T] bool
        self.next_pos = next_pos  # [B] long

    def __len__(self) -> int:
        return self.key_mask.shape[1]

    def reorder(self, index: torch.Tensor) -> KVCache:
        """Rows follow ``index`` (beam reordering, or repeating inputs for beams/samples)."""
        return KVCache(
            [k.index_select(0, index) for k in self.keys],
            [v.index_select(0, index) for v in self.values],
            self.key_mask.index_select(0, index),
            self.next_pos.index_select(0, index),
        )


class SelfAttention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        if cfg.hidden_size % cfg.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        self.heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.out = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = cfg.attention_probs_dropout_prob
        self.out_dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, x, mask, past_k=None, past_v=None):
        b, t, _ = x.shape
        split = lambda y: y.view(b, t, self.heads, self.head_dim).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        if past_k is not None:
            k = torch.cat([past_k, k], dim=2)
            v = torch.cat([past_v, v], dim=2)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        a = a.transpose(1, 2).reshape(b, t, -1)
        return self.norm(x + self.out_dropout(self.out(a))), k, v


class Layer(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attention = SelfAttention(cfg)
        self.intermediate = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.output = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.act = _ACTS[cfg.hidden_act]
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, x, mask, past_k=None, past_v=None):
        x, k, v = self.attention(x, mask, past_k, past_v)
        x = self.norm(x + self.dropout(self.output(self.act(self.intermediate(x)))))
        return x, k, v


class BertBackbone(nn.Module):
    """Embeddings, encoder layers, the MLM/LM head tied to the word embeddings, optional copy head."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.config = cfg
        h = cfg.hidden_size
        self.word_embeddings = nn.Embedding(cfg.vocab_size, h, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, h)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, h)
        self.embed_norm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.embed_dropout = nn.Dropout(cfg.hidden_dropout_prob)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_hidden_layers))
        # MLM head: transform + LayerNorm, then the decoder tied to word_embeddings, plus a bias.
        self.head_transform = nn.Linear(h, h)
        self.head_norm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.head_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.copy_head = nn.Linear(h, 3) if cfg.copy_head else None
        self.apply(self._init_weights)

    def _init_weights(self, m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=self.config.initializer_range)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            with torch.no_grad():
                m.weight[m.padding_idx].zero_()

    # ------------------------------------------------------------------ masks
    @staticmethod
    def build_mask(mode: str, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        """Boolean [B, 1, L, L] mask (True = may attend) for a full (uncached) forward pass."""
        if mode not in MODES:
            raise ValueError(f"attention mode must be one of {MODES}, not {mode!r}")
        keys = attention_mask.bool()[:, None, None, :]  # [B,1,1,L]
        L = attention_mask.shape[1]
        if mode == "bidirectional":
            allow = keys.expand(-1, 1, L, L)
        elif mode == "causal":
            causal = torch.ones(L, L, dtype=torch.bool, device=keys.device).tril()
            allow = keys & causal
        else:
            if token_type_ids is None:
                raise ValueError("unilm mode needs token_type_ids (0 = source, 1 = target)")
            c = token_type_ids.cumsum(dim=1)
            allow = keys & (c[:, None, None, :] <= c[:, None, :, None])
        # A padded query row that may see nothing would give NaN; let it see itself.
        eye = torch.eye(L, dtype=torch.bool, device=keys.device)
        return allow | eye

    # ------------------------------------------------------------------ forward
    def encode(
        self,
        input_ids: torch.Tensor,
        *,
        mode: str = "bidirectional",
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
        use_cache: bool = False,
    ) -> tuple[torch.Tensor, KVCache | None]:
        """Hidden states [B, T, H] and, with ``use_cache``, the cache extended by these tokens.

        Without ``cache`` the mask follows ``mode``. With ``cache`` the new tokens see every real
        cached key and each other causally (valid for the causal and UniLM target side).
        """
        b, t = input_ids.shape
        if attention_mask is None:
            attention_mask = input_ids.ne(self.config.pad_token_id) | (torch.arange(t, device=input_ids.device) == 0)
        attention_mask = attention_mask.bool()
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if cache is None:
            if position_ids is None:
                position_ids = torch.arange(t, device=input_ids.device).expand(b, t)
            mask = self.build_mask(mode, attention_mask, token_type_ids)
            key_mask = attention_mask
        else:
            if position_ids is None:
                position_ids = cache.next_pos[:, None] + torch.arange(t, device=input_ids.device)
            key_mask = torch.cat([cache.key_mask, attention_mask], dim=1)
            if t == 1 and bool(cache.key_mask.all()):
                mask = None  # one new token, no padded keys: it sees everything (the common decode step)
            else:
                causal = torch.ones(t, t, dtype=torch.bool, device=input_ids.device).tril()
                past = cache.key_mask[:, None, None, :].expand(b, 1, t, len(cache))
                mask = torch.cat([past, causal.expand(b, 1, t, t)], dim=-1)
        if int(position_ids.max()) >= self.config.max_position_embeddings:
            raise ValueError(
                f"sequence longer than the model's {self.config.max_position_embeddings} positions; shorten the input"
            )
        x = self.word_embeddings(input_ids) + self.position_embeddings(position_ids) + self.token_type_embeddings(token_type_ids)
        x = self.embed_dropout(self.embed_norm(x))
        keys, values = [], []
        for i, layer in enumerate(self.layers):
            pk = cache.keys[i] if cache is not None else None
            pv = cache.values[i] if cache is not None else None
            x, k, v = layer(x, mask, pk, pv)
            keys.append(k)
            values.append(v)
        new_cache = None
        if use_cache:
            lengths = attention_mask.long().sum(1)
            start = cache.next_pos if cache is not None else torch.zeros(b, dtype=torch.long, device=input_ids.device)
            new_cache = KVCache(keys, values, key_mask, start + lengths)
        return x, new_cache

    def head_states(self, hidden: torch.Tensor) -> torch.Tensor:
        """The MLM head's normalised hidden state (the copy head reads this too, as in SPACES)."""
        return self.head_norm(_ACTS[self.config.hidden_act](self.head_transform(hidden)))

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(self.head_states(hidden), self.word_embeddings.weight, self.head_bias)

    def copy_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """O/B/I logits of the copy head, read from the MLM head's normalised state as in SPACES."""
        if self.copy_head is None:
            raise ValueError("this model has no copy head")
        return self.copy_head(self.head_states(hidden))

    def forward(self, input_ids: torch.Tensor, **kw) -> torch.Tensor:
        """Token logits [B, T, V] for a full pass (``mode``, ``token_type_ids``, ``attention_mask``)."""
        hidden, _ = self.encode(input_ids, **kw)
        return self.lm_logits(hidden)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ HF checkpoint I/O
    def save(self, path: str | os.PathLike, dtype: torch.dtype | None = None, max_shard_bytes: int | None = None) -> None:
        """Write ``config.json`` + ``model.safetensors`` in the Hugging Face BertForMaskedLM layout;
        with ``max_shard_bytes``, weights go into HF-style shards (``model-00001-of-0000N.safetensors``
        + ``model.safetensors.index.json``), e.g. to move a large model through a 16 MB file limit."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        cfg = self.config.to_hf_dict()
        if dtype is not None:
            cfg["torch_dtype"] = str(dtype).removeprefix("torch.")
        (path / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
        state = {}
        for name, tensor in self.state_dict().items():
            t = tensor.detach().contiguous()
            if dtype is not None and t.is_floating_point():
                t = t.to(dtype)
            state[to_hf_name(name)] = t
        # The MLM decoder is tied to the word embeddings (tie_word_embeddings, HF's default for BERT),
        # so its weight is not stored twice: that would add vocab x hidden to every file.
        write_weights(state, path, max_shard_bytes)

    @classmethod
    def load(cls, path: str | os.PathLike, *, allow_pickle: bool = False, copy_head: bool | None = None) -> BertBackbone:
        """Load a HF BERT checkpoint directory (BertForMaskedLM, BertForPreTraining or a bare
        BertModel; a missing MLM head starts untrained). Pickled ``pytorch_model.bin`` only with
        ``allow_pickle``."""
        path = Path(path)
        cfg_dict = json.loads((path / "config.json").read_text(encoding="utf-8"))
        if copy_head is not None:
            cfg_dict["copy_head"] = copy_head
        cfg = BertConfig.from_dict(cfg_dict)
        state = read_weights(path, allow_pickle=allow_pickle)
        model = cls(cfg)
        mapped = {}
        for name, tensor in state.items():
            ours = from_hf_name(name)
            if ours is not None:
                mapped[ours] = tensor.float()
        missing, _ = model.load_state_dict(mapped, strict=False)
        essential = [m for m in missing if not m.startswith(("head_", "copy_head"))]
        if essential:
            raise ValueError(f"{path}: not a BERT checkpoint, missing weights {essential[:5]}")
        check_finite(((name, t) for name, t in state.items() if from_hf_name(name) is not None), path)
        return model


def check_finite(named: Iterable[tuple[str, torch.Tensor]], path: str | os.PathLike) -> None:
    """``ValueError`` when weights hold NaN or infinity (a diverged training run, a damaged file):
    such a model would load and then fail every record with some unrelated message."""
    bad = [name for name, t in named if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise ValueError(f"{path}: the weights hold NaN or infinite values ({len(bad)} tensors, e.g. {bad[0]}); "
                         "the checkpoint is damaged")


# HF name <-> ours, as templates ({n} = layer number). HF keys may come with or without the
# "bert." prefix, and old checkpoints name LayerNorm parameters gamma/beta.
_NAMES = [
    ("embeddings.word_embeddings.", "word_embeddings."),
    ("embeddings.position_embeddings.", "position_embeddings."),
    ("embeddings.token_type_embeddings.", "token_type_embeddings."),
    ("embeddings.LayerNorm.", "embed_norm."),
    ("encoder.layer.{n}.attention.self.query.", "layers.{n}.attention.query."),
    ("encoder.layer.{n}.attention.self.key.", "layers.{n}.attention.key."),
    ("encoder.layer.{n}.attention.self.value.", "layers.{n}.attention.value."),
    ("encoder.layer.{n}.attention.output.dense.", "layers.{n}.attention.out."),
    ("encoder.layer.{n}.attention.output.LayerNorm.", "layers.{n}.attention.norm."),
    ("encoder.layer.{n}.intermediate.dense.", "layers.{n}.intermediate."),
    ("encoder.layer.{n}.output.dense.", "layers.{n}.output."),
    ("encoder.layer.{n}.output.LayerNorm.", "layers.{n}.norm."),
    ("cls.predictions.transform.dense.", "head_transform."),
    ("cls.predictions.transform.LayerNorm.", "head_norm."),
    ("cls.predictions.bias", "head_bias"),
    ("cls.copy.", "copy_head."),
]


def _translate(name: str, src: int) -> str | None:
    for row in _NAMES:
        regex = "^" + re.escape(row[src]).replace(re.escape("{n}"), r"(\d+)")
        m = re.match(regex, name)
        if m:
            return row[1 - src].replace("{n}", m.group(1) if m.groups() else "") + name[m.end():]
    return None


def from_hf_name(name: str) -> str | None:
    """Our parameter name for a HF key; None for weights we do not use (pooler, NSP, tied decoder)."""
    name = name.removeprefix("bert.").replace(".gamma", ".weight").replace(".beta", ".bias")
    return _translate(name, 0)


def to_hf_name(name: str) -> str:
    hf = _translate(name, 1)
    if hf is None:
        raise KeyError(name)
    return hf if hf.startswith("cls.") else "bert." + hf


SHARD_INDEX = "model.safetensors.index.json"


def write_weights(state: dict[str, torch.Tensor], path: Path, max_shard_bytes: int | None = None) -> None:
    """One ``model.safetensors``, or shards of at most ``max_shard_bytes`` plus the HF index."""
    from safetensors.torch import save_file

    for old in [path / "model.safetensors", path / SHARD_INDEX, *path.glob("model-*-of-*.safetensors")]:
        old.unlink(missing_ok=True)
    if max_shard_bytes is None:
        save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
        _usual_mode(path / "model.safetensors")
        return
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in state.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    weight_map = {}
    for k, shard in enumerate(shards, 1):
        fname = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(path / fname), metadata={"format": "pt"})
        _usual_mode(path / fname)
        weight_map.update(dict.fromkeys(shard, fname))
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (path / SHARD_INDEX).write_text(json.dumps(index, indent=2), encoding="utf-8")


def _usual_mode(path: Path) -> None:
    """safetensors writes through a private temporary file, so its files come out mode 0600;
    give them the mode every other file of the directory gets (0666 less the umask), so that a
    model directory shared with others can be read by them."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def read_weights(path: Path, *, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    st = path / "model.safetensors"
    if st.exists():
        from safetensors.torch import load_file

        return load_file(str(st))
    index = path / SHARD_INDEX
    if index.exists():
        from safetensors.torch import load_file

        state: dict[str, torch.Tensor] = {}
        for fname in sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())):
            state.update(load_file(str(path / fname)))
        return state
    pt = path / "pytorch_model.bin"
    if pt.exists():
        if not allow_pickle:
            raise PermissionError(
                f"{path} has only pickled weights (pytorch_model.bin); pickles can run code. "
                "Convert them to safetensors, or pass --allow-pickle if you trust the source."
            )
        return torch.load(str(pt), map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{path} holds no model.safetensors")
