"""Titles from a GGUF chat LLM on the dev splits: the plain prompt against textgen's decoding.

    python benchmarks/gguf_titles.py --model qwen2.5-coder-0.5b --limit 10

For each dev split (csl-dev, inews-dev, cctv-dev; never a test split) and the first ``--limit``
articles, it writes a title with each system and scores it against the reference (char ROUGE-L F1,
x100), with the share of titles holding a number the article lacks:

* ``lead-20``: the article's first 20 characters;
* ``plain``: the task's prompt, greedy, no constraint (what a user gets from the model alone);
* ``copy text``: the same prompt, beam 4, under textgen's text copy constraint (every piece of the
  title is text of the article; numbers whole).

Results go to ``benchmarks/results/gguf-titles.json`` (no data-set text: scores only); a run is
resumable (each finished split is kept).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from textgen.config import Settings  # noqa: E402
from textgen.evaluation.metrics import score_pair, unfaithful_numbers  # noqa: E402
from textgen.io import Record  # noqa: E402
from textgen.runner import Runner  # noqa: E402
from textgen.training.corpus import title_pairs  # noqa: E402

SYSTEMS = {
    "plain": ({"method": "write", "copy": "off"}, {"num_beams": 1, "no_repeat_ngram_size": 0}),
    "copy text": ({"method": "write", "copy": "text"}, {"num_beams": 4}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--splits", default="csl-dev,inews-dev,cctv-dev")
    ap.add_argument("--limit", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gguf-titles.json")
    args = ap.parse_args()
    runner = Runner(Settings(), device="cpu", threads=args.threads)
    done = json.loads(args.out.read_text()) if args.out.exists() else {"model": args.model, "splits": {}}
    for split in args.splits.split(","):
        if split in done["splits"] and done["splits"][split]["n"] >= args.limit:
            continue
        pairs = title_pairs(split)[: args.limit]
        rows = {"lead-20": [p.source.replace(" ", "")[:20] for p in pairs]}
        seconds = {}
        for name, (options, decoding) in SYSTEMS.items():
            job = runner.job("title", args.model, options=options, decoding={"max_new_tokens": 32, **decoding})
            start = time.perf_counter()
            rows[name] = [job.task.run([Record(i, p.source)], job.config)[0].text for i, p in enumerate(pairs)]
            seconds[name] = round((time.perf_counter() - start) / len(pairs), 2)
            print(f"{split} {name}: {seconds[name]} s/title", file=sys.stderr, flush=True)
        result = {"n": len(pairs), "systems": {}}
        for name, texts in rows.items():
            scores = [score_pair(t, p.target, "char")["rougeL"] for t, p in zip(texts, pairs)]
            invented = sum(bool(unfaithful_numbers(t, p.source)) for t, p in zip(texts, pairs))
            result["systems"][name] = {"rougeL": round(sum(scores) / len(scores), 2), "invented_numbers": invented,
                                       "seconds_per_title": seconds.get(name)}
        done["splits"][split] = result
        args.out.write_text(json.dumps(done, ensure_ascii=False, indent=2) + "\n")
        print(split, json.dumps(result["systems"], ensure_ascii=False), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
