"""Decoding speed and memory: our decoder against Hugging Face ``generate()``, and our UniLM
backbone with its KV cache against recomputing the whole sequence every step (bert4keras' way).

Run from the repository root (a few minutes on 2 CPU cores)::

    python benchmarks/decode.py [--quick]
    python benchmarks/decode.py --chat-only     # only the chat-model rows (Qwen2, Llama)

It prints a table, writes ``benchmarks/results/decode.json`` and rewrites the "Decoding" section
of ``docs/benchmarks.md``. Models are random (speed does not depend on the weights' quality) and
built here with the test suite's builders, so no download is needed. Runs alternate between
the two implementations and the best of N is reported (the machine may be shared); peak memory
is the growth of a fresh process's peak resident set during one run (Linux ``VmHWM``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Before torch starts OpenMP: with the default (spinning) wait policy, 2 threads on a CPU shared
# with another busy process ran ~40x slower here (each thread waits, spinning, for the descheduled
# other); with passive waiting 2 threads ran about as fast as 1 on the busy machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the tiny-model builders the tests use

from common import write_section  # noqa: E402
from tiny_models import CHARS, SENTENCES, save_gpt2, save_llama, save_qwen2, save_t5  # noqa: E402

from textgen.decoding import DecodingConfig, generate  # noqa: E402
from textgen.models.adapters import BackboneSeq2Seq, pad_rows  # noqa: E402
from textgen.models.families import load_adapter  # noqa: E402
from textgen.models.backbone import BertBackbone, BertConfig  # noqa: E402
from textgen.tokenizer import SPECIAL_TOKENS, ChineseTokenizer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "decode.json"
DOC = ROOT / "docs" / "benchmarks.md"
MAX_NEW = 32


# ---------------------------------------------------------------------- measuring
def texts(batch: int, sentences: int = 1) -> list[str]:
    """Inputs of different lengths: ``sentences`` to ``sentences + 2`` sentences each."""
    return ["".join(SENTENCES[(i + j) % len(SENTENCES)] for j in range(sentences + i % 3)) for i in range(batch)]


def runner(spec: dict):
    """A no-argument callable doing one decoding run as ``spec`` says: ``impl`` is ``ours``
    (our decoder on the adapter), ``hf`` (``model.generate``) or ``recompute`` (our decoder on
    the cache-less UniLM adapter). A spec with a ``task`` is a chat model: both sides decode the
    task's prompt rendered with the chat template (``adapter.encode``), left padded."""
    adapter = load_adapter(spec["path"], spec["kind"])
    batch_texts = texts(spec["batch"], spec.get("sentences", 1))
    config = DecodingConfig(num_beams=spec["beams"], max_new_tokens=spec["max_new"])
    if spec["impl"] == "hf":
        tok, model = adapter.tokenizer, adapter.model
        causal = spec["kind"] == "causal"
        kw = dict(early_stopping=True, length_penalty=1.0) if config.num_beams > 1 else {}
        if spec.get("task"):
            ids, mask = pad_rows([adapter.encode(t) for t in batch_texts], adapter.pad_token_id, left=True, device="cpu")
            enc = {"input_ids": ids, "attention_mask": mask.long()}
            kw.update(eos_token_id=adapter.eos_token_ids, pad_token_id=adapter.pad_token_id)
        else:
            tok.padding_side = "left" if causal else "right"
            enc = tok(batch_texts, padding=True, return_tensors="pt", add_special_tokens=not causal)

        def run():
            with torch.inference_mode():
                return model.generate(**enc, max_new_tokens=config.max_new_tokens, num_beams=config.num_beams,
                                      do_sample=False, **kw)

        return run
    if spec["impl"] == "recompute":
        adapter = RecomputingSeq2Seq(adapter.model, adapter.tokenizer, "recompute", "cpu")
    inputs = [adapter.encode(t) for t in batch_texts]
    return lambda: [[h.token_ids for h in hs] for hs in generate(adapter, inputs, config)]


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def probe_peak(spec: dict) -> float | None:
    """Peak resident-set growth (MiB) of one run in a fresh process: the allocator of a process
    that already ran keeps its freed memory, which would hide the growth."""
    out = subprocess.run([sys.executable, __file__, "--probe", json.dumps(spec)], capture_output=True, text=True)
    try:
        return round(int(out.stdout.strip().splitlines()[-1]) / 2**20, 1)
    except (ValueError, IndexError):
        return None


def _probe_main(spec: dict) -> None:
    torch.set_num_threads(2)
    run = runner(spec)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
        before = _status("VmRSS")
    except (OSError, KeyError):
        print()
        return
    run()
    print(max(_status("VmHWM") - before, 0))


