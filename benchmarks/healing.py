"""Token healing on real text: cut held-out sentences inside multi-character words and compare the
next characters a greedy continuation produces with and without the fix (algorithms.md 5.4).

Run from the repository root::

    python benchmarks/healing.py --model /work/runs/mini-zh/best

For every held-out text (``heldout_texts``: csl-test abstracts, iNews dev articles, texts visited in
a seeded random order, one cut per text and group), the model's own tokenizer finds the
multi-character word tokens of the full text and their place in it. Two groups of cut points:

* **inside**: after the first 1..len-1 characters of a word token (the prompt stops mid-word);
* **boundary** (control): at the start of a word token that follows another CJK token, i.e.
  where the text's own tokenization has a boundary; healing should change little there.

The prompt is the 20-60 characters before the cut (a seeded length, moved back to a token start).
Each prompt is continued greedily by the real continuation task (``ContinuationTask`` via
``task.run``, ``heal`` on and off, otherwise identical settings), and the continuation (only the
new text; with healing the re-spelled remainder is removed by the task) is compared with the
original text after the cut: exact match of the first 1, 2 and 4 characters, and whether it
starts with the rest of the cut word (inside) or the whole next word (boundary). Both sides are
compared after NFKC, lowercasing and dropping whitespace (the tokenizer lowercases and maps
full-width forms; a model cannot be right about what its tokenizer erases).

Writes ``--out`` (JSON summary), the "Token healing on held-out text" section of ``--doc`` and,
with ``--rows``, one JSON row per cut (positions, not the source text); prints the table.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from common import (
    ROOT,
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

from textgen.decoding.healing import Vocabulary, back_off
from textgen.tokenizer import is_cjk
from textgen.training.corpus import heldout_texts

SPLITS = {
    "csl": "the abstracts of csl-test (lines 0-499 of `clge_csl_test.tsv`), held out from all training",
    "inews-dev": "the articles of the iNews dev split, used neither for training nor for checkpoint selection",
}
GROUPS = ("inside", "boundary")
KS = (1, 2, 4)
SECTION = "Token healing on held-out text"


# ---------------------------------------------------------------------- cut points
@dataclass(frozen=True)
class Span:
    """One token of the full text and where its surface text sits in that text."""

    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Cut:
    """A prompt ``text[start:pos]`` that stops ``k`` characters into ``word`` (k = 0: before it)."""

    split: str
    text_index: int
    group: str
    start: int
    pos: int
    word: str
    k: int


def is_word(token: str) -> bool:
    """A multi-character vocabulary word: the units healing is about."""
    return len(token) > 1 and all(is_cjk(c) for c in token)


def token_spans(text: str, ids: list[int], token_texts: list[str]) -> list[Span]:
    """Place each token's surface text in ``text``, left to right. Tokens the tokenizer changed
    (full-width forms, [UNK], lowercased letters) may not be found near where they should be;
    they are skipped, and later tokens are found again by searching a little further on."""
    lowered = text.lower()
    spans, pos = [], 0
    for i in ids:
        surface = token_texts[i]
        if not surface:
            continue
        found = lowered.find(surface, pos, pos + 16 + len(surface))
        if found == -1:
            continue
        spans.append(Span(found, found + len(surface), surface))
        pos = found + len(surface)
    return spans


def candidates(text: str, spans: list[Span], group: str, min_context: int) -> list[tuple[int, Span, int]]:
    """(cut position, word span, k) for ``group``, with at least ``min_context`` characters before
    the cut and four non-whitespace characters after it."""
    out = []
    for i, span in enumerate(spans):
        if not is_word(span.text):
            continue
        if group == "inside":
            cuts = [(span.start + k, k) for k in range(1, len(span.text))]
        else:
            before = spans[i - 1] if i else None
            joined = before is not None and before.end == span.start and all(is_cjk(c) for c in before.text)
            cuts = [(span.start, 0)] if joined else []
        out += [(pos, span, k) for pos, k in cuts if pos >= min_context and len(normalize(text[pos : pos + 16])) >= max(KS)]
    return out


def prompt_start(spans: list[Span], pos: int, length: int) -> int:
    """Start ``length`` characters before ``pos``, moved back to the nearest token start so the
    prompt does not begin inside a word."""
    starts = [s.start for s in spans if s.start <= max(pos - length, 0)]
    return starts[-1] if starts else 0


def sample_cuts(split: str, texts: list[str], adapter, group: str, n: int, seed: int, context: tuple[int, int]) -> list[Cut]:
    """Up to ``n`` cuts of ``group``, one per text, texts in a seeded random order."""
    rng = random.Random(f"{seed}/{split}/{group}")  # str seeds hash the same in every process
    order = list(range(len(texts)))
    rng.shuffle(order)
    token_texts = adapter.token_texts()
    cuts = []
    for t in order:
        if len(cuts) == n:
            break
        spans = token_spans(texts[t], adapter.encode(texts[t]), token_texts)
        found = candidates(texts[t], spans, group, context[0])
        if not found:
            continue
        pos, span, k = rng.choice(found)
        start = prompt_start(spans, pos, rng.randint(*context))
        cuts.append(Cut(split, t, group, start, pos, span.text, k))
    return cuts


# ---------------------------------------------------------------------- scoring
def normalize(text: str) -> str:
    """What is compared: NFKC, lowercase, no whitespace (see the module docstring)."""
    return "".join(unicodedata.normalize("NFKC", text).lower().split())


def judge(cut: Cut, text: str, continuation: str) -> dict[str, bool]:
    """Exact match of the first k characters, and whether the word is completed (inside: its
    rest; boundary: the whole next word)."""
    target = normalize(text[cut.pos : cut.pos + 16])
    got = normalize(continuation)
    out = {f"next{k}": got[:k] == target[:k] for k in KS}
    out["word"] = got.startswith(normalize(cut.word[cut.k :]))
    return out


def summarize(rows: list[dict]) -> dict[str, Any]:
    """Shares (in %) with healing off and on, and the paired changes, for a set of cut rows."""
    n = len(rows)
    out: dict[str, Any] = {"n": n}
    if not n:
        return out
    for metric in [f"next{k}" for k in KS] + ["word"]:
        off = [r["off"][metric] for r in rows]
        on = [r["on"][metric] for r in rows]
        out[metric] = {"off": round(100 * sum(off) / n, 1), "on": round(100 * sum(on) / n, 1),
                       "fixed": sum(b and not a for a, b in zip(off, on)), "broken": sum(a and not b for a, b in zip(off, on))}
    out["backed_off"] = round(100 * sum(r["backed_off"] > 0 for r in rows) / n, 1)
    out["changed"] = round(100 * sum(r["changed"] for r in rows) / n, 1)
    return out


# ---------------------------------------------------------------------- running
def continue_config(model, max_new_tokens: int):
    """Greedy continuation: the model's continue settings with sampling and the repetition
    penalty turned off, so that healing is the only difference between the two runs."""
    config = decoding_config(model, "continue", {"do_sample": False, "num_beams": 1, "repetition_penalty": 1.0,
                                                  "max_new_tokens": max_new_tokens})
    assert config.strategy == "greedy", config
    return config


def evaluate(cuts: list[Cut], texts: dict[str, list[str]], task, config, batch_size: int) -> list[dict]:
    """Continue every cut's prompt with healing off and on; one scored row per cut."""
    prompts = [texts[c.split][c.text_index][c.start : c.pos] for c in cuts]
    outputs = {}
    for heal in (False, True):
        outputs[heal] = run_task(task.with_options(heal=heal), prompts, config, batch_size).texts
    vocab = Vocabulary(task.adapter.token_texts())
    token_texts = task.adapter.token_texts()
    rows = []
    for cut, prompt, off, on in zip(cuts, prompts, outputs[False], outputs[True]):
        ids = task.adapter.encode(prompt)
        context, _ = back_off(vocab, ids)
        text = texts[cut.split][cut.text_index]
        rows.append({**asdict(cut), "prompt_chars": len(prompt), "last_token_is_word": bool(ids) and is_word(token_texts[ids[-1]]),
                     "backed_off": len(ids) - len(context), "off": judge(cut, text, off), "on": judge(cut, text, on),
                     "changed": normalize(off)[:4] != normalize(on)[:4],
                     "continuation_off": off[:8], "continuation_on": on[:8]})
    return rows


