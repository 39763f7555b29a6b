"""One step interface over every model family, so the decoder never knows which model it drives.

``start`` encodes a batch of inputs once and returns the first next-token logits plus a state
(KV caches, masks, positions); ``step`` feeds one token per row and returns the next logits;
``reorder`` makes row ``i`` continue what row ``index[i]`` was (beams, repeated samples, dropped
finished rows). States are private to one decoding run: ``reorder`` and ``step`` may update them
in place (Hugging Face caches reorder in place), so only the returned state is valid afterwards.

Families (docs/design.md):

* ``BackboneSeq2Seq``: our BERT with the UniLM mask, ``[CLS] src [SEP]`` as segment 0, generated
  tokens as segment 1 appended through the KV cache; ends at ``[SEP]``.
* ``BackboneCausal``: our BERT with the causal mask, ``[CLS] prompt``; ends at ``[SEP]``.
* ``HFSeq2Seq``: any ``AutoModelForSeq2SeqLM`` (T5, BART, mT5, Pegasus): encoder once, decoder
  with ``past_key_values``.
* ``HFCausal``: any ``AutoModelForCausalLM`` (GPT-2 ...): prompts without special tokens, left
  padded with position ids from the attention mask, exactly as ``generate()`` does.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from textgen.models.backbone import BertBackbone, KVCache, check_finite
from textgen.tokenizer import ChineseTokenizer, is_cjk

if TYPE_CHECKING:
    from textgen.models.families import LoadOptions
    from textgen.models.model_dir import ModelDir

KINDS = ("seq2seq", "causal")


class Adapter(ABC):
    """The step interface the decoder drives. ``token_texts`` gives each id's surface text for
    token healing; bytes that are not whole UTF-8 characters (byte-level BPE pieces) appear as
    surrogate escapes, so ``text.encode("utf-8", "surrogateescape")`` recovers them exactly."""

    name: str
    vocab_size: int
    eos_token_ids: list[int]
    pad_token_id: int
    device: torch.device

    @abstractmethod
    def encode(self, text: str) -> list[int]: ...

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str: ...

    def source_ids(self, text: str) -> list[int]:
        """The ids of ``text`` itself, for constraints built from the source (copy, answer spans).
        Here the same as ``encode``; a chat adapter's ``encode`` wraps the text in a prompt."""
        return self.encode(text)

    @abstractmethod
    def token_texts(self) -> list[str]: ...

    @abstractmethod
    def start(self, inputs: Sequence[Sequence[int]], max_new_tokens: int) -> tuple[torch.Tensor, Any]: ...

    @abstractmethod
    def step(self, state: Any, tokens: torch.Tensor) -> tuple[torch.Tensor, Any]: ...

    @abstractmethod
    def reorder(self, state: Any, index: torch.Tensor) -> Any: ...

    def input_limit(self, max_new_tokens: int) -> int | None:
        """How many of ``encode``'s tokens ``start`` keeps beside ``max_new_tokens`` outputs (None:
        all). Seq2seq models keep a long source's beginning, causal models a long prompt's end; the
        tasks use this to tell users that part of their text was not read."""
        return None

    has_copy_head: bool = False

    def copy_probs(self, state: Any) -> torch.Tensor | None:
        """The copy head's O/B/I probabilities of each row's next token in ``state`` ([N, 3], rows
        as the logits ``start``/``step`` returned), or None for models without a copy head
        (algorithms.md 2.3; read by ``textgen.decoding.copy.CopyHead``)."""
        return None


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int, *, left: bool, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack id lists into [B, L] ids and a boolean attention mask."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        span = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, span] = torch.tensor(list(r), dtype=torch.long)
        mask[i, span] = True
    return ids.to(device), mask.to(device)


