"""Summaries and answer-aware questions from a GGUF chat LLM on the dev splits, with baselines.

    python benchmarks/gguf_tasks.py --model qwen2.5-coder-0.5b --task qa --limit 10
    python benchmarks/gguf_tasks.py --model qwen2.5-coder-0.5b --task summarize --limit 8

* ``qa`` (qa-dev, the first ``--limit`` passages, one question per gold answer; char ROUGE-L F1
  x100 against the gold questions): the rule baseline (the answer's sentence with the answer
  replaced by 什么), the plain prompt (greedy, nothing else), and textgen's question decoding
  (beam 4, the best question that does not state its own answer, numbers copied whole).
* ``healing`` (iNews dev articles, ``--limit`` cuts, one per article at a seeded random character
  after a Chinese character, 20-60 characters into it): greedy continuations of 6 tokens with
  token healing on and off; how often the first 1 and 2 characters continue the original text.
* ``summarize`` (legal-dev, the first ``--limit`` cases; char ROUGE-L F1 x100, and how many
  summaries state a number or address the document lacks): lead-150 and extract-only baselines,
  the plain prompt over the document's beginning (no extraction), SPACES on the LLM (the default
  model's extractor picks the key clauses within ``source_tokens``, the LLM writes from them), with
  and without the text copy constraint.

Scores only are written (no data-set text), to ``benchmarks/results/gguf-<task>.json``; each
finished system is kept, so a stopped run resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from textgen.config import Settings  # noqa: E402
from textgen.evaluation.metrics import score_pair  # noqa: E402
from textgen.io import Record  # noqa: E402
from textgen.runner import Runner  # noqa: E402
from textgen.summarize.faithful import invented  # noqa: E402

QA_SYSTEMS = {
    "plain prompt": ({"check": False, "question_beams": 1, "copy": "off"}, {}),
    "textgen (beam 4, no echo, numbers copied)": ({"check": False, "question_beams": 4, "copy": "numbers"}, {}),
}
SUMMARY_SYSTEMS = {
    "plain prompt (document's beginning)": ({"copy": "off", "source_tokens": 600}, {"num_beams": 1}, "lead"),
    "SPACES on the LLM, copy off": ({"copy": "off", "source_tokens": 600}, {"num_beams": 1}, None),
    "SPACES on the LLM, copy text": ({"copy": "text", "source_tokens": 600}, {"num_beams": 1}, None),
    "SPACES on the LLM, copy text, at most 96 new tokens": ({"copy": "text", "source_tokens": 600},
                                                            {"num_beams": 1, "max_new_tokens": 96}, None),
}


def _save(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def run_qa(runner: Runner, model: str, limit: int, out: Path) -> None:
    from qa import passages_of  # benchmarks/qa.py

    from textgen.qa.evaluate import evaluate_aware

    passages, _ = passages_of("qa-dev", limit)
    done = json.loads(out.read_text()) if out.exists() else {"model": model, "split": "qa-dev", "passages": len(passages), "systems": {}}
    for name, (options, decoding) in QA_SYSTEMS.items():
        if name in done["systems"]:
            continue
        job = runner.job("qa", model, options=options, decoding={"max_new_tokens": 32, **decoding})
        result = evaluate_aware(job.task, job.config, passages, batch_size=1)
        done["systems"][name] = {"rougeL": round(result.model.rougeL, 2), "questions": result.questions,
                                 "seconds_per_question": round(result.seconds / max(result.questions, 1), 2),
                                 "without_question_mark": result.without_mark}
        done["rule baseline"] = {"rougeL": round(result.rule.rougeL, 2)}
        _save(out, done)
        print(name, done["systems"][name], file=sys.stderr, flush=True)


def run_summarize(runner: Runner, model: str, limit: int, out: Path) -> None:
    from textgen.summarize.extractor import LeadRule
    from textgen.training.corpus import summary_pairs

    pairs = summary_pairs("legal-dev")[:limit]
    done = json.loads(out.read_text()) if out.exists() else {"model": model, "split": "legal-dev", "n": len(pairs), "systems": {}}

    def score(texts: list[str]) -> dict:
        r = [score_pair(t, p.target, "char")["rougeL"] for t, p in zip(texts, pairs)]
        return {"rougeL": round(sum(r) / len(r), 2), "invented": sum(bool(invented(t, p.source)) for t, p in zip(texts, pairs)),
                "chars": round(sum(len(t) for t in texts) / len(texts))}

    done["systems"]["lead-150"] = score(["".join(p.source.split())[:150] for p in pairs])
    if "extract-only" not in done["systems"]:
        job = runner.job("summarize", model, options={"extract_only": True, "source_tokens": 600})
        done["systems"]["extract-only"] = score([job.task.run([Record(i, p.source)], job.config)[0].text for i, p in enumerate(pairs)])
    for name, (options, decoding, extractor) in SUMMARY_SYSTEMS.items():
        if name in done["systems"]:
            continue
        job = runner.job("summarize", model, options={"extract_only": False, **options},
                         decoding={"max_new_tokens": 200, **decoding})
        pipeline = job.task.pipeline()
        saved = pipeline.extractor
        if extractor == "lead":
            pipeline.extractor = LeadRule("the plain prompt reads the document's beginning")
        start = time.perf_counter()
        try:
            texts = [job.task.run([Record(i, p.source)], job.config)[0].text for i, p in enumerate(pairs)]
        finally:
            pipeline.extractor = saved
        done["systems"][name] = {**score(texts), "seconds_per_summary": round((time.perf_counter() - start) / len(pairs), 1)}
        _save(out, done)
        print(name, done["systems"][name], file=sys.stderr, flush=True)
    _save(out, done)


def run_healing(runner: Runner, model: str, limit: int, out: Path) -> None:
    import random
    import unicodedata

    from textgen.tokenizer import is_cjk
    from textgen.training.corpus import heldout_texts

    norm = lambda t: "".join(unicodedata.normalize("NFKC", t).lower().split())  # noqa: E731
    rng = random.Random(0)
    cuts = []
    for text in heldout_texts("inews-dev"):
        text = "".join(text.split())
        spots = [i for i in range(20, min(len(text) - 4, 200)) if is_cjk(text[i - 1]) and is_cjk(text[i])]
        if spots:
            pos = rng.choice(spots)
            start = max(0, pos - rng.randint(20, 60))
            cuts.append((text[start:pos], text[pos : pos + 8]))
        if len(cuts) == limit:
            break
    result = {"model": model, "split": "inews-dev", "cuts": len(cuts), "new_tokens": 6}
    for heal in (False, True):
        job = runner.job("continue", model, options={"heal": heal},
                         decoding={"do_sample": False, "repetition_penalty": 1.0, "max_new_tokens": 6})
        got = [norm(job.task.run([Record(i, p)], job.config)[0].text) for i, (p, _) in enumerate(cuts)]
        want = [norm(w) for _, w in cuts]
        result["on" if heal else "off"] = {f"first_{k}_chars_pct": round(100 * sum(g[:k] == w[:k] for g, w in zip(got, want)) / len(cuts), 1)
                                          for k in (1, 2)}
        print(heal, result["on" if heal else "off"], file=sys.stderr, flush=True)
    _save(out, result)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--task", choices=("qa", "summarize", "healing"), required=True)
    ap.add_argument("--limit", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    runner = Runner(Settings(), device="cpu", threads=args.threads)
    out = ROOT / "benchmarks" / "results" / f"gguf-{args.task}.json"
    {"qa": run_qa, "summarize": run_summarize, "healing": run_healing}[args.task](runner, args.model, args.limit, out)


if __name__ == "__main__":
    main()