def compare(specs: dict[str, dict], repeats: int) -> dict:
    """Time the runs alternately after a warm-up; the best of ``repeats`` (the machine is
    shared, so the minimum is the least disturbed measurement)."""
    runs = {name: runner(spec) for name, spec in specs.items()}
    outputs = {name: run() for name, run in runs.items()}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {"seconds": {name: min(t) for name, t in times.items()}, "outputs": outputs}


# ---------------------------------------------------------------------- ours vs generate()
def bench_hf(models: dict, repeats: int, memory: bool) -> list[dict]:
    rows = []
    for (family, size), (path, kind, *task) in models.items():
        params = sum(p.numel() for p in load_adapter(path, kind).model.parameters())
        for batch in (1, 16):
            for strategy, beams in (("greedy", 1), ("beam4", 4)):
                base = {"path": str(path), "kind": kind, "batch": batch, "beams": beams, "max_new": MAX_NEW,
                        "task": task[0] if task else None}
                specs = {impl: {**base, "impl": impl} for impl in ("ours", "hf")}
                seconds = compare(specs, repeats)["seconds"]
                row = {"model": f"{family}-{size}", "params_m": round(params / 1e6, 2), "batch": batch,
                       "strategy": strategy, "ours_s": seconds["ours"], "hf_s": seconds["hf"],
                       "ratio": seconds["ours"] / seconds["hf"]}
                peaks = {impl: probe_peak(spec) if memory and batch > 1 else None for impl, spec in specs.items()}
                row.update(ours_peak_mib=peaks["ours"], hf_peak_mib=peaks["hf"])
                print(_fmt_hf(row), flush=True)
                rows.append(row)
    return rows


# ---------------------------------------------------------------------- cache vs recomputation
class RecomputingSeq2Seq(BackboneSeq2Seq):
    """Our UniLM adapter without the cache: every step re-encodes ``[CLS] src [SEP] out`` for
    the whole batch and reads the last real position, as bert4keras' decoder does."""

    def start(self, inputs, max_new_tokens):
        cls, sep = self.tokenizer.cls_id, self.tokenizer.sep_id
        rows = [([cls, *x, sep], len(x) + 2) for x in inputs]
        return self._run(rows), rows

    def step(self, state, tokens):
        rows = [(ids + [int(t)], n) for (ids, n), t in zip(state, tokens.tolist())]
        return self._run(rows), rows

    def reorder(self, state, index):
        return [state[i] for i in index.tolist()]

    def _run(self, rows):
        width = max(len(ids) for ids, _ in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        segments = torch.zeros_like(ids)
        mask = torch.zeros_like(ids, dtype=torch.bool)
        for i, (r, n) in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            segments[i, n : len(r)] = 1
            mask[i, : len(r)] = True
        hidden, _ = self.model.encode(ids, mode="unilm", token_type_ids=segments, attention_mask=mask)
        last = hidden[torch.arange(len(rows)), mask.sum(1) - 1]
        return self.model.lm_logits(last)


def backbone_dir(path: Path, width: int, layers: int, vocab_size: int) -> Path:
    vocab = list(SPECIAL_TOKENS) + CHARS
    vocab += [f"[unused{i}]" for i in range(vocab_size - len(vocab))]
    ChineseTokenizer(vocab, mode="char").save(path)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=width, num_hidden_layers=layers, num_attention_heads=4,
                     intermediate_size=4 * width, max_position_embeddings=256)
    model = BertBackbone(cfg)
    with torch.no_grad():
        model.head_bias[vocab.index("[SEP]")] = -30.0  # never stop early: time exactly 64 steps
    model.save(path)
    return path


def bench_cache(tmp: Path, repeats: int, memory: bool, sizes) -> list[dict]:
    rows = []
    for size, width, layers in sizes:
        path = backbone_dir(tmp / f"unilm-{size}", width, layers, vocab_size=8000)
        params = BertBackbone.load(path).num_parameters
        for batch in (1, 16):
            # sources of 120-180 characters, like the abstracts titles are generated from
            base = {"path": str(path), "kind": "seq2seq", "batch": batch, "beams": 1, "max_new": 64, "sentences": 12}
            specs = {impl: {**base, "impl": impl} for impl in ("ours", "recompute")}
            result = compare(specs, repeats)
            seconds = result["seconds"]
            peaks = {impl: probe_peak(spec) if memory and batch > 1 else None for impl, spec in specs.items()}
            row = {"model": f"unilm-{size}", "params_m": round(params / 1e6, 2), "batch": batch, "new_tokens": 64,
                   "cache_s": seconds["ours"], "recompute_s": seconds["recompute"],
                   "speedup": seconds["recompute"] / seconds["ours"], "cache_peak_mib": peaks["ours"],
                   "recompute_peak_mib": peaks["recompute"],
                   "same_output": result["outputs"]["ours"] == result["outputs"]["recompute"]}
            print(_fmt_cache(row), flush=True)
            rows.append(row)
    return rows