def summaries(rows: list[dict], splits: list[str]) -> list[dict]:
    """Per split and group, plus the inside cuts split by what the unhealed prompt ends with."""
    out = []
    for split in [*splits, "all"]:
        mine = [r for r in rows if split in ("all", r["split"])]
        for group in GROUPS:
            out.append({"split": split, "group": group, **summarize([r for r in mine if r["group"] == group])})
        for ends in (True, False):
            sub = [r for r in mine if r["group"] == "inside" and r["last_token_is_word"] == ends]
            out.append({"split": split, "group": f"inside, prompt ends in a {'word' if ends else 'single-character'} token", **summarize(sub)})
    return out


# ---------------------------------------------------------------------- report
def table(summary: list[dict]) -> str:
    body = []
    for s in summary:
        if not s["n"]:
            continue
        cells = [f"{s[m]['off']:.1f} → {s[m]['on']:.1f}" for m in [f"next{k}" for k in KS] + ["word"]]
        body.append([s["split"], s["group"], s["n"], *cells, f"+{s['next1']['fixed']} / -{s['next1']['broken']}",
                     f"{s['backed_off']:.1f}", f"{s['changed']:.1f}"])
    header = ["split", "cuts", "n", "next 1 char", "next 2", "next 4", "completes word", "next 1: fixed / broken",
              "healing backed off (%)", "first 4 chars changed (%)"]
    return markdown_table(header, body, "llrllllrrr")