def _check_room(max_positions: int | None, max_new_tokens: int, reserved: int) -> int | None:
    """How many input tokens fit beside ``max_new_tokens`` outputs and ``reserved`` special tokens."""
    if max_positions is None:
        return None
    room = max_positions - max_new_tokens - reserved
    if room < 1:
        raise ValueError(
            f"max_new_tokens={max_new_tokens} leaves no room for the input in the model's {max_positions} positions"
        )
    return room


# ---------------------------------------------------------------------- our backbone
class _BackboneAdapter(Adapter):
    """What both uses of our BERT share: tokenizer, [SEP] as the end token, the cache.

    ``max_context_tokens`` (textgen.json) is the sequence length the model was trained on, when
    shorter than its position table: the untrained positions beyond it would only add noise."""

    max_context_tokens: int | None = None

    def __init__(self, model: BertBackbone, tokenizer: ChineseTokenizer, name: str, device) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.device = torch.device(device)
        self.vocab_size = model.config.vocab_size
        if len(tokenizer) != self.vocab_size:
            raise ValueError(f"{name}: vocab.txt has {len(tokenizer)} tokens but the model has {self.vocab_size}")
        self.eos_token_ids = [tokenizer.sep_id]
        self.pad_token_id = tokenizer.pad_id

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids)

    def token_texts(self) -> list[str]:
        return [self.tokenizer.token_text(i) for i in range(len(self.tokenizer))]

    def _positions(self) -> int:
        return min(self.model.config.max_position_embeddings, self.max_context_tokens or 1 << 30)

    def _prefill(self, rows: list[list[int]], mode: str) -> tuple[torch.Tensor, KVCache]:
        ids, mask = pad_rows(rows, self.pad_token_id, left=False, device=self.device)
        hidden, cache = self.model.encode(
            ids, mode=mode, token_type_ids=torch.zeros_like(ids), attention_mask=mask, use_cache=True
        )
        last = hidden[torch.arange(len(rows), device=self.device), mask.sum(1) - 1]
        return self._outputs(last, cache)

    def step(self, state: KVCache, tokens: torch.Tensor) -> tuple[torch.Tensor, KVCache]:
        hidden, cache = self.model.encode(
            tokens[:, None], token_type_ids=self._segment(tokens), cache=state, use_cache=True
        )
        return self._outputs(hidden[:, -1], cache)

    def _outputs(self, last: torch.Tensor, cache: KVCache) -> tuple[torch.Tensor, KVCache]:
        """Next-token logits; with a copy head (seq2seq) the cache also carries the head's O/B/I
        probabilities of the next token (``copy_probs``)."""
        if self.has_copy_head:
            cache.copy_probs = self.model.copy_logits(last).float().softmax(dim=-1)
        return self.model.lm_logits(last), cache

    def reorder(self, state: KVCache, index: torch.Tensor) -> KVCache:
        probs = getattr(state, "copy_probs", None)
        state = state.reorder(index)
        if probs is not None:
            state.copy_probs = probs.index_select(0, index)
        return state

    @abstractmethod
    def _segment(self, tokens: torch.Tensor) -> torch.Tensor: ...


class BackboneSeq2Seq(_BackboneAdapter):
    """UniLM seq2seq (algorithms.md 0): the source is bidirectional, the target causal.

    ``max_source_tokens`` (textgen.json, written by seq2seq fine-tuning) is the source length the
    model was trained on; longer sources keep their beginning, as in training. Without the cut the
    target would sit at positions training never reached."""

    max_source_tokens: int | None = None

    @property
    def has_copy_head(self) -> bool:
        return self.model.copy_head is not None

    def copy_probs(self, state):
        return getattr(state, "copy_probs", None)

    def input_limit(self, max_new_tokens):
        room = _check_room(self._positions(), max_new_tokens, reserved=2)
        return min(room, self.max_source_tokens) if self.max_source_tokens else room

    def start(self, inputs, max_new_tokens):
        room = self.input_limit(max_new_tokens)
        cls, sep = self.tokenizer.cls_id, self.tokenizer.sep_id
        rows = [[cls, *list(src)[:room], sep] for src in inputs]  # right-truncation, as bert4keras
        return self._prefill(rows, "unilm")

    def _segment(self, tokens):
        return torch.ones_like(tokens)[:, None]


