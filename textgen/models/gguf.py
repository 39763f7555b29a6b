"""GGUF models through llama.cpp, driven by textgen's own decoder (``textgen.decoding.generate``).

``GGUFCausal`` implements the step interface of ``textgen.models.adapters`` over llama-cpp-python's
low-level API (the ``llama_cpp`` module: ``llama_decode``, ``llama_get_logits_ith``, the
``llama_memory_seq_*`` KV-cache functions), so greedy, sampling and beam search, the logits
processors and token healing work on any decoder-only GGUF model llama.cpp can run.

How rows map onto llama.cpp
---------------------------
* One llama.cpp context per adapter, with a **unified KV cache** (``kv_unified``): all rows of a
  decoding run share one pool of cells, and each row is a llama.cpp *sequence*. The state keeps
  the sequence id of every row (``_State.seqs``); row i is not necessarily sequence i.
* ``reorder(index)`` makes row i continue what row ``index[i]`` was. The first row to continue a
  sequence takes it over as it is (rows that stay, move or are dropped cost nothing); every
  further row continuing the same sequence gets a free sequence id and ``llama_memory_seq_cp``.
  In a unified cache that copy only tags the source's cells with the new id (no data moves), and
  copies are made into free ids only, so no source is overwritten before it is read. Sequences no
  row continues are removed (``llama_memory_seq_rm``) and their ids reused. Beams therefore
  share their prompt's cells, and a beam search needs about ``prompt + beams x max_new_tokens``
  cells, not ``beams x (prompt + max_new_tokens)``.
* Size: ``start`` sizes the context for ``sum(prompt lengths) + rows x max_new_tokens`` cells
  (rounded up to 256) and at least 16 sequences, and reuses it for later runs while it is large
  enough (and not more than 4x too large); a new run clears all sequences first. When a run needs
  more (a reorder that adds rows, such as the beams of a beam search, or a step that finds no
  free cell), the context is replaced by a larger one and the live sequences move over
  (``llama_state_seq_get_data`` / ``set_data``), so a run never fails for want of room. At most
  256 rows (llama.cpp's ``LLAMA_MAX_SEQ``) can decode at once.
* Each ``llama_decode`` carries one token per row (a prefill carries every prompt, in chunks of
  ``n_batch``) and asks for logits only at each row's last token; the logits are copied once,
  from a numpy view of llama.cpp's output buffer, into a fresh float32 tensor [rows, vocab]
  (returned tensors never change when the context decodes again).
* A state belongs to one run: a later ``start`` on the same adapter invalidates it. The adapter
  is not thread-safe.

Tokens: llama.cpp's own tokenizer (``encode`` parses no special tokens and adds no BOS, as
``HFCausal`` tokenizes prompts); ``token_texts`` gives each id's raw bytes decoded with
``surrogateescape`` (control, unknown and unused tokens give ""); the end tokens are every token
llama.cpp treats as end of generation (``llama_vocab_is_eog``: EOS, EOT, ``<|im_end|>`` ...; also
Qwen's text token ``</s>``, as llama.cpp's own completion does), the model's EOS first. An empty
prompt starts from BOS where the file names one (or the model adds one), else from EOS.

llama.cpp logs through a callback; textgen installs one that prints nothing (for the whole process,
llama-cpp-python's ``Llama`` objects included) and keeps the last error lines for its messages.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from textgen.models.adapters import Adapter, _check_room

GGUF_MAGIC = b"GGUF"
MAX_ROWS = 256  # llama.cpp's LLAMA_MAX_SEQ: sequences one context can hold
_CELL_ROUND = 256  # llama.cpp pads its KV cache to 256 cells
_MIN_SEQS = 16
_BATCH = 512  # tokens per llama_decode call (llama.cpp's default n_batch / n_ubatch)


# ---------------------------------------------------------------------- llama.cpp, quietly
_LOCK = threading.Lock()
_LIB: Any = None
_LOG_CALLBACK: Any = None  # the ctypes callback must stay alive as long as llama.cpp may call it
_ERRORS: deque[str] = deque(maxlen=8)
_LAST_LEVEL = [0]
_GGML_LOG_ERROR, _GGML_LOG_CONT = 4, 5  # ggml_log_level


def _on_log(level: int, text: bytes | None, user_data: Any) -> None:
    """llama.cpp's log lines go nowhere; error lines are kept for our exception messages."""
    try:
        if level != _GGML_LOG_CONT:
            _LAST_LEVEL[0] = level
        if _LAST_LEVEL[0] == _GGML_LOG_ERROR and text:
            line = text.decode("utf-8", "replace").strip()
            if line:
                if level == _GGML_LOG_CONT and _ERRORS:
                    _ERRORS[-1] += " " + line
                else:
                    _ERRORS.append(line)
    except Exception:  # noqa: BLE001 -- an exception must never cross back into C
        pass