def headline(summary: list[dict]) -> str:
    """One sentence with the pooled numbers, so the table has a reading."""
    pooled = {s["group"]: s for s in summary if s["split"] == "all" and s["n"]}
    parts = []
    for group, where in (("inside", "Inside words"), ("boundary", "At word boundaries (control)")):
        s = pooled.get(group)
        if s:
            parts.append(f"{where} (n = {s['n']}), healing takes next-character accuracy from {s['next1']['off']:.1f}% "
                         f"to {s['next1']['on']:.1f}% ({s['next1']['fixed']} cuts fixed, {s['next1']['broken']} broken) "
                         f"and next-4 accuracy from {s['next4']['off']:.1f}% to {s['next4']['on']:.1f}%; it backs off "
                         f"{s['backed_off']:.1f}% of these prompts.")
    return " ".join(parts)


def render(report: dict) -> str:
    env, args, model = report["machine"], report["arguments"], report["model"]
    settings = ", ".join(f"{k}={v}" for k, v in model["decoding"].items())
    splits = "\n".join(f"* **{s}** ({report['texts'][s]} texts): {SPLITS[s]}." for s in report["texts"])
    return f"""Written by `python benchmarks/healing.py {args['command']}`; the numbers in `{args['out']}`
(`--rows FILE` also writes one row per cut: positions, word, hits, the first 8 characters of each
continuation; deterministic, so any run reproduces them).
Machine: {machine_line(env)}.

**Model**: {model_line(model)}. Tokenizer: {model['tokenizer']}.

**What is measured.** Held-out texts are cut inside multi-character vocabulary words (the
problem token healing fixes, algorithms.md 5.4) and, as a control, at word boundaries; the text
before the cut is continued greedily by the real continuation task (`ContinuationTask` via
`task.run`, batches of {args['batch_size']}), once with token healing off and once on, everything
else equal ({settings}), and the continuation is compared with the original text after the cut.

Held-out texts (`textgen.training.corpus.heldout_texts`):

{splits}

* **Cut points.** The model's own tokenizer splits each full text; its word tokens are the
  multi-character all-CJK vocabulary entries. **inside** cuts fall after the first 1..len-1
  characters of a word token; **boundary** cuts fall at the start of a word token that directly
  follows another CJK token. Both need {args['context'][0]} characters before the cut and 4 after it.
* **Sampling.** Texts in a seeded random order (seed {args['seed']}), one cut per text and group
  drawn uniformly from that text's candidates, up to {args['samples']} per split and group. The
  prompt is the {args['context'][0]}-{args['context'][1]} characters (seeded length) before the cut,
  moved back to the nearest token start.
* **next k**: the continuation's first k characters equal the text's next k characters;
  **completes word**: it starts with the rest of the cut word (inside) or with the whole next
  word (boundary). Both sides NFKC-normalised, lowercased, whitespace dropped; an empty or shorter
  continuation is a miss. Shares in %, healing off → on.
* **fixed / broken**: cuts whose next character is right only with healing / only without.
* **healing backed off**: share of prompts whose end healing removed and re-spelled (a trailing
  token run that is a proper prefix of a longer vocabulary token); **changed**: the first four
  characters of the two continuations differ.
* The "inside, prompt ends in ..." rows split the inside cuts by the unhealed prompt's last token:
  a multi-character word (白云 of 白云机场, the case algorithms.md 5.4 describes, or a word jieba
  forms across the cut, 一种 of 同一种|类 where the full text reads 同一/种类) or a single
  character (the word's first characters are no vocabulary word of their own).
* A share from n cuts has a standard error of at most 50/sqrt(n) points: ±{50 / max(args['samples'], 1) ** 0.5:.1f}
  for one split and group of {args['samples']}; paired changes (fixed / broken) are the sharper comparison.

{headline(report['summary'])}

{table(report['summary'])}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(Path("/work/runs/mini-zh/best")), metavar="[NAME=]DIR",
                        help="a causal model directory")
    parser.add_argument("--splits", default="csl,inews-dev", help="comma-separated: " + ", ".join(SPLITS))
    parser.add_argument("--samples", type=int, default=300, help="cuts per split and group")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--context", default="20-60", help="prompt length range in characters")
    parser.add_argument("--max-new-tokens", type=int, default=12, help="enough for 4 characters after a re-spelled word")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "healing.json")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "healing.md")
    parser.add_argument("--rows", type=Path, default=None, help="also write one JSON row per cut here (for inspection)")
    args = parser.parse_args()
    splits = [s for s in args.splits.split(",") if s]
    if unknown := [s for s in splits if s not in SPLITS]:
        parser.error(f"unknown split(s) {unknown}; known: {list(SPLITS)}")
    lo, _, hi = args.context.partition("-")
    context = (int(lo), int(hi or lo))
    set_threads(args.threads)

    texts = {s: heldout_texts(s) for s in splits}
    with tempfile.TemporaryDirectory() as tmp:
        model = freeze_model(*parse_model_arg(args.model), Path(tmp))
        print(f"{model.label}: {model.source} (step {model.provenance.get('step')})", flush=True)
        task = load_model_task(model, "continue")
        config = continue_config(model, args.max_new_tokens)
        cuts = [c for s in splits for g in GROUPS for c in sample_cuts(s, texts[s], task.adapter, g, args.samples, args.seed, context)]
        print(f"{len(cuts)} cuts; continuing with healing off and on", flush=True)
        rows = evaluate(cuts, texts, task, config, args.batch_size)
    tokenizer = task.adapter.tokenizer
    report = {
        "machine": machine(),
        "arguments": {"command": command_line(args), "samples": args.samples, "seed": args.seed, "context": list(context),
                      "batch_size": args.batch_size, "out": rel(args.out)},
        "model": {**model.describe(), "decoding": config_dict(config),
                  "tokenizer": f"{getattr(tokenizer, 'mode', type(tokenizer).__name__)} mode, {task.adapter.vocab_size} tokens"},
        "texts": {s: len(texts[s]) for s in splits},
        "summary": summaries(rows, splits),
    }
    write_json(args.out, report)
    if args.rows:
        write_json(args.rows, {"model": report["model"], "arguments": report["arguments"], "cuts": rows}, rows="cuts")
    write_section(args.doc, "Token healing", SECTION, render(report))
    print("\n" + table(report["summary"]))
    print(f"\nwrote {args.out} and {args.doc}")


def command_line(args: argparse.Namespace) -> str:
    return (f"--model {args.model} --splits {args.splits} --samples {args.samples} --seed {args.seed} "
            f"--context {args.context} --max-new-tokens {args.max_new_tokens} --threads {args.threads}")


if __name__ == "__main__":
    main()
