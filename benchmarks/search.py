"""Keyword-to-sentence search on held-out CSL keyword sets: quality under an independent judge,
and speed against two slower ways of scoring the same proposals, measured in the same run.

Run from the repository root (one command; about 10 minutes of CPU on 2 cores, 3 of them training
the judge)::

    python benchmarks/search.py                     # the search task's default model (mini-zh-lm)
    python benchmarks/search.py --model mini-zh     # another embedded model
    python benchmarks/search.py --model multitask=/work/runs/multitask/best

Quality: every keyword set of the split (``textgen/search/heldout.py``: CSL author keywords,
document k of ``csl_kg_dev.tsv`` is test when k % 10 == 1) goes through the real search task with
its defaults and seed 0, as ``textgen search`` and ``textgen eval search`` run it; the metrics are
``textgen.search.evaluate``'s (coverage, bits/char under a character trigram KN judge trained on
the pretraining corpus minus every text holding a reference, distinct characters, repeated
trigrams, length, char ROUGE-L).

Speed: the first ``--speed-sets`` keyword sets, each searched three ways with the same sampler and
settings, alternating: ``ours`` (the candidates of all chains in one batch, prefixes encoded once
with a KV cache, only suffixes run), ``batched`` (the same batch, whole sentences re-encoded from
their text) and ``one-by-one`` (one forward pass per candidate sentence). Proposals per second,
acceptance rate, seconds per sentence; the ratios to ``ours`` are the load-independent numbers.

Writes ``--out`` (default ``benchmarks/results/search-<model>.json``: settings, machine and load,
every number, each set's output) and the "Benchmark: <model>" section of ``--doc``. No reference sentence is written (shared data stays outside the
repository); outputs are generated text.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Spinning OpenMP threads make torch many times slower on cores shared with other jobs (and the
# cached suffix passes, many small ones, suffer most); set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from common import ROOT, freeze_model, machine, machine_line, markdown_table, parse_model_arg, rel, set_threads, write_json, write_section  # noqa: E402

from textgen.io import Record  # noqa: E402
from textgen.models.registry import describe, resolve  # noqa: E402
from textgen.tasks import DEFAULT_MODELS  # noqa: E402
from textgen.search import BackboneTextScorer, Searcher, Settings  # noqa: E402
from textgen.search.evaluate import judge_corpus, report, run_sets, train_judge  # noqa: E402
from textgen.search.heldout import keyword_sets  # noqa: E402
from common import RUNNER  # noqa: E402
from textgen.training.corpus import pretrain_texts  # noqa: E402


class OneByOne(BackboneTextScorer):
    """The naive scorer: one forward pass per candidate sentence."""

    def sentence_logp(self, texts):
        import torch

        return torch.cat([super(OneByOne, self).sentence_logp([t]) for t in texts])


def model_path(spec: str, tmp: Path) -> tuple[str, Path, dict[str, Any]]:
    """An embedded name or ``NAME=DIR`` (copied first: training may be rewriting it)."""
    if "=" not in spec and "/" not in spec:
        info = resolve(spec)
        return info.name, info.path, {"label": info.name, "dir": str(info.path)}
    label, directory = parse_model_arg(spec)
    copy = freeze_model(label, directory, tmp)
    return label, copy.path, copy.describe()


def quality(task: Any, config: Any, sets: list[Any], judge: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    def one(keywords: list[str]) -> tuple[str, int, float, str | None]:
        out = task.run([Record("set", "", fields={"keywords": keywords})], config)[0]
        stats = out.extras.get("search", {})
        return out.text, stats.get("proposals", 0), stats.get("seconds", 0.0), out.error

    samples = run_sets(one, sets)
    rows = [{"id": s.id, "output": s.output, **{k: round(v, 4) for k, v in s.scores().items()}} for s in samples]
    return report(samples, judge), rows


def speed(searcher: Searcher, sets: list[Any], settings: Settings, gamma: float, max_new: int) -> dict[str, Any]:
    """Each way over the same sets, alternating set by set so load changes hit all alike."""
    ways = {
        "ours": searcher,
        "batched": Searcher(searcher.lm, BackboneTextScorer(searcher.lm)),
        "one-by-one": Searcher(searcher.lm, OneByOne(searcher.lm)),
    }
    totals = {name: {"proposals": 0, "accepted": 0, "seconds": 0.0} for name in ways}
    for s in sets:
        for name, way in ways.items():
            r = way.search("keywords", s.keywords, settings, gamma=gamma, max_new=max_new, key="0")
            totals[name]["proposals"] += r.proposals
            totals[name]["accepted"] += r.accepted
            totals[name]["seconds"] += r.seconds
    out = {}
    for name, t in totals.items():
        out[name] = {
            "proposals_per_second": round(t["proposals"] / t["seconds"], 2),
            "acceptance": round(t["accepted"] / t["proposals"], 3),
            "seconds_per_sentence": round(t["seconds"] / len(sets), 3),
            "proposals": t["proposals"],
        }
    for name in ("batched", "one-by-one"):
        out[name]["ours_speedup"] = round(out["ours"]["proposals_per_second"] / out[name]["proposals_per_second"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODELS["search"], help="embedded model name, or NAME=DIR")
    ap.add_argument("--split", default="test", choices=["dev", "test"])
    ap.add_argument("--limit", type=int, default=None, help="use only the first N keyword sets")
    ap.add_argument("--speed-sets", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/search-<model>.json")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "search.md")
    args = ap.parse_args()
    threads = set_threads(args.threads)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        label, path, provenance = model_path(args.model, Path(tmp))
        args.out = args.out or ROOT / "benchmarks" / "results" / f"search-{label}.json"
        info = describe(path, name=label, source="local")
        task = RUNNER.task("search", info)
        config = RUNNER.config("search", info, {"seed": 0})
        sets = keyword_sets(args.split)[: args.limit]
        started = time.perf_counter()
        judge = train_judge(judge_corpus(pretrain_texts(), [s.reference for s in sets]))
        judge_seconds = time.perf_counter() - started
        print(f"judge trained in {judge_seconds:.0f} s; searching {len(sets)} keyword sets", file=sys.stderr, flush=True)
        result, rows = quality(task, config, sets, judge)
        print(f"quality done: {result['seconds_per_sentence']:.2f} s per sentence; timing three scorings", file=sys.stderr, flush=True)
        opts = task.settings
        settings = Settings(steps=opts["steps"], chains=opts["chains"], candidates=config.top_k,
                            temperature=config.temperature, anneal=opts["anneal"])
        timing = speed(task.searcher(), sets[: args.speed_sets], settings, opts["gamma"], config.max_new_tokens)
    data = {
        "model": provenance,
        "split": args.split,
        "settings": {k: opts[k] for k in ("steps", "chains", "gamma", "anneal")} | {
            "top_k": config.top_k, "temperature": config.temperature, "max_new_tokens": config.max_new_tokens, "seed": 0},
        "machine": machine() | {"threads": threads, "omp_wait_policy": os.environ["OMP_WAIT_POLICY"], "load_average_before": [round(x, 2) for x in load_before],
                                "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        "judge_seconds": round(judge_seconds, 1),
        "quality": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items() if k != "bits_per_char"}
        | {"bits_per_char": {k: round(v, 4) for k, v in result["bits_per_char"].items()}},
        "speed": {"sets": len(sets[: args.speed_sets]), **timing},
        "sets": rows,
    }
    write_json(args.out, data, rows="sets")
    write_section(args.doc, "Search", f"Benchmark: {data['model']['label']}", report_markdown(data, args))
    print(report_markdown(data, args))


def report_markdown(d: dict[str, Any], args: argparse.Namespace) -> str:
    q, s, b = d["quality"], d["settings"], d["quality"]["bits_per_char"]
    sp = d["speed"]
    m = d["machine"]
    quality_table = markdown_table(
        ["", "bits/char (judge)", "distinct chars", "repeated trigrams", "length (chars)"],
        [["search output", f"{b['output']:.3f}", f"{q['distinct']:.3f}", f"{q['repeated_trigrams']:.3f}", f"{q['chars']:.1f}"],
         ["keywords concatenated", f"{b['concatenation']:.3f}", "", "", ""],
         ["reference sentences", f"{b['reference']:.3f}", f"{q['reference_distinct']:.3f}",
          f"{q['reference_repeated_trigrams']:.3f}", f"{q['reference_chars']:.1f}"]],
    )
    speed_table = markdown_table(
        ["scoring", "proposals/s", "acceptance", "s per sentence", "ours is x faster"],
        [[name, f"{v['proposals_per_second']:.1f}", f"{v['acceptance']:.2f}", f"{v['seconds_per_sentence']:.2f}",
          f"{v.get('ours_speedup', 1.0):.2f}"] for name, v in sp.items() if isinstance(v, dict)],
    )
    return f"""Written by `python benchmarks/search.py --model {args.model}` on {machine_line(m)}; load average {m['load_average_before'][0]} before, {m['load_average_after'][0]} after (other jobs shared the 2 cores). Raw numbers and every output: `{rel(args.out)}`.

Model `{d['model']['label']}`; split csl-kg-{d['split']} ({q['sets']} keyword sets, {q['keywords_per_set']:.2f} keywords each); task defaults: {s['chains']} chains x {s['steps']} steps, top-k {s['top_k']}, gamma {s['gamma']}, temperature {s['temperature']}, anneal {s['anneal']}, max_new_tokens {s['max_new_tokens']}, seed 0.

Keyword coverage {q['coverage']:.1%} ({q['all_keywords']:.1%} of outputs hold every keyword; {q['failed']} failed). Char ROUGE-L F1 against the reference {q['rougeL']:.2f}. Speed of the quality run: {q['proposals_per_second']:.1f} proposals/s, {q['seconds_per_sentence']:.2f} s per sentence.

{quality_table}

The judge: a character trigram Kneser-Ney model trained on the pretraining corpus minus every text holding a reference ({d['judge_seconds']:.0f} s to train); {q['judge_unknown_rate']:.2%} of output characters are unknown to it. Lower bits/char is more fluent.

Speed, the first {sp['sets']} sets searched three ways with the same settings, alternating set by set:

{speed_table}
"""


if __name__ == "__main__":
    main()
