"""Train the title selector of a backbone and write it into the backbone's model directory.

    python scripts/train_title_selector.py --backbone textgen/models/embedded/mini-zh-title

One command, resumable (clause vectors are cached under ``--cache``, default
``runs/title-selector/<model>-<weights hash>``):

1. article-title pairs from the three title sources, ``--per-source`` of each (seeded sample):
   ``csl-train``, ``inews-train``, ``cctv-train``; the last ``--select`` of each sample are held out
   of training to choose the epoch (so the dev splits below are never used to choose anything);
2. the clause vectors of each article's head with the position features and labels
   (``textgen.titles.training.build_documents``);
3. the tagger (``ClauseTagger``, ``--width``) trained for ``--epochs``, the epoch with the best mean
   char ROUGE-L of its headlines on the held-out selection split kept;
4. the shortest headline (``min_chars``: a shorter clause takes the next with it) chosen on the same
   held-out training articles;
5. char ROUGE-1/2/L (x100) on the first ``--report`` pairs of ``csl-dev``, ``inews-dev`` and
   ``cctv-dev``: the selector's headlines against lead-20 (the article's first 20 characters);
6. ``title-selector.safetensors`` (fp16) and ``title-selector.json`` (config, backbone fingerprint,
   data, numbers) written into ``--backbone``.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads are ~50x slower on a busy CPU

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from textgen.evaluation.metrics import score_corpus  # noqa: E402
from textgen.models.model_dir import ModelDir  # noqa: E402
from textgen.models.backbone import BertBackbone  # noqa: E402
from textgen.summarize.tagger import Document  # noqa: E402
from textgen.summarize.training import TrainConfig, cached_documents, predict, train_tagger, weights_cache  # noqa: E402
from textgen.summarize.vectors import ClauseEncoder  # noqa: E402
from textgen.titles.selector import MIN_CHARS_CHOICES, NAME  # noqa: E402
from textgen.titles.training import build_documents, chosen_headlines, headline_score  # noqa: E402
from textgen.tokenizer import ChineseTokenizer  # noqa: E402
from textgen.training.corpus import title_pairs  # noqa: E402

SOURCES = ("csl", "inews", "cctv")
CACHE_VERSION = 2  # bump when clause splitting, features or labels change


def log(message: str) -> None:
    print(time.strftime("%H:%M:%S"), message, flush=True)


def documents(tag: str, pairs: list[tuple[str, str]], encoder: ClauseEncoder, cache: Path, key: str) -> list[Document]:
    def build() -> list[Document]:
        log(f"{tag}: encoding the clauses of {len(pairs)} articles")
        start = time.time()
        docs = build_documents(pairs, encoder)
        log(f"{tag}: {sum(len(d.clauses) for d in docs)} clauses in {time.time() - start:.0f} s")
        return docs

    return cached_documents(cache / f"docs-{tag}.pt", key, build)


def rouge(docs: list[Document], texts: list[str]) -> dict[str, float]:
    r = score_corpus(texts, [d.summary for d in docs], "char")
    return {"rouge1": round(r.rouge1, 2), "rouge2": round(r.rouge2, 2), "rougeL": round(r.rougeL, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", type=Path, required=True, help="model directory of a BertBackbone")
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--per-source", type=int, default=5000, help="training articles per source (fewer when it has fewer)")
    ap.add_argument("--select", type=int, default=300, help="of those, held out per source to choose the epoch")
    ap.add_argument("--report", type=int, default=200, help="dev pairs per source in the report")
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="report only; leave the model directory alone")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()

    model_dir = args.backbone.expanduser().resolve()
    cache, fingerprint = weights_cache(model_dir, ROOT / "runs" / "title-selector", args.cache)
    log(f"backbone {model_dir} (weights {fingerprint}); cache {cache}")
    encoder = ClauseEncoder(BertBackbone.load(model_dir), ChineseTokenizer.from_dir(model_dir),
                            max_tokens=ModelDir.read(model_dir).max_context_tokens)
    key = f"v{CACHE_VERSION}-{fingerprint}"

    train, select, dev = [], [], {}
    for source in SOURCES:
        pairs = [(p.source, p.target) for p in title_pairs(f"{source}-train")]
        random.Random(0).shuffle(pairs)
        pairs = pairs[: args.per_source]
        docs = documents(f"{source}-train-{len(pairs)}", pairs, encoder, cache, key)
        train += docs[: -args.select]
        select += docs[-args.select :]
        dev[f"{source}-dev"] = documents(f"{source}-dev-{args.report}", [(p.source, p.target) for p in
                                         title_pairs(f"{source}-dev")[: args.report]], encoder, cache, key)
    log(f"{len(train)} training articles, {len(select)} to choose the epoch")

    cfg = TrainConfig(width=args.width, epochs=args.epochs, batch_size=args.batch_size)
    tagger, run = train_tagger(train, select, cfg, log, score=headline_score)
    chosen = predict(tagger, select)
    by_min = {m: round(headline_score(select, chosen, m), 2) for m in MIN_CHARS_CHOICES}
    min_chars = max(by_min, key=by_min.get)
    log(f"shortest headline on the selection articles (char ROUGE-L): {by_min}; using {min_chars}")
    metrics = {}
    for split, docs in dev.items():
        metrics[split] = {"selector": rouge(docs, chosen_headlines(docs, predict(tagger, docs), min_chars)),
                          "lead-20": rouge(docs, ["".join(d.clauses)[:20] for d in docs])}
        log(f"{split} (first {len(docs)}): {metrics[split]}")
    meta = {
        "format": 1,
        "backbone_sha256": fingerprint,
        "vectors": "last layer, masked mean over [CLS] clause [SEP], each clause alone; plus 6 position features",
        "max_tokens": encoder.max_tokens + 2,
        "min_chars": min_chars,
        "trained": {
            "data": f"{len(train)} articles of csl-train, inews-train, cctv-train (up to {args.per_source} per source); "
                    f"epoch chosen on {len(select)} held-out training articles",
            "epochs": cfg.epochs, "best_epoch": run["epoch"], "selection_rougeL": round(run["score"], 2),
            "width": cfg.width, "batch_size": cfg.batch_size, "date": time.strftime("%Y-%m-%d"),
            "wall_s": round(time.time() - started),
        },
        "metrics": {**metrics, "note": "char ROUGE F1 (x100), mean over the first pairs of each dev split; lead-20 "
                    "is the first 20 characters of the article's candidate clauses"},
    }
    if args.no_write:
        return
    tagger.save(model_dir, meta, NAME)
    size = (model_dir / f"{NAME}.safetensors").stat().st_size
    log(f"wrote {model_dir / (NAME + '.safetensors')} ({size / 1e6:.2f} MB) and {NAME}.json in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