class BackboneCausal(_BackboneAdapter):
    """Left-to-right language model over ``[CLS] prompt``; a long prompt keeps its end."""

    def input_limit(self, max_new_tokens):
        return _check_room(self._positions(), max_new_tokens, reserved=1)

    def start(self, inputs, max_new_tokens):
        room = self.input_limit(max_new_tokens)
        rows = [[self.tokenizer.cls_id, *list(p)[len(p) - min(room, len(p)) :]] for p in inputs]
        return self._prefill(rows, "causal")

    def _segment(self, tokens):
        return torch.zeros_like(tokens)[:, None]


# ---------------------------------------------------------------------- Hugging Face models
class _HFAdapter(Adapter):
    """Tokenizer handling shared by the Hugging Face families."""

    def __init__(self, model, tokenizer, name: str, device) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.device = torch.device(device)
        self.vocab_size = model.get_output_embeddings().weight.shape[0]
        gen = model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else tokenizer.eos_token_id
        self.eos_token_ids = sorted({int(e) for e in ([eos] if isinstance(eos, int) else (eos or []))})
        if not self.eos_token_ids:
            raise ValueError(f"{name}: neither the model nor its tokenizer names an end-of-sequence token")
        pad = gen.pad_token_id if gen.pad_token_id is not None else tokenizer.pad_token_id
        self.pad_token_id = int(pad) if pad is not None else self.eos_token_ids[0]
        # WordPiece decoders, and tokenizers without a decoder (Chinese BART checkpoints saved
        # without one), put a space between every token; Chinese has none between characters.
        self._spaced = _decoder_kind(tokenizer) in ("wordpiece", "plain")
        # transformers 5.24 renamed the KV-cache argument and output `past_key_values` to `cache`
        # (the old name still works, with a deprecation warning on every run).
        self._cache = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def decode(self, ids: Sequence[int]) -> str:
        text = self.tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return join_cjk(text) if self._spaced else text

    def token_texts(self) -> list[str]:
        return hf_token_texts(self.tokenizer, self.vocab_size)

    def _max_positions(self) -> int | None:
        n = getattr(self.model.config, "max_position_embeddings", None) or getattr(self.model.config, "n_positions", None)
        return int(n) if n else None


@dataclass
class _Seq2SeqState:
    encoder_hidden: torch.Tensor  # [N, S, H]
    encoder_mask: torch.Tensor  # [N, S]
    owner: torch.Tensor  # [N] the input each row encodes
    cache: Any  # transformers EncoderDecoderCache


