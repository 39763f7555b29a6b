"""Training the extractive tagger (algorithms.md 2.2 steps 4-6): BCE per clause, Adam, a checkpoint
chosen by the char "main" score of the extraction on held-out documents (SPACES: clauses above 0.3;
here the likeliest clauses within 250 characters, since our probabilities rarely pass 0.3 -- see
``textgen.summarize.extractor``), and cross-fitting so that every training document gets an extraction from a tagger that
never saw it (the generator must learn from the extractor's real mistakes, not from the oracle).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from textgen.summarize.extractor import select
from textgen.summarize.oracle import main_score
from textgen.summarize.tagger import ClauseTagger, Document, TaggerConfig

SELECT_CHARS = 250  # checkpoints are chosen by the likeliest clauses within 250 characters


@dataclass
class TrainConfig:
    width: int = 384
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    select_chars: int = SELECT_CHARS


def _batch(docs: Sequence[Document]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(d.vectors) for d in docs)
    x = torch.zeros(len(docs), width, docs[0].vectors.shape[1])
    y = torch.zeros(len(docs), width)
    mask = torch.zeros(len(docs), width, dtype=torch.bool)
    for i, d in enumerate(docs):
        x[i, : len(d.vectors)] = d.vectors
        mask[i, : len(d.vectors)] = True
        y[i, d.labels] = 1.0
    return x, y, mask


def extraction_score(docs: Sequence[Document], probs: Sequence[Sequence[float]], chars: int = SELECT_CHARS) -> float:
    """Mean char "main" score (0.2 R-1 + 0.4 R-2 + 0.4 R-L F, x100) against the reference summaries
    of the likeliest clauses within ``chars`` characters, in document order."""
    total = 0.0
    for d, p in zip(docs, probs):
        kept, _ = select(p, [len(c) for c in d.clauses], chars)
        total += main_score("".join(d.clauses[i] for i in kept), d.summary)
    return 100 * total / max(len(docs), 1)


def _length_batches(lengths: Sequence[int], size: int, rng: random.Random) -> list[list[int]]:
    """Batches of documents of similar length (lengths jittered by 10% so batches vary between
    epochs), in random order: padding costs little, unlike random batches of 100- to 1,000-clause
    documents."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i] * rng.uniform(0.9, 1.1))
    batches = [order[i : i + size] for i in range(0, len(order), size)]
    rng.shuffle(batches)
    return batches


def predict(tagger: ClauseTagger, docs: Sequence[Document]) -> list[list[float]]:
    return [tagger.probabilities(d.vectors).tolist() for d in docs]


def train_tagger(
    train: Sequence[Document],
    held_out: Sequence[Document],
    cfg: TrainConfig,
    log: Callable[[str], None] = lambda _: None,
    score: Callable[[Sequence[Document], list[list[float]]], float] | None = None,
) -> tuple[ClauseTagger, dict]:
    """Train on ``train``; return the epoch's weights that scored best on ``held_out`` with a
    record of the run. ``score(documents, probabilities)`` rates an epoch (default: the
    ``extraction_score`` of summaries within ``cfg.select_chars``)."""
    if score is None:
        score = lambda docs, probs: extraction_score(docs, probs, cfg.select_chars)  # noqa: E731
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    tagger = ClauseTagger(TaggerConfig(input_dim=train[0].vectors.shape[1], width=cfg.width))
    opt = torch.optim.Adam(tagger.parameters(), lr=cfg.lr)
    best: dict = {"score": -1.0}
    for epoch in range(1, cfg.epochs + 1):
        tagger.train()
        loss_sum = 0.0
        for batch in _length_batches([len(d.vectors) for d in train], cfg.batch_size, rng):
            x, y, mask = _batch([train[i] for i in batch])
            logits = tagger(x, mask)
            loss = F.binary_cross_entropy_with_logits(logits[mask], y[mask])
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(x)
        rating = score(held_out, predict(tagger, held_out))
        log(f"epoch {epoch}: loss {loss_sum / len(train):.4f}, held-out score {rating:.2f}")
        if rating > best["score"]:
            best = {"score": rating, "epoch": epoch, "state": {k: v.clone() for k, v in tagger.state_dict().items()}}
    tagger.load_state_dict(best.pop("state"))
    return tagger.eval(), best