def _llama() -> Any:
    """The ``llama_cpp`` module, its backend initialised and its log silenced (once)."""
    global _LIB, _LOG_CALLBACK
    if _LIB is None:
        with _LOCK:
            if _LIB is None:
                try:
                    import llama_cpp
                except ImportError:
                    raise ImportError(
                        "GGUF models need llama-cpp-python: pip install 'textgen-zh[gguf]'"
                    ) from None
                except (OSError, RuntimeError) as e:  # the package is there but its library is not loadable
                    raise ImportError(f"llama-cpp-python is installed but cannot load llama.cpp ({_first_line(e)})") from None
                _check_bindings(llama_cpp)
                _LOG_CALLBACK = llama_cpp.llama_log_callback(_on_log)
                llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))
                llama_cpp.llama_backend_init()
                _LIB = llama_cpp
    return _LIB


_NEEDED_FUNCTIONS = (
    "llama_memory_seq_cp", "llama_memory_seq_rm", "llama_memory_clear", "llama_get_memory", "llama_vocab_is_eog",
    "llama_state_seq_get_data", "llama_state_seq_set_data", "llama_model_is_hybrid", "llama_init_from_model",
)
_NEEDED_FIELDS = ("kv_unified", "swa_full", "flash_attn_type", "n_seq_max")


def _check_bindings(llama_cpp: Any) -> None:
    """Older llama-cpp-python releases lack the memory API and context fields used here; a ctypes
    structure would silently accept an unknown field, so check before anything is configured."""
    fields = {name for name, *_ in llama_cpp.llama_context_params._fields_}
    missing = [f for f in _NEEDED_FUNCTIONS if not hasattr(llama_cpp, f)] + [f for f in _NEEDED_FIELDS if f not in fields]
    if missing:
        version = getattr(llama_cpp, "__version__", "?")
        raise ImportError(f"llama-cpp-python {version} is too old for textgen's GGUF backend "
                          f"(no {', '.join(missing[:3])}); pip install -U 'llama-cpp-python>=0.3.16,<0.4'")


def _last_error(first: bool = False) -> str:
    """llama.cpp's last (or, after ``_ERRORS.clear()``, first) error line."""
    return (_ERRORS[0] if first else _ERRORS[-1]) if _ERRORS else "no message from llama.cpp"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# ---------------------------------------------------------------------- metadata
# GGUF value types (gguf.GGUFValueType): struct formats of the fixed-size ones.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B", 10: "<Q", 11: "<q", 12: "<d"}
_BOOL, _STRING, _ARRAY = 7, 8, 9
_LISTED = 64  # arrays up to this length are returned; longer ones (tokens, merges ...) are skipped


