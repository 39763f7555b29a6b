"""Question-answer pairs on held-out reading comprehension: quality, the round trip, and speed.

Run from the repository root (the lead's command once the multitask model lands)::

    python benchmarks/qa.py --model runs/mini-zh/best --split qa-test

Every pair goes through the real task (``QATask.run`` on records, as ``textgen qa`` and
``textgen eval qa`` run it; the measuring is ``textgen.qa.evaluate``) with the model's qa decoding
defaults and answers sampled with a fixed seed. Rows:

* **rule baseline**: the answer's sentence with the answer replaced by 什么 (no model);
* **answer-aware**: one question per gold answer, character ROUGE-1/2/L F1 and BLEU-4 against the
  gold question (mean over questions, x100);
* **free generation**, round-trip check on and off: ``-n`` pairs per passage; span answers,
  answers equal to a gold answer of the passage, the question ROUGE-L of those pairs against the
  gold question, duplicates, question marks, and pairs per second (``--threads`` torch threads,
  ``--batch-size`` passages per call; wall time of ``task.run`` only, after a warm-up batch).

Splits (``textgen.training.corpus``): ``qa-dev`` (tune here) and ``qa-test`` (report here),
passages ``k % 10 == 0`` / ``== 1`` of CMRC2018 dev, DRCD dev (simplified) and CAIL2019 dev and
test; no passage of either is training data. Writes ``--out`` (JSON) and the section of
``--doc`` named after the split. Only generated and gold questions are written, never passages.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

# OpenMP threads that spin while waiting are many times slower when another process holds a core
# (docs/decoding.md); set before torch is imported, as the textgen command does.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from common import ROOT, decoding_config, freeze_model, load_model_task, machine, machine_line, markdown_table, model_line, rel, set_threads, write_json, write_section

from textgen.models.registry import ModelNotFound, resolve
from textgen.qa.evaluate import evaluate_aware, evaluate_free, group
from textgen.training.corpus import qa_triples


def passages_of(split: str, limit: int | None):
    triples = qa_triples(split)
    passages = group((t.passage, t.question, t.answer, t.start) for t in triples)
    return passages[:limit], len(passages)


def metrics_row(name: str, scores: dict[str, Any], extra: str = "") -> list[str]:
    return [name, *(f"{scores[k]:.2f}" for k in ("rouge1", "rouge2", "rougeL", "bleu")), extra]


def free_row(name: str, d: dict[str, Any]) -> list[Any]:
    none = lambda v, fmt: "-" if v is None else format(v, fmt)  # noqa: E731
    return [name, d["pairs"], d["pairs_per_passage"], none(d["span_answers_pct"], ".1f"), none(d["gold_answer_match_pct"], ".1f"),
            none(d["matched_question_rougeL"], ".2f"), d["duplicates"], d["without_question_mark"], f"{d['pairs_per_s']:.2f}",
            f"{d['seconds']:.1f}"]


def render(report: dict[str, Any]) -> str:
    a = report["aware"]
    aware = markdown_table(
        ["system", "ROUGE-1", "ROUGE-2", "ROUGE-L", "BLEU-4", "notes"],
        [metrics_row("rule baseline (sentence, answer -> 什么)", a["rule_baseline"]),
         metrics_row(f"`{report['model']['label']}` answer-aware", a["model"],
                     f"{a['questions_per_s']:.1f} questions/s; {a['failed']} failed; {a['without_question_mark']} without ？")],
        "lrrrrl")
    free = markdown_table(
        ["check", "pairs", "per passage", "span answers %", "gold answers %", "their question ROUGE-L", "duplicates",
         "no ？", "pairs / s", "seconds"],
        [free_row(name, report["free"][name]) for name in report["free"]], "lrrrrrrrrr")
    s = report["settings"]
    return f"""Written by `python benchmarks/{report['command']}`; raw numbers in `{report['out']}`.

* Model: {model_line(report['model'])}. {report['model_note']}
* Split **{report['split']}**: {report['passages']} of {report['passages_total']} passages, {report['golds']} gold questions (character level; ROUGE/BLEU are means over questions, x100).
* Decoding: answers sampled (top-p {s['top_p']}, seed {s['seed']}), -n {s['n']}, questions {'greedy' if s['question_beams'] == 1 else f"beam {s['question_beams']}"}; {s['threads']} torch thread(s), batches of {s['batch_size']} records.
* Machine: {machine_line(report['machine'])}; load average {report['load_average'][0]:.1f} at the start, {report['load_average'][1]:.1f} at the end (above the core count, other processes shared the cores: speeds are lower bounds).

**Answer-aware questions** (the target is ROUGE-L >= 40):

{aware}

**Free generation** ({s['n']} pairs asked per passage; "gold answers": answers equal to a gold answer of their passage, case, spaces and punctuation ignored; "their question ROUGE-L": those pairs' questions against that gold answer's question):

{free}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="model directory or embedded name (NAME=DIR names it in the report)")
    ap.add_argument("--split", default="qa-dev", choices=("qa-dev", "qa-test"))
    ap.add_argument("--limit", type=int, default=None, help="only the first N passages of the split")
    ap.add_argument("-n", type=int, default=5, help="pairs per passage in free generation")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--note", default="", help="one sentence on what the model is (e.g. 'no QA training')")
    ap.add_argument("--out", type=Path, default=None, help="JSON results (default benchmarks/results/<split>.json, e.g. qa-test.json)")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "qa.md")
    args = ap.parse_args()
    out = args.out or ROOT / "benchmarks" / "results" / f"{args.split}.json"
    threads = set_threads(args.threads)
    label, _, directory = args.model.rpartition("=")
    try:
        info = resolve(directory)
    except ModelNotFound as exc:
        raise SystemExit(str(exc)) from None
    passages, total = passages_of(args.split, args.limit)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        model = freeze_model(label or info.name, info.path, Path(tmp))
        task = load_model_task(model, "qa")
        config = decoding_config(model, "qa", {"seed": args.seed, "num_return_sequences": args.n})
        evaluate_free(task, config, passages[:1], batch_size=1)  # warm-up: allocator, lazy imports, the copy vocabulary
        print(f"{len(passages)} passages of {args.split}", flush=True)
        aware = evaluate_aware(task, config, passages, batch_size=args.batch_size)
        print(f"  answer-aware: ROUGE-L {aware.model.rougeL:.2f} (rule {aware.rule.rougeL:.2f}) in {aware.seconds:.0f}s", flush=True)
        free = {}
        for check in (True, False):
            result = evaluate_free(task.with_options(check=check), config, passages, batch_size=args.batch_size)
            free["on" if check else "off"] = result.to_dict()
            print(f"  free, check {check}: {result.to_dict()}", flush=True)
    report = {
        "command": "qa.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in (("model", args.model), ("split", args.split), ("limit", args.limit)) if v),
        "out": rel(out), "split": args.split, "passages": len(passages), "passages_total": total,
        "golds": sum(len(p.golds) for p in passages), "model": model.describe(), "model_note": args.note,
        "settings": {"n": args.n, "top_p": config.top_p, "seed": args.seed, "question_beams": task.settings["question_beams"],
                     "threads": threads, "batch_size": args.batch_size},
        "machine": machine(), "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "aware": aware.to_dict(), "free": free,
        # No example rows: answers, gold questions and rule questions are the data set's own text,
        # which stays outside the repository.
    }
    write_json(out, report)
    write_section(args.doc, "Question-answer pairs", f"Benchmark: {args.split}", render(report))
    print(render(report))


if __name__ == "__main__":
    main()