# ---------------------------------------------------------------------- reporting
def _mib(x) -> str:
    return "-" if x is None else f"{x:.0f}"


def _fmt_hf(r: dict) -> str:
    return (f"| {r['model']} | {r['params_m']} | {r['batch']} | {r['strategy']} | {r['ours_s'] * 1000:.0f} | "
            f"{r['hf_s'] * 1000:.0f} | {r['ratio']:.2f} | {_mib(r['ours_peak_mib'])} | {_mib(r['hf_peak_mib'])} |")


def _fmt_cache(r: dict) -> str:
    return (f"| {r['model']} | {r['params_m']} | {r['batch']} | {r['cache_s'] * 1000:.0f} | {r['recompute_s'] * 1000:.0f} | "
            f"{r['speedup']:.1f}x | {_mib(r['cache_peak_mib'])} | {_mib(r['recompute_peak_mib'])} | {r['same_output']} |")


HF_HEADER = ("| model | params (M) | batch | strategy | ours (ms) | generate() (ms) | ours / generate() | "
             "ours peak (MiB) | generate() peak (MiB) |\n|---|---|---|---|---|---|---|---|---|")
CACHE_HEADER = ("| model | params (M) | batch | KV cache (ms) | recompute (ms) | speed-up | cache peak (MiB) | "
                "recompute peak (MiB) | same tokens |\n|---|---|---|---|---|---|---|---|---|")


def chat_models(tmp: Path, quick: bool) -> dict:
    """Random chat models with their templates, as tests/test_chat.py builds them: Llama over a
    byte-level BPE, Qwen2 over the real Qwen2 tokenizer (when ../shared has it). The end tokens'
    output rows are zeroed so every run makes exactly MAX_NEW tokens. Decoded as titles: the
    shipped title prompt around the input."""
    from textgen.training.corpus import default_shared_dir

    models = {}
    sizes = [("tiny", 32, 2)] + ([] if quick else [("20m", 128, 4)])
    qwen = default_shared_dir() / "tokenizers" / "qwen2-bpe151k"
    for size, width, layers in sizes:
        if (qwen / "vocab.json").is_file():
            models[("qwen2", size)] = (tmp / f"qwen2-{size}", "seq2seq", "title")
            save_qwen2(models[("qwen2", size)][0], qwen, width=width, layers=layers, eos_factor=0.0)
        models[("llama", size)] = (tmp / f"llama-{size}", "seq2seq", "title")
        save_llama(models[("llama", size)][0], width=width, layers=2 * layers, eos_factor=0.0,
                   vocab_size=None if size == "tiny" else 32000)
    return models


CHAT_SECTION = "Decoding with chat models"


def write_chat_doc(report: dict) -> None:
    """The chat-model rows in a section of their own (the rest of the file is left as it is)."""
    env = report["environment"]
    body = f"""Written by `python benchmarks/decode.py --chat-only` ({env['date']}; {env['machine']}; torch
{env['torch']}, transformers {env['transformers']}, {env['threads']} threads; random weights; raw numbers in
`benchmarks/results/decode.json`, key `chat`). Best of {report['repeats']} alternating runs after a
warm-up; peak memory as above (batch 16 only).

Chat models (`textgen/models/chat.py`) decode the task's prompt rendered with the model's chat
template; both sides get the same left-padded ids and the same end tokens, {MAX_NEW} new tokens
(the end tokens' output rows are zeroed, so no run stops early). Qwen2 uses the real Qwen2
tokenizer (151,936 output rows), Llama a byte-level BPE with Llama 3's chat tokens (the 20m one
padded to 32,000 rows). Outputs are token-identical to `generate()` (tests/test_chat.py).
Target: ours / generate() <= 1.0.

{HF_HEADER}
{chr(10).join(_fmt_hf(r) for r in report['chat'])}

Reading the table: beam search gains most where prompts are long beside the output (the Llama
rows, whose byte-level title prompts run to ~380 tokens): the prompt runs once per input, not once
per beam. Greedy decoding pays one pass that `generate()` skips: the log-probability of each chosen
token, for the output's score (one `log_softmax` over the vocabulary per step). With 151,936 output
rows and a 5 M-parameter model that pass is a visible share of a step; with real model sizes it is
not.
"""
    write_section(DOC, "Benchmarks", CHAT_SECTION, body)


