"""Ready-made training runs behind ``textgen train``: pretraining on raw text and seq2seq
fine-tuning on source/target pairs. Both are thin: data -> :class:`TokenData` ->
:class:`MixedBatches` -> :class:`Trainer`, and both write complete model directories."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from textgen.models.backbone import BertBackbone, BertConfig
from textgen.models.model_dir import ModelDir
from textgen.training.export import save_model_dir
from textgen.tokenizer import ChineseTokenizer, build_vocab
from textgen.training.data import MixedBatches, TokenData, pair_ids, specials_of, text_windows
from textgen.training.objectives import LossModel, batch_loss, causal_batch, masked_batch, seq2seq_batch
from textgen.training.trainer import TrainConfig, Trainer

PRETRAIN_SCHEDULE = ("causal", "masked", "causal", "span")


def read_texts(path: str | os.PathLike) -> list[str]:
    """One document a line; blank lines skipped."""
    return [line.strip() for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]


def read_pairs(path: str | os.PathLike, source: str = "text", target: str = "title") -> list[tuple[str, str]]:
    """Source/target pairs from ``.jsonl`` (fields ``source``/``target``) or ``.tsv`` (column
    indices ``source``/``target``, defaulting to 1 and 0: the CLGE ``title<TAB>text`` layout)."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    pairs = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                rec = json.loads(line)
                pairs.append((str(rec[source]), str(rec[target])))
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{n}: expected a JSON object with fields {source!r} and {target!r} ({e})") from None
        elif path.suffix == ".tsv":
            cols = line.split("\t")
            si = int(source) if source.isdigit() else 1
            ti = int(target) if target.isdigit() else 0
            if max(si, ti) >= len(cols):
                raise ValueError(f"{path}:{n}: expected at least {max(si, ti) + 1} tab-separated columns")
            pairs.append((cols[si], cols[ti]))
        else:
            raise ValueError(f"{path}: training pairs must be .jsonl or .tsv")
    if not pairs:
        raise ValueError(f"{path}: no training pairs")
    return pairs


def load_base(path: str | os.PathLike, *, allow_pickle: bool = False) -> tuple[BertBackbone, ChineseTokenizer, dict]:
    """A textgen model directory or a user's HF BERT checkpoint (``config.json``, weights and
    ``vocab.txt``; read in character mode unless its tokenizer config says otherwise)."""
    path = Path(path)
    if not (path / "vocab.txt").exists():
        raise FileNotFoundError(f"{path}: no vocab.txt; a BERT-style base model needs its vocabulary")
    return BertBackbone.load(path, allow_pickle=allow_pickle), ChineseTokenizer.from_dir(path), ModelDir.read(path).meta


