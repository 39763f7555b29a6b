"""`textgen eval search`: keyword-to-sentence search scored against reference sentences.

Registered on the ``textgen eval`` app by ``cli/eval.py``; the metrics live in
``textgen.search.evaluate`` (also used by ``benchmarks/search.py``). torch is imported only inside
the command body, so ``--help`` stays instant.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..console import fail, say
from .common import DataOption, DeviceOption, FormatOption, LimitOption, PickleOption, ReportFormat, _emit, eval_job


def read_keyword_sets(data: Path) -> list[Any]:
    """``{"id"?, "keywords": [...], "reference": "..."}`` lines; a bad line stops the run (exit 2)."""
    from textgen.search.heldout import KeywordSet

    if not data.is_file():
        fail(f"--data {data}: no such file")
    sets = []
    for n, line in enumerate(data.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            fail(f"{data}: line {n}: malformed JSON ({exc.msg})")
        keywords, reference = obj.get("keywords") if isinstance(obj, dict) else None, obj.get("reference") if isinstance(obj, dict) else None
        if not isinstance(keywords, list) or not keywords or not all(isinstance(k, str) and k.strip() for k in keywords):
            fail(f"{data}: line {n}: needs \"keywords\", a list of non-empty strings")
        if not isinstance(reference, str) or not reference.strip():
            fail(f"{data}: line {n}: needs \"reference\", the reference sentence")
        sets.append(KeywordSet(str(obj.get("id", n)), keywords, reference))
    if not sets:
        fail(f"--data {data}: no keyword sets")
    return sets


def judge_texts(judge_data: Path | None, references: list[str]) -> tuple[list[str], str]:
    """The judge's training texts (those holding a reference dropped) and where they came from."""
    from textgen.search.evaluate import judge_corpus

    if judge_data is not None:
        if not judge_data.is_file():
            fail(f"--judge-data {judge_data}: no such file")
        texts = [line for line in judge_data.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
        source = str(judge_data)
    else:
        from textgen.training.corpus import default_shared_dir, pretrain_texts

        if not default_shared_dir().is_dir():
            fail("no text to train the fluency judge on: pass --judge-data FILE (one text per line), "
                 f"or provide the shared data folder ({default_shared_dir()})")
        texts, source = pretrain_texts(), "textgen.training.corpus.pretrain_texts()"
    kept = judge_corpus(texts, references)
    if not kept:
        fail("the judge has no training text left once texts holding a reference are dropped")
    return kept, f"{source}: {len(kept):,} texts ({len(texts) - len(kept):,} holding a reference dropped)"


def search(
    data: DataOption,
    model: Annotated[str | None, typer.Option("--model", "-m", show_default=False,
                                              help="Embedded model name or model directory (default: the search model).")] = None,
    judge_data: Annotated[Path | None, typer.Option("--judge-data", show_default=False,
                                                    help="Text to train the fluency judge on, one text per line (default: the pretraining corpus of the shared data).")] = None,
    steps: Annotated[int | None, typer.Option("--steps", min=1, show_default=False, help="Proposals per chain (default: the task's).")] = None,
    chains: Annotated[int | None, typer.Option("--chains", min=1, show_default=False, help="Chains per keyword set (default: the task's).")] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", min=0, show_default=False, help="Candidates per proposal (default: the task's).")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the chains.")] = 0,
    limit: LimitOption = None,
    predictions: Annotated[Path | None, typer.Option("--predictions", show_default=False,
                                                     help="Also write each set's output and scores to this JSONL file.")] = None,
    fmt: FormatOption = ReportFormat.table,
    device: DeviceOption = None,
    allow_pickle: PickleOption = False,
) -> None:
    """Generate a sentence for each keyword set and score it: keyword coverage, fluency, repetition, length, ROUGE-L, speed.

    --data is .jsonl with "keywords" (a list) and "reference" (a sentence holding them) per line. Example: textgen eval search --data sets.jsonl --limit 20

    Fluency is bits per character under an independent judge: a character trigram Kneser-Ney model trained on --judge-data (or the shared pretraining corpus) without any text that holds a reference, never the model the search climbs; the plain concatenation of the keywords and the references are scored beside the outputs. Means over sets; a failed set counts as an empty output.
    """
    sets = read_keyword_sets(data)[:limit]
    texts, judge_source = judge_texts(judge_data, [s.reference for s in sets])
    overrides = {"seed": seed, **({"top_k": top_k} if top_k is not None else {})}
    options = {"mode": "keywords", **{k: v for k, v in {"steps": steps, "chains": chains}.items() if v is not None}}
    job = eval_job("search", model, device, allow_pickle, overrides, options)
    info, config, task = job.info, job.config, job.task
    from textgen.io import Record
    from textgen.search.evaluate import report, run_sets, train_judge

    from ..output import progress_bar

    def one(keywords: list[str]) -> tuple[str, int, float, str | None]:
        out = task.run([Record("set", "", fields={"keywords": keywords})], config)[0]
        stats = out.extras.get("search", {})
        return out.text, stats.get("proposals", 0), stats.get("seconds", 0.0), out.error

    say(f"searching {len(sets)} keyword sets with {info.name}")
    with progress_bar(sys.stderr.isatty(), len(sets)) as advance:
        samples = run_sets(one, sets, advance)
    say(f"training the fluency judge on {judge_source}")
    result = report(samples, train_judge(texts))
    if predictions is not None:
        with predictions.open("w", encoding="utf-8") as f:
            for s in samples:
                row = {"id": s.id, "keywords": s.keywords, "output": s.output, "reference": s.reference,
                       **{k: round(v, 4) for k, v in s.scores().items()}}
                if s.error:
                    row["error"] = s.error
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    settings = {"steps": task.settings["steps"], "chains": task.settings["chains"], "top_k": config.top_k,
                "gamma": task.settings["gamma"], "temperature": config.temperature, "anneal": task.settings["anneal"],
                "max_new_tokens": config.max_new_tokens, "seed": seed}
    full = {"model": info.name, "data": str(data), "judge": judge_source, "settings": settings, **result}
    _emit(full, fmt, "keyword-to-sentence search (means over keyword sets)", _rows(full))


def _rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    bits = r["bits_per_char"]
    s = r["settings"]
    failed = f", {r['failed']} failed" if r["failed"] else ""
    return [
        ("model", f"{r['model']}  ({s['chains']} chains x {s['steps']} steps, top-k {s['top_k']}, gamma {s['gamma']})"),
        ("data", f"{r['data']} ({r['sets']} sets, {r['keywords_per_set']:.1f} keywords each{failed})"),
        ("keyword coverage", f"{r['coverage']:.1%} of keywords; {r['all_keywords']:.1%} of outputs hold all"),
        ("fluency, bits/char", f"output {bits['output']:.3f} | keywords concatenated {bits['concatenation']:.3f} | "
                               f"references {bits['reference']:.3f}  (character trigram KN judge, lower is better)"),
        ("judge", f"{r['judge']}; {r['judge_unknown_rate']:.2%} of output characters unknown to it"),
        ("distinct chars", f"{r['distinct']:.3f} (references {r['reference_distinct']:.3f})"),
        ("repeated trigrams", f"{r['repeated_trigrams']:.3f} (references {r['reference_repeated_trigrams']:.3f})"),
        ("length, chars", f"{r['chars']:.1f} (references {r['reference_chars']:.1f})"),
        ("char ROUGE-L F1", f"{r['rougeL']:.2f} (x100, against the reference)"),
        ("speed", f"{r['proposals_per_second']:.1f} proposals/s, {r['seconds_per_sentence']:.2f} s per sentence"),
    ]