class HFSeq2Seq(_HFAdapter):
    """Encoder-decoder models; the decoder starts from ``decoder_start_token_id`` (plus the
    model's ``forced_bos_token_id``, e.g. BART/mBART, as a decoder prompt)."""

    def __init__(self, model, tokenizer, name: str, device) -> None:
        super().__init__(model, tokenizer, name, device)
        gen = model.generation_config
        start = gen.decoder_start_token_id
        if start is None:
            start = model.config.decoder_start_token_id
        if start is None:
            start = gen.bos_token_id if gen.bos_token_id is not None else self.pad_token_id
        self.decoder_prompt = [int(start)]
        if gen.forced_bos_token_id is not None:
            self.decoder_prompt.append(int(gen.forced_bos_token_id))

    def encode(self, text: str) -> list[int]:
        """The whole text with the tokenizer's special tokens; ``start`` cuts what does not fit."""
        return self.tokenizer(text, verbose=False)["input_ids"]

    def input_limit(self, max_new_tokens):
        limit = self._max_positions() or getattr(self.tokenizer, "model_max_length", None)
        return None if limit is None or limit > 1_000_000 else int(limit)  # huge: the "no limit" sentinel

    def start(self, inputs, max_new_tokens):
        if any(len(x) == 0 for x in inputs):
            raise ValueError("empty source text")
        limit = self.input_limit(max_new_tokens)
        inputs = [self._cut(list(x), limit) for x in inputs]
        ids, mask = pad_rows(inputs, self.pad_token_id, left=False, device=self.device)
        encoder_hidden = self.model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        prompt = torch.tensor([self.decoder_prompt] * len(inputs), dtype=torch.long, device=self.device)
        state = _Seq2SeqState(encoder_hidden, mask, torch.arange(len(inputs), device=self.device), None)
        return self._decode(state, prompt)

    def _cut(self, ids: list[int], limit: int | None) -> list[int]:
        """Cut as the tokenizer's own truncation does: keep the beginning and the closing special token."""
        if limit is None or len(ids) <= limit:
            return ids
        if ids[-1] in self.tokenizer.all_special_ids:
            return [*ids[: limit - 1], ids[-1]]
        return ids[:limit]

    def step(self, state, tokens):
        return self._decode(state, tokens[:, None])

    def _decode(self, state: _Seq2SeqState, decoder_ids: torch.Tensor) -> tuple[torch.Tensor, _Seq2SeqState]:
        out = self.model(
            encoder_outputs=(state.encoder_hidden,),
            attention_mask=state.encoder_mask,
            decoder_input_ids=decoder_ids,
            **{self._cache: state.cache},
            use_cache=True,
        )
        state.cache = out[self._cache]
        return out.logits[:, -1].float(), state

    def reorder(self, state, index):
        """Beam reordering moves rows within one input's group, where the encoder outputs and the
        cross-attention cache are identical: then only the decoder's self-attention cache moves
        (``generate()`` copies both caches every step)."""
        owner = state.owner.index_select(0, index)
        if torch.equal(owner, state.owner):
            state.cache.self_attention_cache.reorder_cache(index)
            return state
        state.cache.reorder_cache(index)
        state.encoder_hidden = state.encoder_hidden.index_select(0, index)
        state.encoder_mask = state.encoder_mask.index_select(0, index)
        state.owner = owner
        return state


@dataclass
class _CausalState:
    cache: Any  # transformers DynamicCache
    mask: torch.Tensor  # [N, L] attention mask over cached positions
    next_pos: torch.Tensor  # [N] position id of the next token


class HFCausal(_HFAdapter):
    """Decoder-only models. Prompts are tokenized without special tokens (as ``generate()`` users
    do); an empty prompt starts from the BOS token; a long prompt keeps its end."""

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def input_limit(self, max_new_tokens):
        return _check_room(self._max_positions(), max_new_tokens, reserved=0)

    def start(self, inputs, max_new_tokens):
        room = self.input_limit(max_new_tokens)
        rows = []
        for p in inputs:
            p = list(p)[len(p) - min(room, len(p)) :] if room is not None else list(p)
            if not p:
                bos = self.model.generation_config.bos_token_id
                if bos is None:
                    raise ValueError(f"{self.name}: empty prompt and the model has no BOS token to start from")
                p = [int(bos)]
            rows.append(p)
        ids, mask = pad_rows(rows, self.pad_token_id, left=True, device=self.device)
        positions = (mask.long().cumsum(-1) - 1).masked_fill(~mask, 0)
        out = self.model(
            input_ids=ids, attention_mask=mask.long(), position_ids=positions, use_cache=True, **self._last_only()
        )
        state = _CausalState(out[self._cache], mask.long(), positions[:, -1] + 1)
        return out.logits[:, -1].float(), state

    def step(self, state, tokens):
        state.mask = torch.cat([state.mask, state.mask.new_ones(len(tokens), 1)], dim=1)
        out = self.model(
            input_ids=tokens[:, None],
            attention_mask=state.mask,
            position_ids=state.next_pos[:, None],
            **{self._cache: state.cache},
            use_cache=True,
            **self._last_only(),
        )
        state.cache = out[self._cache]
        state.next_pos = state.next_pos + 1
        return out.logits[:, -1].float(), state

    def reorder(self, state, index):
        state.cache.reorder_cache(index)
        state.mask = state.mask.index_select(0, index)
        state.next_pos = state.next_pos.index_select(0, index)
        return state

    def _last_only(self) -> dict:
        """Ask for the last position's logits only, as ``generate()`` does (less work, same numbers)."""
        if not hasattr(self, "_logits_kw"):
            takes = "logits_to_keep" in inspect.signature(self.model.forward).parameters
            self._logits_kw = {"logits_to_keep": 1} if takes else {}
        return self._logits_kw