class _Header:
    """A bounds-checked reader of a GGUF header. Every length comes from the file, so every length
    is checked against what the file holds before anything is read or allocated."""

    def __init__(self, data: mmap.mmap, path: Path) -> None:
        self.data, self.path, self.at = data, path, 0

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{self.path}: damaged GGUF header ({what})")

    def take(self, n: int) -> bytes:
        if n < 0 or self.at + n > len(self.data):
            raise self.fail(f"{n} bytes wanted at offset {self.at}, past the end of the file")
        out = self.data[self.at : self.at + n]
        self.at += n
        return out

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def skip_strings(self, count: int) -> None:
        data, at, end = self.data, self.at, len(self.data)
        for _ in range(count):
            if at + 8 > end:
                raise self.fail("string array runs past the end of the file")
            at += 8 + struct.unpack_from("<Q", data, at)[0]
        if at > end:
            raise self.fail("string array runs past the end of the file")
        self.at = at

    def string(self) -> str:
        return self.take(self.unpack("<Q")).decode("utf-8", "replace")

    def value(self, kind: int, depth: int = 0) -> tuple[Any, bool]:
        """(value, kept): long arrays are skipped and not kept."""
        if kind in _SCALARS:
            v = self.unpack(_SCALARS[kind])
            return (bool(v) if kind == _BOOL else v), True
        if kind == _STRING:
            return self.string(), True
        if kind != _ARRAY:
            raise self.fail(f"unknown value type {kind}")
        if depth > 2:
            raise self.fail("arrays nested too deep")
        item, count = self.unpack("<I"), self.unpack("<Q")
        if item in _SCALARS:
            size = struct.calcsize(_SCALARS[item])
            if count * size > len(self.data) - self.at:
                raise self.fail("array runs past the end of the file")
            if count > _LISTED:
                self.at += count * size
                return None, False
            return [self.value(item, depth + 1)[0] for _ in range(count)], True
        if item == _STRING and count > _LISTED:
            self.skip_strings(count)
            return None, False
        if count > len(self.data) - self.at:  # every element takes at least one byte
            raise self.fail("array runs past the end of the file")
        items = [self.value(item, depth + 1) for _ in range(count)]
        keep = count <= _LISTED and all(k for _, k in items)
        return ([v for v, _ in items] if keep else None), keep


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """A GGUF file's key-value metadata (``general.name``, ``general.architecture``,
    ``<arch>.context_length``, ``tokenizer.chat_template`` ...), without loading the model.

    Values are plain Python data (str, int, float, bool, short lists); arrays of more than 64
    items (the vocabulary, merges, token types) are left out. Everything comes from the file and
    is untrusted: strings are decoded with ``errors="replace"`` and may hold anything, including
    a hostile chat template (render templates only with ``textgen.models.chat_template``).

    The ``gguf`` package's ``GGUFReader`` parses every tensor and token entry on opening (about 10
    seconds for a 150k-token vocabulary on a busy 2-core machine); this reader reads the header's
    key-value section alone, skipping long arrays."""
    path = Path(path).expanduser()
    _check_gguf_file(path)
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        h = _Header(data, path)
        h.take(4)
        version = h.unpack("<I")
        if version not in (2, 3):
            raise ValueError(f"{path}: GGUF version {version} is not supported (2 and 3 are)")
        h.unpack("<Q")  # tensor count
        n_kv = h.unpack("<Q")
        if n_kv > len(data):
            raise h.fail(f"{n_kv} key-value pairs")
        out: dict[str, Any] = {}
        for _ in range(n_kv):
            key = h.string()
            value, kept = h.value(h.unpack("<I"))
            if kept:
                out[key] = value
        return out