def fitting_lengths(context: int) -> dict:
    """``textgen.json`` decoding defaults for a model trained on ``context`` positions: a task whose
    built-in ``max_new_tokens`` would leave the input less than half of them generates less, so
    that a model pretrained on short windows continues text instead of failing every record."""
    from textgen.tasks import TASKS

    decoding = {name: {"max_new_tokens": max(1, context // 2 - 1)} for name, cls in TASKS.items()
                if cls.defaults.get("max_new_tokens", 32) > context // 2}
    return {"decoding": decoding} if decoding else {}


def loss_evaluator(
    dev: TokenData, tok: ChineseTokenizer, kinds: Sequence[str], sparse_k: int = 0
) -> Callable[[BertBackbone], dict[str, float]]:
    """Dev losses (nats/token) for the objectives in ``kinds``; ``dev_loss`` is their mean.
    Masked LM uses a fixed seed so that successive evaluations compare. A model trained with sparse
    softmax is judged by the same sparse loss (``sparse_k``): it leaves the logits outside its top k
    uncalibrated, so its full-softmax cross-entropy rises while its top-k ranking improves."""
    import random

    sp = specials_of(tok)

    @torch.no_grad()
    def evaluate(backbone: BertBackbone) -> dict[str, float]:
        model = LossModel(backbone, sparse_k)
        scores: dict[str, float] = {}
        chunks = range(0, len(dev.windows), 32)
        if "causal" in kinds and dev.windows:
            scores["dev_causal_loss"] = _mean(batch_loss(model, causal_batch(dev.windows[i : i + 32], sp, dev.ends[i : i + 32])) for i in chunks)
        if "masked" in kinds and dev.windows:
            rng = random.Random(0)
            scores["dev_masked_loss"] = _mean(batch_loss(model, masked_batch(dev.windows[i : i + 32], sp, rng)) for i in chunks)
        if "pairs" in kinds and dev.pairs:
            scores["dev_pairs_loss"] = _mean(batch_loss(model, seq2seq_batch(dev.pairs[i : i + 32], sp)) for i in range(0, len(dev.pairs), 32))
        scores["dev_loss"] = round(sum(scores.values()) / max(len(scores), 1), 4)
        return scores

    return evaluate


def _mean(losses) -> float:
    values = [float(x) for x in losses]
    return round(sum(values) / len(values), 4)


def pretrain(
    texts: Sequence[str],
    cfg: TrainConfig,
    *,
    base: str | os.PathLike | None = None,
    dev_texts: Sequence[str] = (),
    hidden: int = 256,
    layers: int = 4,
    max_chars: int = 8000,
    num_words: int = 8000,
    window: int = 128,
    batch_size: int = 32,
    tokenizer_mode: str = "word",
    meta: dict | None = None,
) -> dict:
    """Masked LM + causal LM + UniLM on text spans (one model, three masks). Without ``base`` a
    vocabulary is built from ``texts`` and a fresh backbone of the given size is trained."""
    if base is not None:
        backbone, tok, base_meta = load_base(base)
    else:
        tok = ChineseTokenizer(build_vocab(texts, max_chars=max_chars, num_words=num_words), mode=tokenizer_mode)
        torch.manual_seed(cfg.seed)
        backbone = BertBackbone(BertConfig(
            vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
            intermediate_size=4 * hidden, max_position_embeddings=512,
        ))
        # Positions past [CLS] window [SEP] never train; adapters and `eval lm` stay within them.
        base_meta = {"max_context_tokens": window + 2, **fitting_lengths(window + 2)}
    windows, ends = text_windows(tok, texts, window)
    if not windows:
        raise ValueError("the training text is empty after tokenisation")
    meta = {"tasks": ["continue", "search", "title"], "attention": "unilm", **base_meta, **(meta or {})}
    dev = TokenData(*text_windows(tok, dev_texts, window))
    trainer = Trainer(
        backbone, cfg, MixedBatches(TokenData(windows, ends), specials_of(tok), batch_size, PRETRAIN_SCHEDULE, seed=cfg.seed),
        evaluate=loss_evaluator(dev, tok, PRETRAIN_SCHEDULE) if dev.windows else None,
        save_model=lambda m, d: save_model_dir(m, tok, d, meta),
    )
    return trainer.fit()


def finetune_seq2seq(
    pairs: Sequence[tuple[str, str]],
    base: str | os.PathLike,
    cfg: TrainConfig,
    *,
    dev_pairs: Sequence[tuple[str, str]] = (),
    max_source: int = 200,
    max_target: int = 40,
    batch_size: int = 16,
    noise: float = 0.0,
    task: str = "title",
    allow_pickle: bool = False,
) -> dict:
    """UniLM seq2seq fine-tuning (algorithms.md section 1) from our model or a user's HF BERT."""
    backbone, tok, base_meta = load_base(base, allow_pickle=allow_pickle)
    data = TokenData(pairs=pair_ids(tok, pairs, max_source, max_target))
    if not data.pairs:
        raise ValueError("no usable training pairs (empty source or target after tokenisation)")
    dev = TokenData(pairs=pair_ids(tok, dev_pairs, max_source, max_target))
    tasks = list(dict.fromkeys([task, *base_meta.get("tasks", [])]))
    meta = {**base_meta, "tasks": tasks, "attention": "unilm", "max_source_tokens": max_source}
    trainer = Trainer(
        backbone, cfg, MixedBatches(data, specials_of(tok), batch_size, ("pairs",), seed=cfg.seed, noise=noise),
        evaluate=loss_evaluator(dev, tok, ("pairs",), cfg.sparse_k) if dev.pairs else None,
        save_model=lambda m, d: save_model_dir(m, tok, d, meta),
    )
    return trainer.fit()