def write_doc(report: dict) -> None:
    env = report["environment"]
    section = f"""## Decoding

Written by `python benchmarks/decode.py` ({env['date']}; {env['machine']}; torch {env['torch']},
transformers {env['transformers']}, {env['threads']} threads, OMP_WAIT_POLICY={env['omp_wait_policy']}; random weights; raw numbers in
`benchmarks/results/decode.json`). Wall time: best of {report['repeats']} alternating runs after a
warm-up (2 runs for the cache table). Peak memory: growth of a fresh process's peak resident set
during one run (batch 16 only).

**Ours vs `generate()`** on the same random HF models, {MAX_NEW} new tokens, inputs of mixed length;
the outputs are token-identical (tests/test_adapters.py). Target: ours / generate() <= 1.0.

{HF_HEADER}
{chr(10).join(_fmt_hf(r) for r in report['hf'])}

**UniLM backbone: KV cache vs recomputing the sequence each step** (bert4keras' decoder), greedy,
sources of 120-180 characters, 64 new tokens. Target: >= 3x.

{CACHE_HEADER}
{chr(10).join(_fmt_cache(r) for r in report['cache'])}

Reading the tables: with the model's work dominating (20 M parameters, batch 16), greedy decoding
costs what `generate()` costs, and beam search less: the prompt is run once per input rather than
once per beam, the finished pool is touched only when a hypothesis ends, seq2seq beams copy only
the self-attention cache (and inputs whose pool is complete leave the batch, which these
never-ending random models do not exercise). The tiny models show the per-step overhead, where
ours is lower. The cache gains least on the 0.6 M-parameter model at batch 1, where a step is mostly
per-operation overhead (under 1 ms), and most where recomputation is real work: long sources,
larger models, batches.
"""
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Benchmarks\n"
    start = text.find("## Decoding")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end + 1 :] if end != -1 else "")
    DOC.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny models, one repeat, no memory probes, nothing written")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chat-only", action="store_true", help="measure only the chat-model rows and merge them in")
    parser.add_argument("--probe", help=argparse.SUPPRESS)  # internal: one run in a fresh process
    args = parser.parse_args()
    if args.probe:
        _probe_main(json.loads(args.probe))
        return
    torch.set_num_threads(2)
    repeats = 1 if args.quick else args.repeats
    import transformers

    environment = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs visible (shared with other jobs)",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        print(HF_HEADER)
        chat_rows = bench_hf(chat_models(Path(tmp), args.quick), repeats, memory=not args.quick)
    chat_report = {"environment": environment, "repeats": repeats, "chat": chat_rows}
    if args.chat_only:
        if not args.quick:
            report = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {}
            RESULTS.write_text(json.dumps({**report, "chat": chat_rows}, indent=2, ensure_ascii=False) + "\n",
                               encoding="utf-8")
            write_chat_doc(chat_report)
        return

    sizes = [("tiny", 32, 2, None)] + ([] if args.quick else [("20m", 384, 4, 8000)])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = {}
        for size, width, layers, vocab in sizes:
            # eos_factor=0: the end token never wins, so every run makes exactly MAX_NEW tokens
            models[("t5", size)] = (tmp / f"t5-{size}", "seq2seq")
            save_t5(models[("t5", size)][0], width=width, layers=layers, vocab_size=vocab, eos_factor=0.0)
            models[("gpt2", size)] = (tmp / f"gpt2-{size}", "causal")
            save_gpt2(models[("gpt2", size)][0], width=width, layers=2 * layers, vocab_size=vocab, eos_factor=0.0)
        print(HF_HEADER)
        hf_rows = bench_hf(models, repeats, memory=not args.quick)
        print()
        print(CACHE_HEADER)
        unilm = [("tiny", 64, 2)] + ([] if args.quick else [("20m", 384, 6)])
        # recomputation is an order of magnitude slower: fewer repeats keep the run short
        cache_rows = bench_cache(tmp, min(repeats, 2), memory=not args.quick, sizes=unilm)
    if args.quick:
        return
    report = {
        "environment": environment,
        "repeats": repeats,
        "max_new_tokens": MAX_NEW,
        "hf": hf_rows,
        "cache": cache_rows,
        "chat": chat_rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_doc(report)
    write_chat_doc(chat_report)


if __name__ == "__main__":
    main()