# ---------------------------------------------------------------------- token texts for HF tokenizers
def _decoder_kind(tokenizer) -> str:
    """``bytelevel``, ``wordpiece``, ``metaspace`` or ``plain``: how token strings map to text."""
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    if decoder is None:
        return "plain"
    kinds = decoder.__getstate__().decode("utf-8")  # the decoder's JSON description
    for marker, kind in (('"ByteLevel"', "bytelevel"), ('"WordPiece"', "wordpiece"), ('"Metaspace"', "metaspace")):
        if marker in kinds:
            return kind
    return "plain"


def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode: the printable stand-in character of every byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def special_ids(tokenizer) -> set[int]:
    """Ids of a Hugging Face tokenizer's special tokens, chat markers included (Qwen's
    <|im_start|>, <|im_end|> are special added tokens, not in ``all_special_ids``)."""
    added = getattr(tokenizer, "added_tokens_decoder", {})
    return set(getattr(tokenizer, "all_special_ids", [])) | {i for i, t in added.items() if getattr(t, "special", False)}


def hf_token_texts(tokenizer, vocab_size: int) -> list[str]:
    kind = _decoder_kind(tokenizer)
    special = special_ids(tokenizer)
    byte_of = _byte_decoder() if kind == "bytelevel" else None
    tokens = tokenizer.convert_ids_to_tokens(list(range(min(vocab_size, len(tokenizer)))))
    texts = []
    for i, tok in enumerate(tokens):
        if tok is None or i in special:
            texts.append("")
        elif byte_of is not None:
            raw = bytes(byte_of[c] for c in tok) if all(c in byte_of for c in tok) else tok.encode()
            texts.append(raw.decode("utf-8", "surrogateescape"))
        elif m := _BYTE_FALLBACK.match(tok):
            texts.append(bytes([int(m.group(1), 16)]).decode("utf-8", "surrogateescape"))
        elif kind == "wordpiece":
            texts.append(tok.removeprefix("##"))
        else:
            texts.append(tok.replace("▁", " "))
    texts += [""] * (vocab_size - len(texts))  # output rows beyond the tokenizer (padded embeddings)
    return texts


def join_cjk(text: str) -> str:
    """Drop the spaces a WordPiece decoder puts between CJK characters and CJK punctuation."""
    out = []
    for i, ch in enumerate(text):
        if ch == " " and 0 < i < len(text) - 1 and _cjkish(text[i - 1]) and _cjkish(text[i + 1]):
            continue
        out.append(ch)
    return "".join(out)


def _cjkish(ch: str) -> bool:
    return is_cjk(ch) or 0x3000 <= ord(ch) <= 0x303F or 0xFF00 <= ord(ch) <= 0xFFEF


# ---------------------------------------------------------------------- loading
def load_backbone(model_dir: ModelDir, kind: str, options: LoadOptions) -> Adapter:
    """Our BERT backbone as a ``seq2seq`` (UniLM) or ``causal`` adapter (``families`` entry
    ``textgen-bert``); the windows it was trained on come from its ``textgen.json``."""
    path = model_dir.path
    if kind not in KINDS:
        raise ValueError(f"model kind must be one of {KINDS}, not {kind!r}")
    if not (path / "vocab.txt").is_file():
        raise FileNotFoundError(f"{path} has no vocab.txt for its BERT tokenizer")
    model = BertBackbone.load(path, allow_pickle=options.allow_pickle).to(options.device)
    tokenizer = ChineseTokenizer.from_dir(path)
    adapter = (BackboneCausal if kind == "causal" else BackboneSeq2Seq)(model, tokenizer, model_dir.name, options.device)
    adapter.max_context_tokens = model_dir.max_context_tokens
    if isinstance(adapter, BackboneSeq2Seq):
        adapter.max_source_tokens = model_dir.max_source_tokens
    return adapter