def folds_of(n: int, k: int, seed: int = 0) -> list[int]:
    """The fold of each of ``n`` documents: ``position % k`` after a seeded shuffle (SPACES)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    fold = [0] * n
    for position, doc in enumerate(order):
        fold[doc] = position % k
    return fold


def cross_fit(
    docs: Sequence[Document],
    k: int,
    cfg: TrainConfig,
    log: Callable[[str], None] = lambda _: None,
    store: Path | None = None,
    key: str = "",
) -> tuple[list[list[float]], list[dict]]:
    """Out-of-fold probabilities for every document: ``k`` taggers, each trained on the other
    folds, its checkpoint chosen on its own fold, predicting only that fold. With ``store`` each
    fold is saved there as it finishes (``fold-F-of-K.pt``, tagged with ``key``), so a stopped
    run resumes with the next fold."""
    fold = folds_of(len(docs), k, cfg.seed)
    probs: list[list[float]] = [[] for _ in docs]
    runs = []
    for f in range(k):
        path = Path(store) / f"fold-{f}-of-{k}.pt" if store is not None else None
        saved = torch.load(path, weights_only=False) if path is not None and path.exists() else {}
        if saved.get("key") != key:
            held = [i for i, g in enumerate(fold) if g == f]
            inside = [d for d, g in zip(docs, fold) if g != f]
            tagger, run = train_tagger(inside, [docs[i] for i in held], cfg, lambda m, f=f: log(f"fold {f + 1}/{k} {m}"))
            saved = {"key": key, "held": held, "probs": predict(tagger, [docs[i] for i in held]), "run": run}
            if path is not None:
                torch.save(saved, path)
        log(f"fold {f + 1}/{k}: best epoch {saved['run']['epoch']}, held-out main {saved['run']['score']:.2f}")
        for i, p in zip(saved["held"], saved["probs"]):
            probs[i] = p
        runs.append({"fold": f, **saved["run"]})
    return probs, runs


def write_out_of_fold(
    path: Path, docs: Sequence[Document], probs: Sequence[Sequence[float]], sources: Sequence[str],
    tokens: Callable[[str], int], budget: int,
) -> None:
    """The out-of-fold extractions for the generator's training, one JSON line per document:
    ``index``, ``sha1`` (of the document text), ``probs`` (per clause), ``selected`` and
    ``extraction``: the likeliest clauses within ``budget`` tokens, as the summarize task picks them."""
    with Path(path).open("w", encoding="utf-8") as f:
        for k, (d, p, source) in enumerate(zip(docs, probs, sources)):
            chosen, _ = select(p, [tokens(c) for c in d.clauses], budget)
            row = {"index": k, "sha1": hashlib.sha1(source.encode("utf-8")).hexdigest(),
                   "probs": [round(x, 4) for x in p], "selected": chosen,
                   "extraction": "".join(d.clauses[i] for i in chosen)}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def out_of_fold_extractions(path: Path) -> dict[str, str]:
    """What ``write_out_of_fold`` wrote, as document SHA-1 -> extraction: the generator's training
    looks a training document up by ``hashlib.sha1(document.encode()).hexdigest()``."""
    rows = (json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip())
    return {row["sha1"]: row["extraction"] for row in rows}


def weights_cache(model_dir: Path, root: Path, cache: Path | None = None) -> tuple[Path, str]:
    """The cache directory (``cache``, else ``root/<model name>-<weights hash>``; created) and the
    SHA-256 of the backbone's weights: where a training script keeps what it computed from these
    weights, so a rerun after a stop resumes and new weights start afresh."""
    from textgen.models.model_dir import ModelDir
    from textgen.summarize.extractor import backbone_fingerprint

    fingerprint = backbone_fingerprint(model_dir)
    name = ModelDir.read(model_dir).name
    cache = Path(cache) if cache is not None else Path(root) / f"{name}-{fingerprint[:8]}"
    cache.mkdir(parents=True, exist_ok=True)
    return cache, fingerprint


def cached_documents(path: Path, key: str, build: Callable[[], list[Document]]) -> list[Document]:
    """The documents saved at ``path`` when they were saved under ``key`` (vectors in fp16), else
    ``build()``'s, saved there: clause vectors are the slow part of a tagger's training."""
    path = Path(path)
    if path.exists():
        saved = torch.load(path, weights_only=False)
        if saved.get("key") == key:
            return [Document(v.float(), labels, clauses, summary) for v, labels, clauses, summary in saved["docs"]]
    docs = build()
    torch.save({"key": key, "docs": [(d.vectors.half(), d.labels, d.clauses, d.summary) for d in docs]}, path)
    return docs


def build_documents(
    pairs: Sequence[tuple[str, str]],
    encoder,
    progress: Callable[[int], None] | None = None,
) -> list[Document]:
    """(document, summary) pairs as tagger documents: clauses, clause vectors and oracle labels.
    Every clause of every document is encoded in one pass (batches of similar length)."""
    from textgen.summarize.clauses import split_clauses
    from textgen.summarize.oracle import oracle_labels

    split = [split_clauses(doc) for doc, _ in pairs]
    vectors = encoder.encode([c for clauses in split for c in clauses], progress)
    docs, start = [], 0
    for clauses, (_, summary) in zip(split, pairs):
        labels = oracle_labels(clauses, split_clauses(summary))
        docs.append(Document(vectors[start : start + len(clauses)].clone(), labels, clauses, summary))
        start += len(clauses)
    return docs
