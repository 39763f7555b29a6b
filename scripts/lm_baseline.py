"""Train the character trigram Kneser-Ney baseline on the pretraining corpus and report bits per
character on held-out text (the number docs/evaluation.md quotes and neural models must beat).

    python scripts/lm_baseline.py [--heldout csl inews-dev] [--shared-dir DIR] [--json]

Corpus and splits come from ``textgen.training.corpus`` so they match what the neural models were
pretrained on; no held-out text is in the training corpus.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from textgen.evaluation.lm import counted_chars  # noqa: E402
from textgen.evaluation.ngram import TrigramKN  # noqa: E402
from textgen.training.corpus import heldout_texts, pretrain_texts  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heldout", nargs="+", default=["csl", "inews-dev"], help="held-out sets to score")
    parser.add_argument("--shared-dir", default=None, help="shared data folder (default: ../shared/data)")
    parser.add_argument("--discount", type=float, default=0.75)
    parser.add_argument("--min-count", type=int, default=2, help="rarer training characters become UNK")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    args = parser.parse_args(argv)

    train = pretrain_texts(args.shared_dir)
    start = time.perf_counter()
    model = TrigramKN.train(train, discount=args.discount, min_count=args.min_count)
    result = {
        "model": f"char trigram interpolated Kneser-Ney, D={args.discount}, min_count={args.min_count}",
        "train_texts": len(train),
        "train_chars": sum(len(counted_chars(t)) for t in train),
        "vocab": len(model.vocab),
        "train_seconds": round(time.perf_counter() - start, 1),
        "heldout": [],
    }
    for name in args.heldout:
        texts = heldout_texts(name=name, shared_dir=args.shared_dir)
        cost = model.cost(texts)
        result["heldout"].append(
            {
                "name": name,
                "texts": len(texts),
                "chars": cost.chars,
                "bits_per_char": round(cost.bits_per_char, 4),
                "unknown_rate": round(model.unknown_rate(texts), 6),
            }
        )
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return 0
    print(
        f"{result['model']}; trained on {result['train_texts']:,} texts, {result['train_chars']:,} chars, "
        f"vocab {result['vocab']:,} chars, {result['train_seconds']} s\n"
    )
    print("| held-out | texts | chars | bits/char | unknown chars |")
    print("|---|---:|---:|---:|---:|")
    for h in result["heldout"]:
        print(f"| {h['name']} | {h['texts']:,} | {h['chars']:,} | {h['bits_per_char']:.3f} | {h['unknown_rate']:.4%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