def load_hf(model_dir: ModelDir, kind: str, options: LoadOptions) -> Adapter:
    """A Hugging Face encoder-decoder (``seq2seq``) or decoder-only (``causal``) model; local
    files only, remote code never runs, pickled weights only with ``allow_pickle``."""
    from transformers import AutoConfig

    path = model_dir.path
    if kind not in KINDS:
        raise ValueError(f"model kind must be one of {KINDS}, not {kind!r}")
    _check_config(path)
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    except (ValueError, KeyError, OSError) as e:
        raise ValueError(f"{path}: transformers cannot read this model's config ({_first_line(e)})") from None
    if kind == "seq2seq" and not config.is_encoder_decoder:
        raise ValueError(f"{path} holds a decoder-only model ({config.model_type}); it can only continue text (causal), "
                         "or serve every task once its tokenizer has a chat template")
    if kind == "causal" and config.is_encoder_decoder:
        raise ValueError(f"{path} holds an encoder-decoder model ({config.model_type}); use it for seq2seq tasks")
    model, tokenizer = hf_model(path, kind, options), hf_tokenizer(path)
    cls = HFSeq2Seq if kind == "seq2seq" else HFCausal
    return cls(model, tokenizer, model_dir.name, options.device)


def _check_config(path: Path) -> None:
    """A one-line error for a directory whose config.json is missing or not a JSON object."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path} has no config.json: not a model directory")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{config_file} is not valid JSON: {e}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{config_file} does not hold a JSON object")


DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def hf_model(path: Path, kind: str, options: LoadOptions):
    """A Hugging Face model's weights (safetensors unless ``allow_pickle``), quietly, on ``options.device``.
    ``dtype``: default fp32 on CPU, the checkpoint's on CUDA."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    device, allow_pickle, dtype = options.device, options.allow_pickle, options.dtype

    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    has_safetensors = any(path.glob("*.safetensors"))
    if not has_safetensors and not allow_pickle:
        if any(path.glob("*.bin")) or any(path.glob("*.pt")):
            raise PermissionError(
                f"{path} has only pickled weights; pickles can run code. Convert them to safetensors, "
                "or pass --allow-pickle if you trust the source."
            )
        raise FileNotFoundError(f"{path} holds no *.safetensors weights")
    auto = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    default = torch.float32 if torch.device(device).type == "cpu" else "auto"
    try:
        with _quiet_loading():
            model = auto.from_pretrained(
                path,
                local_files_only=True,
                trust_remote_code=False,
                use_safetensors=True if not allow_pickle else None,
                dtype=DTYPES[dtype] if dtype else default,
            )
    except (ValueError, KeyError, OSError) as e:
        raise ValueError(f"{path}: cannot load the {kind} model ({_first_line(e)})") from None
    check_finite(model.named_parameters(), path)
    return model.to(device)


def hf_tokenizer(path: Path):
    """A Hugging Face tokenizer from local files; remote code never runs."""
    from transformers import AutoTokenizer

    try:
        with _quiet_loading():
            return AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    except (ValueError, KeyError, OSError, TypeError) as e:
        raise ValueError(f"{path}: cannot load its tokenizer ({_first_line(e)})") from None


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """transformers draws a "Loading weights" bar and logs warnings while loading; stderr is for
    the user's messages, so both are off while a model loads (and restored after)."""
    from transformers.utils import logging as hf_logging

    bars, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
