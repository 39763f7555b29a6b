"""Summaries of held-out legal cases: quality against the baselines, ablations, speed and memory.

Run from the repository root (one command; ``--quick`` scores only the extractor and the baselines,
for a model whose generator was never trained on summaries; speed and memory are always measured
for the whole pipeline)::

    python benchmarks/summarize.py --model textgen/models/embedded/mini-zh --split legal-test
    python benchmarks/summarize.py --model DIR --split legal-dev --grid      # tune decoding on dev

Systems, all through the real summarize task (``task.run`` on records, as ``textgen summarize`` and
``textgen eval summarize`` do) and scored by ``textgen.summarize.evaluate`` (char ROUGE-1/2/L F1
and the word-level CAIL2020 score):

* baselines: lead-150, last-150, TextRank-150 (characters) and the oracle extraction;
* ``extract-only``: the model's extractor alone;
* ``spaces``: extract, then generate, with the model's decoding defaults and copy ``auto``;
* ablations: copy off; the generator fed the document's beginning instead of the extraction (the
  lead rule in place of the extractor: plain truncation at clause boundaries); the generator fed
  the oracle extraction (the ceiling of stage 2).

Speed: seconds to summarize a ~3,500-character judgement of the split (the one nearest that
length) on ``--threads`` threads, median of 3 after a warm-up. Memory: peak resident memory of a
separate process that summarizes a 1,000,000-character document (the split's documents joined
until that length), read from the kernel (``ru_maxrss``) as ``/usr/bin/time -v`` reports it.

Writes ``benchmarks/results/summarize[-SPLIT].json`` and the "Measured" section of
``docs/summarize.md``. Only summaries and scores are written, never documents.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from common import ROOT, freeze_model, machine, machine_line, markdown_table, model_line, rel, set_threads, write_json, write_section

from textgen.io import Record
from textgen.summarize.evaluate import baseline_summaries, score_summaries, unit_note
from common import RUNNER  # noqa: E402
from textgen.training.corpus import summary_pairs

SPLITS = {
    "legal-dev": "`legal_case_summaries.jsonl` cases k with k % 10 == 0 (`textgen.training.corpus`); "
                 "used to choose the extractor's epoch and extract-only rule, and decoding settings",
    "legal-test": "`legal_case_summaries.jsonl` cases k with k % 10 == 1; held out from all training and tuning",
}
BASELINE_CHARS = 150
JUDGEMENT_CHARS = 3500
LONG_CHARS = 1_000_000
# no-repeat 3 beat 0 at every beam width on legal-dev (step-1000 multitask model, docs/summarize.md),
# and outputs were half the references' length: the grid varies the beam and a minimum length.
GRID = [{"num_beams": b, "no_repeat_ngram_size": 3, "min_new_tokens": m} for b in (1, 3, 5) for m in (0, 60)]


def summaries(task: Any, documents: list[str], config: Any, batch_size: int) -> tuple[list[str], list[Any], float]:
    """The first output text of each document (empty for a failed record), the records, seconds."""
    texts, records = [], []
    start = time.perf_counter()
    for first in range(0, len(documents), batch_size):
        batch = [Record(first + i, d) for i, d in enumerate(documents[first : first + batch_size])]
        for out in task.run(batch, config):
            records.append(out)
            texts.append(out.text)
    return texts, records, time.perf_counter() - start


def row(system: str, texts: list[str], references: list[str], records: list[Any] | None = None, **extra: Any) -> dict:
    scores = score_summaries(texts, references)
    failed = sum(r.error is not None for r in records) if records else 0
    cut = sum(any("max_new_tokens" in w for w in r.warnings) for r in records) if records else 0
    out = {"system": system, **scores, "empty": sum(not t.strip() for t in texts), "failed": failed, "cut": cut, **extra}
    print(f"  {system}: ROUGE-L {scores['rougeL']:.2f}, CAIL {scores['cail']:.2f}", flush=True)
    return out


def config_for(model_dir: Path, overrides: dict[str, Any]) -> Any:
    """The summarize decoding of the library: task defaults, the model's textgen.json, ``overrides``
    (the user's config file is left out, so results do not depend on who runs the benchmark)."""
    return RUNNER.config("summarize", _info(model_dir), overrides)


def _info(model_dir: Path) -> Any:
    from textgen.models.registry import describe

    return describe(model_dir, name=model_dir.name, source="local")


def load_task(model_dir: Path, **options: Any) -> Any:
    return RUNNER.task("summarize", _info(model_dir), options)


def quality(model_dir: Path, documents: list[str], references: list[str], batch_size: int, quick: bool) -> tuple[list[dict], dict]:
    from textgen.summarize.extractor import LeadRule

    rows = [row(name, texts, references) for name, texts in baseline_summaries(documents, references, BASELINE_CHARS).items()]
    task = load_task(model_dir, extract_only=True)
    config = config_for(model_dir, {})
    texts, records, seconds = summaries(task, documents, config, batch_size)
    method = records[0].extras.get("extraction", {}).get("method")
    rows.append(row("extract-only", texts, references, records, extractor=method, seconds=round(seconds, 1)))
    examples = {"extract-only": texts}
    if quick:
        return rows, examples
    variants = [("spaces", {}, None), ("spaces, copy off", {"copy": "off"}, None),
                ("generator reads the beginning (no extraction)", {}, LeadRule("ablation: the document's beginning"))]
    for name, options, extractor in variants:
        task = load_task(model_dir, **{"copy": "auto", **options})
        pipeline = task.pipeline()
        saved = pipeline.extractor
        if extractor is not None:
            pipeline.extractor = extractor
        try:
            texts, records, seconds = summaries(task, documents, config, batch_size)
        finally:
            pipeline.extractor = saved
        rows.append(row(name, texts, references, records, copy=task.copy_mode(), seconds=round(seconds, 1)))
        examples[name] = texts
    oracle = baseline_summaries(documents, references, BASELINE_CHARS)["oracle extraction"]
    task = load_task(model_dir, copy="auto")  # the oracle extraction is short: all of it fits
    texts, records, seconds = summaries(task, oracle, config, batch_size)
    rows.append(row("generator reads the oracle extraction", texts, references, records, seconds=round(seconds, 1)))
    return rows, examples


def grid(model_dir: Path, documents: list[str], references: list[str], batch_size: int) -> list[dict]:
    task = load_task(model_dir)
    rows = []
    for overrides in GRID:
        texts, records, seconds = summaries(task, documents, config_for(model_dir, overrides), batch_size)
        rows.append(row(json.dumps(overrides), texts, references, records, seconds=round(seconds, 1)))
    return rows


def speed(model_dir: Path, document: str) -> dict:
    """Seconds for one judgement, extract-only and extract + generate: median of 3 after a warm-up."""
    out = {"chars": len(document)}
    config = config_for(model_dir, {})
    for name, extract_only in (("extract_only", True), ("full", False)):
        task = load_task(model_dir, extract_only=extract_only)
        summaries(task, [document], config, 1)  # warm-up
        times = [summaries(task, [document], config, 1)[2] for _ in range(3)]
        out[name] = {"seconds_median": round(statistics.median(times), 2), "seconds": [round(t, 2) for t in times]}
    return out


MEMORY_CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from textgen.config import Settings
from textgen.io import Record
from textgen.models.registry import describe
from textgen.runner import Runner
import torch
from pathlib import Path
torch.set_num_threads({threads})
text = open({path!r}, encoding="utf-8").read()
runner = Runner(Settings(), device="cpu")
info = describe(Path({model!r}), name="m", source="local")
task = runner.task("summarize", info)
start = time.perf_counter()
out = task.run([Record(1, text)], runner.config("summarize", info, {{}}))[0]
print(json.dumps({{"seconds": time.perf_counter() - start, "error": out.error, "clauses": out.extras.get("extraction", {{}}).get("of"),
                  "summary_chars": len(out.text)}}))
"""


def memory(model_dir: Path, documents: list[str], threads: int) -> dict:
    """Peak RSS of a fresh process summarizing (extract + generate) a 1,000,000-character document."""
    text, k = "", 0
    while len(text) < LONG_CHARS:
        text += documents[k % len(documents)] + "\n"
        k += 1
    text = text[:LONG_CHARS]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.txt"
        path.write_text(text, encoding="utf-8")
        code = MEMORY_CHILD.format(root=str(ROOT), path=str(path), model=str(model_dir), threads=threads)
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if done.returncode != 0:
        raise SystemExit(f"the 1M-character run failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"chars": len(text), "peak_rss_mb": round(peak_kb / 1024, 1),
            "peak_is_this_child": peak_kb > before, **{k: (round(v, 1) if isinstance(v, float) else v) for k, v in result.items()}}


def report(result: dict) -> str:
    split = result["split"]
    rows = [[r["system"], f"{r['rouge1']:.2f}", f"{r['rouge2']:.2f}", f"{r['rougeL']:.2f}", f"{r['cail']:.2f}",
             f"{r['chars']:.0f}", r["empty"] + r["failed"]] for r in result["quality"]]
    table = markdown_table(["system", "ROUGE-1", "ROUGE-2", "ROUGE-L", "CAIL", "mean chars", "empty or failed"], rows)
    sp, mem = result["speed"], result["memory"]
    lines = [
        f"Model: {model_line(result['model'])}; clauses chosen by: "
        f"{'its extractor (extractor.safetensors)' if result['extractor'] == 'extractor' else result['extractor']}.",
        f"Split: {split} ({result['n']} cases): {SPLITS[split]}.",
        f"Scores: {unit_note()}.",
        "",
        table,
        "",
        f"Speed: a {sp['chars']:,}-character judgement of {split} in {sp['full']['seconds_median']:.2f} s extracted and "
        f"summarized, {sp['extract_only']['seconds_median']:.2f} s extract-only (median of 3 after a warm-up, "
        f"{result['threads']} threads, the model's decoding defaults).",
        f"Memory: a {mem['chars']:,}-character document ({mem.get('clauses') or 0:,} clauses, every one scored) extracted "
        f"and summarized in {mem['seconds']:.0f} s with a peak resident memory of {mem['peak_rss_mb']:.0f} MB "
        f"(ru_maxrss of the process, model loading included).",
        "",
        f"Machine: {machine_line(result['machine'])}. Command: `{result['command']}`.",
    ]
    if result.get("grid"):
        grid_rows = [[r["system"], f"{r['rougeL']:.2f}", f"{r['cail']:.2f}", f"{r['chars']:.0f}"] for r in result["grid"]]
        lines += ["", "Decoding grid:", "", markdown_table(["decoding", "ROUGE-L", "CAIL", "mean chars"], grid_rows)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="model directory (with its extractor)")
    ap.add_argument("--split", choices=sorted(SPLITS), default="legal-test")
    ap.add_argument("--quick", action="store_true", help="score only the extractor and the baselines (a model without a summary generator)")
    ap.add_argument("--grid", action="store_true", help=f"also try {len(GRID)} decodings (beam x minimum length), for legal-dev")
    ap.add_argument("--limit", type=int, default=None, help="only the first N cases (a smoke run)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="JSON results (default benchmarks/results/summarize[-SPLIT].json)")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "summarize.md")
    args = ap.parse_args()
    set_threads(args.threads)
    pairs = summary_pairs(args.split)[: args.limit]
    documents, references = [p.source for p in pairs], [p.target for p in pairs]
    with tempfile.TemporaryDirectory() as tmp:
        model = freeze_model(args.model.name, args.model, Path(tmp))
        print(f"{args.split}: {len(pairs)} cases, model {model.source}", flush=True)
        rows, _ = quality(model.path, documents, references, args.batch_size, args.quick)
        judgement = min(documents, key=lambda d: abs(len(d) - JUDGEMENT_CHARS))
        result = {
            "split": args.split, "n": len(pairs), "model": model.describe(), "command": " ".join(["python", *sys.argv]),
            "extractor": next((r.get("extractor") for r in rows if r.get("extractor")), None),
            "threads": args.threads, "machine": machine(), "quality": rows,
            "speed": speed(model.path, judgement),
            "memory": memory(model.path, documents, args.threads),
        }
        if args.grid:
            result["grid"] = grid(model.path, documents, references, args.batch_size)
    out = args.out or ROOT / "benchmarks" / "results" / ("summarize.json" if args.split == "legal-test" else f"summarize-{args.split}.json")
    write_json(out, result, rows="quality")
    body = report(result)
    if args.limit is None:
        write_section(args.doc, "Summaries", f"Measured: {args.split}", body)
    print(body)
    print(f"wrote {rel(out)}")


if __name__ == "__main__":
    main()