def _check_gguf_file(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {path}")
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({_first_line(e)})") from None
    if magic != GGUF_MAGIC:
        raise ValueError(f"{path} is not a GGUF file")


def context_length(metadata: dict[str, Any]) -> int | None:
    """``<general.architecture>.context_length`` from ``read_metadata``, when it is a positive int."""
    arch = metadata.get("general.architecture")
    value = metadata.get(f"{arch}.context_length") if isinstance(arch, str) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


# ---------------------------------------------------------------------- batches
class _Batch:
    """A ``llama_batch`` over numpy arrays we own (one sequence id per token), filled with
    vectorised writes; never passed to ``llama_batch_free``."""

    def __init__(self, lib: Any, capacity: int) -> None:
        self.capacity = capacity
        self.token = np.zeros(capacity, np.int32)
        self.pos = np.zeros(capacity, np.int32)
        self.n_seq_id = np.ones(capacity, np.int32)
        self.seq = np.zeros(capacity, np.int32)
        self.logits = np.zeros(capacity, np.int8)
        i32 = ctypes.POINTER(ctypes.c_int32)
        base = self.seq.ctypes.data
        self._seq_ptrs = (i32 * capacity)(*(ctypes.cast(base + 4 * i, i32) for i in range(capacity)))
        b = lib.llama_batch()
        b.n_tokens = 0
        b.token = self.token.ctypes.data_as(i32)
        b.embd = None
        b.pos = self.pos.ctypes.data_as(i32)
        b.n_seq_id = self.n_seq_id.ctypes.data_as(i32)
        b.seq_id = ctypes.cast(self._seq_ptrs, ctypes.POINTER(i32))
        b.logits = self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
        self.struct = b

    def fill(self, tokens: np.ndarray, pos: np.ndarray, seq: np.ndarray, outputs: np.ndarray) -> None:
        n = len(tokens)
        self.token[:n] = tokens
        self.pos[:n] = pos
        self.seq[:n] = seq
        self.logits[:n] = outputs
        self.struct.n_tokens = n


# ---------------------------------------------------------------------- the adapter
@dataclass
class _State:
    run: int  # the decoding run (start call) this state belongs to
    seqs: np.ndarray  # int32 [N]: llama.cpp sequence id of each row
    pos: np.ndarray  # int32 [N]: position of each row's next token
    steps: int  # tokens stepped so far
    max_new_tokens: int


class GGUFCausal(Adapter):
    """A decoder-only GGUF model; see the module docstring for how rows map onto llama.cpp.

    Extra attributes: ``path``, ``context_length`` (the model's training context),
    ``bos_token_id`` (None without one), ``add_bos`` (whether the model wants BOS before text),
    ``eos_token_id`` (the model's EOS; ``eos_token_ids`` holds every end-of-generation token),
    ``n_threads``, ``chat_template`` (str or None, untrusted), ``metadata`` (``read_metadata``),
    ``special_ids`` (control, unknown and unused tokens)."""

    def __init__(self, path: Path, model: Any, *, n_threads: int, n_ctx: int | None, flash_attn: bool) -> None:
        lib = self._lib = _llama()
        self._model = model  # owned from here on: close() frees it
        self._ctx: int | None = None  # llama_context *
        self.path = path
        self.name = path.stem
        self.device = torch.device("cpu")
        self.n_threads = n_threads
        self._min_cells = n_ctx or 0
        self._flash_attn = flash_attn
        if lib.llama_model_has_encoder(model) or not lib.llama_model_has_decoder(model):
            raise ValueError(f"{path}: encoder-decoder and encoder-only GGUF models are not supported")
        diffusion = getattr(lib, "llama_model_is_diffusion", lambda m: False)
        if lib.llama_model_is_recurrent(model) or lib.llama_model_is_hybrid(model) or diffusion(model):
            raise ValueError(f"{path}: recurrent, hybrid and diffusion models are not supported (only transformer decoders)")
        vocab = self._vocab = lib.llama_model_get_vocab(model)
        self.vocab_size = int(lib.llama_vocab_n_tokens(vocab))
        self.context_length = int(lib.llama_model_n_ctx_train(model))

        def valid(token: int) -> bool:
            return 0 <= token < self.vocab_size

        self.add_bos = bool(lib.llama_vocab_get_add_bos(vocab))
        bos = int(lib.llama_vocab_bos(vocab))
        # llama.cpp falls back on a per-tokenizer default BOS (id 11 for byte-level BPE) when the
        # file names none; a model has a BOS only when its file names one or it adds one.
        named = lib.llama_model_meta_val_str(model, b"tokenizer.ggml.bos_token_id", None, 0) >= 0
        self.bos_token_id = bos if valid(bos) and (named or self.add_bos) else None
        is_eog = lib.llama_vocab_is_eog
        ends = {i for i in range(self.vocab_size) if is_eog(vocab, i)}
        eos = int(lib.llama_vocab_eos(vocab))
        ends |= {t for t in (eos, int(lib.llama_vocab_eot(vocab))) if valid(t)}
        if not ends:
            raise ValueError(f"{path}: the model names no end-of-generation token")
        # The model's own EOS first (callers take eos_token_ids[0] as "the" end token), then the
        # other end-of-generation tokens. llama.cpp also counts some text tokens as ends, e.g.
        # Qwen's "</s>" (128247): its own completion stops there too.
        self.eos_token_id = eos if valid(eos) else min(ends)
        self.eos_token_ids = [self.eos_token_id, *sorted(ends - {self.eos_token_id})]
        pad = int(lib.llama_vocab_pad(vocab))
        self.pad_token_id = pad if valid(pad) else self.eos_token_id

        self._mem: int | None = None  # the context's llama_memory_t
        self._cells = 0  # the context's KV cells (n_ctx)
        self._seqs = 0  # the context's sequences (n_seq_max)
        self._n_batch = 0
        self._batch = _Batch(lib, _BATCH)
        self._run = 0
        self._live: set[int] = set()  # sequence ids rows use
        self._free: list[int] = []  # sequence ids no row uses (pop() gives the lowest)
        self._prompt_cells = 0
        self._pieces: dict[int, bytes] = {}
        self._piece_buf = ctypes.create_string_buffer(256)

    # ------------------------------------------------------------------ tokens
    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        """llama.cpp's tokenization of ``text``, without BOS; ``special=True`` parses special
        tokens written in the text (``<|im_start|>`` ...), as a rendered chat prompt needs."""
        try:
            data = text.encode("utf-8", "surrogateescape")  # surrogate escapes (token_texts' lone bytes) become those bytes
        except UnicodeEncodeError:  # other lone surrogates
            data = text.encode("utf-8", "replace")
        if not data:
            return []
        lib = self._lib
        size = len(data) + 16
        for _ in range(2):
            buf = (lib.llama_token * size)()
            n = lib.llama_tokenize(self._vocab, data, len(data), buf, size, False, special)
            if n >= 0:
                return buf[:n]
            size = -n
        raise RuntimeError(f"{self.name}: llama.cpp could not tokenize the text ({_last_error()})")

    def encode(self, text: str) -> list[int]:
        return self.tokenize(text)

    def piece(self, token: int, *, special: bool = False) -> bytes:
        """The raw bytes of one token (``special``: control tokens render as their text too)."""
        if not special and token in self._pieces:
            return self._pieces[token]
        lib, buf = self._lib, self._piece_buf
        n = lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        if n < 0:
            big = ctypes.create_string_buffer(-n)
            n = lib.llama_token_to_piece(self._vocab, token, big, len(big), 0, special)
            raw = ctypes.string_at(big, max(n, 0))
        else:
            raw = ctypes.string_at(buf, n)
        if not special:
            if token in self.special_ids:
                raw = b""
            self._pieces[token] = raw
        return raw

    @cached_property
    def special_ids(self) -> frozenset[int]:
        """Control, unknown and unused tokens: no surface text, skipped by ``decode``."""
        lib, vocab = self._lib, self._vocab
        mask = lib.LLAMA_TOKEN_ATTR_CONTROL | lib.LLAMA_TOKEN_ATTR_UNKNOWN | lib.LLAMA_TOKEN_ATTR_UNUSED
        attr = lib.llama_vocab_get_attr
        return frozenset(i for i in range(self.vocab_size) if attr(vocab, i) & mask)

    def decode(self, ids: Sequence[int]) -> str:
        v = self.vocab_size
        return b"".join(self.piece(int(i)) for i in ids if 0 <= int(i) < v).decode("utf-8", "replace")

    def token_texts(self) -> list[str]:
        if not hasattr(self, "_texts"):
            self._texts = [self.piece(i).decode("utf-8", "surrogateescape") for i in range(self.vocab_size)]
        return list(self._texts)

    @cached_property
    def chat_template(self) -> str | None:
        raw = self._lib.llama_model_chat_template(self._model, None)
        return raw.decode("utf-8", "replace") if raw else None

    @cached_property
    def metadata(self) -> dict[str, Any]:
        return read_metadata(self.path)

    def render_chat(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True, **extra: Any) -> str:
        """The model's own chat template over ``messages`` in the sandbox of
        ``textgen.models.chat_template`` (``bos_token`` is given only to models that add BOS).
        Tokenize the result with ``tokenize(text, special=True)``."""
        from textgen.models.chat_template import ChatTemplateError, render_chat_template

        if self.chat_template is None:
            raise ChatTemplateError(f"{self.name} has no chat template")
        bos = self.piece(self.bos_token_id, special=True) if self.bos_token_id is not None and self.add_bos else b""
        eos_text = self.piece(self.eos_token_id, special=True)
        return render_chat_template(
            self.chat_template, messages, add_generation_prompt=add_generation_prompt,
            bos_token=bos.decode("utf-8", "replace"), eos_token=eos_text.decode("utf-8", "replace"), **extra,
        )

    # ------------------------------------------------------------------ step interface
    def input_limit(self, max_new_tokens: int) -> int | None:
        return _check_room(self.context_length, max_new_tokens, reserved=0)

    def start(self, inputs: Sequence[Sequence[int]], max_new_tokens: int) -> tuple[torch.Tensor, _State]:
        if not inputs:
            raise ValueError("start() needs at least one input")
        if len(inputs) > MAX_ROWS:
            raise ValueError(f"{len(inputs)} inputs: llama.cpp decodes at most {MAX_ROWS} rows at once")
        room = self.input_limit(max_new_tokens)
        rows = []
        for p in inputs:
            p = [int(t) for t in p]
            p = p[len(p) - min(room, len(p)) :]  # a long prompt keeps its end
            if not p:
                p = [self.bos_token_id if self.bos_token_id is not None else self.eos_token_id]
            rows.append(p)
        tokens = np.fromiter((t for r in rows for t in r), np.int64)
        self._check_tokens(tokens)
        lengths = np.array([len(r) for r in rows], np.int32)
        self._prompt_cells = int(lengths.sum())
        self._prepare(self._prompt_cells + len(rows) * max_new_tokens, len(rows))
        self._run += 1
        seq = np.repeat(np.arange(len(rows), dtype=np.int32), lengths)
        pos = np.concatenate([np.arange(n, dtype=np.int32) for n in lengths])
        outputs = np.zeros(len(tokens), np.int8)
        outputs[np.cumsum(lengths) - 1] = 1
        self._live = set(range(len(rows)))
        self._free = list(range(self._seqs - 1, len(rows) - 1, -1))
        logits = self._decode(tokens.astype(np.int32), pos, seq, outputs, len(rows))
        state = _State(self._run, np.arange(len(rows), dtype=np.int32), lengths, 0, max_new_tokens)
        return logits, state

    def step(self, state: _State, tokens: torch.Tensor) -> tuple[torch.Tensor, _State]:
        self._check_state(state)
        ids = tokens.detach().to("cpu", torch.int64).numpy().reshape(-1)
        if len(ids) != len(state.seqs):
            raise ValueError(f"step() got {len(ids)} tokens for {len(state.seqs)} rows")
        if len(ids) == 0:
            return torch.empty(0, self.vocab_size), state
        self._check_tokens(ids)
        logits = self._decode(ids.astype(np.int32), state.pos, state.seqs, np.ones(len(ids), np.int8), len(ids))
        state.pos = state.pos + 1
        state.steps += 1
        return logits, state

    def reorder(self, state: _State, index: torch.Tensor) -> _State:
        self._check_state(state)
        idx = [int(i) for i in index.detach().cpu().reshape(-1).tolist()]
        n = len(state.seqs)
        if idx == list(range(n)):
            return state
        if any(i < 0 or i >= n for i in idx):
            raise IndexError(f"reorder index out of range for {n} rows")
        if len(idx) > MAX_ROWS:
            raise ValueError(f"{len(idx)} rows: llama.cpp decodes at most {MAX_ROWS} rows at once")
        lib = self._lib
        kept = set(idx)
        for row in range(n):
            if row not in kept:  # no row continues it: free its cells and its id
                seq = int(state.seqs[row])
                lib.llama_memory_seq_rm(self._mem, seq, -1, -1)
                self._live.discard(seq)
                self._free.append(seq)
        copies = len(idx) - len(kept)
        if copies:
            cells = self._prompt_cells + len(idx) * state.max_new_tokens  # beams share the prompt's cells
            if copies > len(self._free) or cells > self._cells:
                # More rows than the context was made for: a larger context, live sequences moved.
                moved = int(sum(int(state.pos[r]) for r in kept))  # moving drops sharing
                remaining = max(state.max_new_tokens - state.steps, 1)
                self._grow(max(cells, moved + len(idx) * remaining), len(idx))
        seqs = np.empty(len(idx), np.int32)
        taken: set[int] = set()
        for j, row in enumerate(idx):
            src = int(state.seqs[row])
            if row in taken:
                dst = self._free.pop()
                lib.llama_memory_seq_cp(self._mem, src, dst, -1, -1)
                self._live.add(dst)
                seqs[j] = dst
            else:
                taken.add(row)
                seqs[j] = src
        state.seqs = seqs
        state.pos = state.pos[idx]
        return state

    # ------------------------------------------------------------------ llama.cpp plumbing
    def _check_state(self, state: _State) -> None:
        if not isinstance(state, _State) or state.run != self._run or self._ctx is None:
            raise RuntimeError(f"{self.name}: this decoding state is stale (a later start() reused the context)")

    def _check_tokens(self, ids: np.ndarray) -> None:
        if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise ValueError(f"token id out of range for {self.name}'s vocabulary of {self.vocab_size}")

    def _prepare(self, cells: int, rows: int) -> None:
        """A context with room for ``cells`` tokens and ``rows`` sequences, all sequences cleared:
        the current one when it is large enough and not far too large, else a new one."""
        cells = max(cells, self._min_cells, 1)
        fits = self._ctx is not None and self._cells >= cells and self._seqs >= rows
        if fits and self._cells <= max(4 * cells, 4096, self._min_cells):
            self._lib.llama_memory_clear(self._mem, False)
            return
        self._free_context()
        self._open(cells, rows)

    def _open(self, cells: int, rows: int) -> None:
        lib = self._lib
        cells = -(-max(cells, self._min_cells, 1) // _CELL_ROUND) * _CELL_ROUND
        seqs = min(MAX_ROWS, max(_MIN_SEQS, 1 << (max(rows, 1) - 1).bit_length()))
        p = lib.llama_context_default_params()
        p.n_ctx = cells
        p.n_batch = p.n_ubatch = min(_BATCH, cells)
        p.n_seq_max = seqs
        p.n_threads = p.n_threads_batch = self.n_threads
        p.kv_unified = True  # one pool of cells for all rows: beams share their prompt
        p.swa_full = True  # sliding-window models keep every cell, so copied sequences stay whole
        p.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_ENABLED if self._flash_attn else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        p.no_perf = True
        p.embeddings = False
        ctx = lib.llama_init_from_model(self._model, p)
        if not ctx:
            raise RuntimeError(f"{self.name}: llama.cpp cannot make a context of {cells} tokens ({_last_error()})")
        self._ctx, self._mem = ctx, lib.llama_get_memory(ctx)
        self._cells, self._seqs = int(lib.llama_n_ctx(ctx)), int(lib.llama_n_seq_max(ctx))
        self._n_batch = min(int(lib.llama_n_batch(ctx)), self._batch.capacity)

    def _grow(self, cells: int, rows: int) -> None:
        """Replace the context by one with at least ``cells`` cells and ``rows`` sequences, moving
        every live sequence (same ids) through llama.cpp's per-sequence state."""
        lib, old = self._lib, self._ctx
        blobs = []
        for seq in sorted(self._live):
            size = lib.llama_state_seq_get_size(old, seq)
            buf = (ctypes.c_uint8 * size)()
            blobs.append((seq, buf, lib.llama_state_seq_get_data(old, buf, size, seq)))
        self._ctx = None
        try:
            self._open(max(cells + cells // 4, self._cells), max(rows, max(self._live, default=0) + 1))
            for seq, buf, size in blobs:
                if lib.llama_state_seq_set_data(self._ctx, buf, size, seq) == 0:
                    raise RuntimeError(f"{self.name}: could not move a sequence to a larger context ({_last_error()})")
        finally:
            lib.llama_free(old)
        self._free = sorted(set(range(self._seqs)) - self._live, reverse=True)

    def _decode(self, tokens: np.ndarray, pos: np.ndarray, seq: np.ndarray, outputs: np.ndarray, n_out: int) -> torch.Tensor:
        """Decode tokens (chunks of n_batch) and return the logits of the tokens marked in
        ``outputs``, in order, as a new float32 tensor [n_out, vocab]."""
        lib, ctx_v = self._lib, self.vocab_size
        logits = torch.empty(n_out, ctx_v, dtype=torch.float32)
        out = logits.numpy()
        done = 0
        for a in range(0, len(tokens), self._n_batch):
            b = min(len(tokens), a + self._n_batch)
            self._batch.fill(tokens[a:b], pos[a:b], seq[a:b], outputs[a:b])
            self._decode_batch()
            marked = np.flatnonzero(outputs[a:b])
            if len(marked) == 0:
                continue
            first = lib.llama_get_logits_ith(self._ctx, int(marked[0]))
            last = lib.llama_get_logits_ith(self._ctx, int(marked[-1]))
            if not first or not last:
                raise RuntimeError(f"{self.name}: llama.cpp returned no logits ({_last_error()})")
            k = len(marked)
            start = ctypes.cast(first, ctypes.c_void_p).value
            if ctypes.cast(last, ctypes.c_void_p).value - start == (k - 1) * ctx_v * 4:  # contiguous, in batch order
                out[done : done + k] = np.ctypeslib.as_array(first, shape=(k, ctx_v))
            else:
                for j, m in enumerate(marked):
                    row = lib.llama_get_logits_ith(self._ctx, int(m))
                    out[done + j] = np.ctypeslib.as_array(row, shape=(ctx_v,))
            done += k
        return logits

    def _decode_batch(self) -> None:
        lib = self._lib
        for attempt in range(3):
            ret = lib.llama_decode(self._ctx, self._batch.struct)
            if ret == 0:
                return
            if ret != 1 or attempt == 2:
                break
            # No free cell for the batch (nothing was written): a larger context, then again.
            self._grow(2 * self._cells, self._seqs)
        raise RuntimeError(f"{self.name}: llama_decode failed with status {ret} ({_last_error()})")

    def _free_context(self) -> None:
        if self._ctx is not None:
            self._lib.llama_free(self._ctx)
        self._ctx = self._mem = None
        self._cells = self._seqs = 0

    def close(self) -> None:
        """Free the llama.cpp context and model now (also done when the adapter is collected)."""
        lib = getattr(self, "_lib", None)
        if lib is None:
            return
        try:
            if getattr(self, "_ctx", None) is not None:
                lib.llama_free(self._ctx)
            self._ctx = self._mem = None
            if getattr(self, "_model", None) is not None:
                lib.llama_model_free(self._model)
            self._model = None
        except Exception:  # noqa: BLE001 -- interpreter shutdown may have torn the library down
            pass

    def __del__(self) -> None:
        self.close()


def load_gguf(
    path: str | os.PathLike,
    *,
    n_threads: int | None = None,
    n_ctx: int | None = None,
    n_gpu_layers: int = 0,
    flash_attn: bool = False,
    cls: type[GGUFCausal] | None = None,
) -> GGUFCausal:
    """Load a GGUF model file for textgen's decoder.

    ``n_threads``: llama.cpp's threads (default ``min(4, os.cpu_count())``). ``n_ctx``: the
    initial KV-cache size in tokens, all rows together (default: sized per decoding run; it grows
    when a run needs more either way). ``n_gpu_layers`` layers go to a GPU when llama.cpp was built
    with one (logits still come back as CPU tensors). ``flash_attn`` turns on llama.cpp's flash
    attention. A missing file raises FileNotFoundError, a file llama.cpp cannot use ValueError,
    a missing llama-cpp-python ImportError, each with a one-line message."""
    path = Path(path).expanduser()
    _check_gguf_file(path)
    if n_threads is None:
        n_threads = min(4, os.cpu_count() or 1)
    if not isinstance(n_threads, int) or n_threads < 1:
        raise ValueError(f"n_threads must be a positive integer, not {n_threads!r}")
    if n_ctx is not None and (not isinstance(n_ctx, int) or n_ctx < 1):
        raise ValueError(f"n_ctx must be a positive integer, not {n_ctx!r}")
    lib = _llama()
    params = lib.llama_model_default_params()
    params.n_gpu_layers = n_gpu_layers
    _ERRORS.clear()
    model = lib.llama_model_load_from_file(os.fsencode(path), params)
    if not model:
        raise ValueError(f"{path}: llama.cpp cannot load this model ({_last_error(first=True)})")
    cls = cls or GGUFCausal  # a subclass adds to the adapter (textgen.models.gguf_chat: chat prompts)
    return cls(path, model, n_threads=n_threads, n_ctx=n_ctx, flash_attn=flash_attn)  # frees it on failure
