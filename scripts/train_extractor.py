"""Train the SPACES extractor of a backbone and write it into the backbone's model directory.

    nice -n 5 python scripts/train_extractor.py --backbone textgen/models/embedded/mini-zh

One command, resumable: every stage is cached under ``--cache`` (default
``runs/extractor/<model>-<weights hash>``), so a rerun after a stop, or with other tagger settings,
starts where the work is not done yet.

1. clause vectors of every legal case (``legal-train`` with CAIL2020, ``legal-dev``, ``legal-test``)
   from the frozen backbone, with the oracle labels (``vectors-<split>.pt``);
2. cross-fitting on ``legal-train`` (``--folds``, SPACES uses 15): each fold's tagger is trained on
   the others and predicts its own documents (``fold-<k>-of-<folds>.pt``); the out-of-fold extractions are
   written to ``oof-legal-train.jsonl`` for the generator's training (one line per training
   document, in ``summary_pairs("legal-train")`` order: ``index``, ``sha1`` of the document,
   ``probs`` per clause, ``selected`` clause indices, ``extraction``: what ``textgen summarize``
   would feed the generator, the likeliest clauses within the model's ``max_source_tokens`` minus
   its summarize prefix);
3. the shipped tagger: trained on all of ``legal-train``, its epoch chosen on ``legal-dev`` by the
   char "main" score of the likeliest clauses within 250 characters;
4. the extract-only rule (how ``--extract-only`` picks clauses) chosen on ``legal-dev`` by char
   ROUGE-L, and every number reported on ``legal-test``;
5. ``extractor.safetensors`` (fp16) and ``extractor.json`` written into ``--backbone``, and
   ``summarize`` added to the tasks its ``textgen.json`` lists.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads are ~50x slower on a busy CPU

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from textgen.evaluation.metrics import score_pair  # noqa: E402
from textgen.models.model_dir import ModelDir  # noqa: E402
from textgen.models.backbone import BertBackbone  # noqa: E402
from textgen.summarize import extractor as ex  # noqa: E402
from textgen.summarize.tagger import Document  # noqa: E402
from textgen.summarize.training import (  # noqa: E402
    TrainConfig,
    build_documents,
    cached_documents,
    cross_fit,
    extraction_score,
    predict,
    train_tagger,
    weights_cache,
    write_out_of_fold,
)
from textgen.summarize.vectors import ClauseEncoder  # noqa: E402
from textgen.tokenizer import ChineseTokenizer  # noqa: E402
from textgen.training.corpus import summary_pairs  # noqa: E402

SPLITS = ("legal-train", "legal-dev", "legal-test")
CACHE_VERSION = 2  # bump when clause splitting, labels or pooling change


def log(message: str) -> None:
    print(time.strftime("%H:%M:%S"), message, flush=True)


def load_documents(split: str, encoder: ClauseEncoder, cache: Path, key: str) -> list[Document]:
    def build() -> list[Document]:
        pairs = [(p.source, p.target) for p in summary_pairs(split)]
        log(f"{split}: encoding the clauses of {len(pairs)} documents")
        start = time.time()
        from textgen.cli.output import progress_bar

        with progress_bar(sys.stderr.isatty(), None) as advance:
            docs = build_documents(pairs, encoder, advance)
        log(f"{split}: {sum(len(d.clauses) for d in docs)} clauses in {time.time() - start:.0f} s")
        return docs

    return cached_documents(cache / f"vectors-{split}.pt", key, build)


def rouge_table(docs: list[Document], probs: list[list[float]], rule: dict) -> dict[str, float]:
    """Char ROUGE-1/2/L F1 (x100, mean over documents) of the extract-only summaries under ``rule``."""
    sums = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for d, p in zip(docs, probs):
        text = "".join(d.clauses[i] for i in ex.extract_only_selection(p, [len(c) for c in d.clauses], rule))
        scores = score_pair(text, d.summary, "char")
        for k in sums:
            sums[k] += scores[k]
    return {k: round(v / len(docs), 2) for k, v in sums.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", type=Path, required=True, help="model directory of a BertBackbone")
    ap.add_argument("--cache", type=Path, default=None, help="where the stages are cached")
    ap.add_argument("--folds", type=int, default=5, help="cross-fitting folds (SPACES: 15); 0 skips cross-fitting "
                    "(no out-of-fold file: the shipped tagger only)")
    ap.add_argument("--width", type=int, default=64, help="tagger width (SPACES: 384; 64 scores as well on legal-dev)")
    ap.add_argument("--epochs", type=int, default=8, help="epochs (SPACES: 20; the best legal-dev epoch was 7 of 10)")
    ap.add_argument("--batch-size", type=int, default=16, help="documents per step (SPACES: 64)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="report only; leave the model directory alone")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()

    model_dir = args.backbone.expanduser().resolve()
    cache, fingerprint = weights_cache(model_dir, ROOT / "runs" / "extractor", args.cache)
    log(f"backbone {model_dir} (weights {fingerprint}); cache {cache}")

    backbone = BertBackbone.load(model_dir)
    tokenizer = ChineseTokenizer.from_dir(model_dir)
    encoder = ClauseEncoder(backbone, tokenizer, max_tokens=ModelDir.read(model_dir).max_context_tokens)
    key = f"v{CACHE_VERSION}-{fingerprint}"
    docs = {split: load_documents(split, encoder, cache, key) for split in SPLITS}

    cfg = TrainConfig(width=args.width, epochs=args.epochs, batch_size=args.batch_size)
    fold_key = f"{key}-{args.folds}-{cfg}"
    oof_main = None
    if args.folds > 1:
        oof, _ = cross_fit(docs["legal-train"], args.folds, cfg, log, store=cache, key=fold_key)
        meta_info = ModelDir.read(model_dir)
        prefix = meta_info.prefix("summarize")
        budget = (meta_info.max_source_tokens or encoder.max_tokens) - len(tokenizer.encode(prefix))
        oof_path = cache / "oof-legal-train.jsonl"
        write_out_of_fold(oof_path, docs["legal-train"], oof, [p.source for p in summary_pairs("legal-train")],
                          lambda c: len(tokenizer.encode(c)), budget)
        oof_main = round(extraction_score(docs["legal-train"], oof), 2)
        log(f"out-of-fold extractions ({budget}-token budget): {oof_path} (main {oof_main:.2f})")

    tagger, run = train_tagger(docs["legal-train"], docs["legal-dev"], cfg, lambda m: log(f"final {m}"))
    probs = {split: predict(tagger, docs[split]) for split in ("legal-dev", "legal-test")}
    dev = {json.dumps(r): rouge_table(docs["legal-dev"], probs["legal-dev"], r)["rougeL"] for r in ex.EXTRACT_ONLY_RULES}
    rule = json.loads(max(dev, key=dev.get))
    log("extract-only rules on legal-dev (char ROUGE-L): " + ", ".join(f"{k} {v}" for k, v in dev.items()))
    metrics = {
        "legal-dev": {"main": round(run["score"], 2), **rouge_table(docs["legal-dev"], probs["legal-dev"], rule)},
        "legal-test": {"main": round(extraction_score(docs["legal-test"], probs["legal-test"]), 2),
                       **rouge_table(docs["legal-test"], probs["legal-test"], rule)},
    }
    if oof_main is not None:
        metrics["legal-train_out_of_fold"] = {"main": oof_main}
    meta = {
        "format": 1,
        "backbone_sha256": fingerprint,
        "vectors": "last layer, masked mean over [CLS] clause [SEP], each clause alone",
        "max_tokens": encoder.max_tokens + 2,
        "extract_only": rule,
        "trained": {
            "data": f"legal-train ({len(docs['legal-train'])} documents), epoch chosen on legal-dev",
            "epochs": cfg.epochs, "best_epoch": run["epoch"], "folds": args.folds, "width": cfg.width,
            "batch_size": cfg.batch_size, "date": time.strftime("%Y-%m-%d"), "wall_s": round(time.time() - started),
        },
        "metrics": {**metrics, "note": "main: char 0.2 R-1 + 0.4 R-2 + 0.4 R-L F (x100) of the likeliest clauses within "
                    "250 characters; rouge*: char F1 (x100) of the extract-only rule"},
    }
    log("metrics: " + json.dumps(metrics, ensure_ascii=False))
    if args.no_write:
        return
    tagger.save(model_dir, meta)
    textgen = model_dir / "textgen.json"
    if textgen.exists():
        info = json.loads(textgen.read_text(encoding="utf-8"))
        if "summarize" not in info.get("tasks", []):
            info["tasks"] = [*info.get("tasks", []), "summarize"]
            textgen.write_text(json.dumps(info, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    size = (model_dir / "extractor.safetensors").stat().st_size
    log(f"wrote {model_dir / 'extractor.safetensors'} ({size / 1e6:.1f} MB) and extractor.json in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
