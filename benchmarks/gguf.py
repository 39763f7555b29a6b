"""GGUF decoding speed: textgen's decoder on ``GGUFCausal`` against llama.cpp's own completion.

Run from the repository root with a real GGUF model (not shipped; a Qwen2.5 0.5B Q4_K_M takes
about a minute on 2 CPU cores)::

    python benchmarks/gguf.py --model /path/to/model.gguf [--threads 2] [--repeats 3]

Both sides decode the same prompt ids (a Chinese news paragraph, ``--prompt-tokens`` long) for
``--max-new`` tokens, greedily, with the same thread count. llama.cpp's side is
``Llama.generate(ids, temp=0)`` (its greedy sampler, in C) after ``Llama.reset()`` so that the
prompt is decoded every run, as ours is; ``create_completion`` (which also detokenizes and checks
stop strings every token) is timed too. The greedy outputs must be token-identical (checked). Then
our beam search (4 beams) and a batch of 8 different prompts are timed (llama-cpp-python has no
beam search or batched completion to compare with). Runs alternate and the best of ``--repeats``
counts (the machine may be shared).

Writes ``benchmarks/results/gguf.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

# Before torch or llama.cpp start OpenMP threads: spinning waits on a CPU shared with other busy
# processes are very slow (see benchmarks/decode.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from textgen.decoding import DecodingConfig, generate  # noqa: E402
from textgen.models.gguf import load_gguf  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "gguf.json"

# Our own text (not from a data set); repeated to reach the prompt length.
PARAGRAPHS = [
    "北京时间昨天晚上，国家航天局宣布，我国自主研制的新一代载人飞船试验船在完成了一系列在轨试验后，成功返回东风着陆场。",
    "专家表示，这次试验验证了新一代飞船的高速再入返回、热防护、控制以及群伞回收等关键技术，为今后的任务打下了基础。",
    "今天上午，市图书馆新馆正式向读者开放，馆内藏书超过一百万册，并设有少儿阅读区和古籍修复展示区。",
    "研究人员提出了一种新的中文文本生成方法，在多个公开数据集上取得了较好的结果，相关代码已经开源。",
    "春天到了，公园里的花都开了，很多市民带着孩子去散步，周末的游客比平时多了一倍。",
    "这家工厂去年的产量比前年增长了百分之二十，新建的生产线预计明年投入使用。",
    "法院经审理认为，被告的行为构成违约，应当承担赔偿责任，并支付相应的利息。",
    "新的地铁线路明年通车，将方便城市东部居民出行，沿线共设十八座车站。",
]


def prompt_ids(adapter, tokens: int, offset: int = 0) -> list[int]:
    """Exactly ``tokens`` ids of our paragraphs, starting at paragraph ``offset``, for the model to
    continue (a continuation runs the full length more often than an instruction's answer)."""
    body: list[int] = []
    i = offset
    while len(body) < tokens:
        body += adapter.encode(PARAGRAPHS[i % len(PARAGRAPHS)])
        i += 1
    return body[:tokens]


class StepCounter:
    """Counts the rows ``adapter.step`` decodes (one token each), for throughput."""

    def __init__(self, adapter) -> None:
        self.adapter, self.rows, self._step = adapter, 0, adapter.step
        adapter.step = self

    def __call__(self, state, tokens):
        self.rows += len(tokens)
        return self._step(state, tokens)


def best(fn, repeats: int) -> tuple[float, object]:
    out, times = None, []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=100)
    ap.add_argument("--max-new", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--flash-attn", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(1)  # the decoder's own tensor work is small; llama.cpp gets the threads

    from llama_cpp import Llama

    start = time.perf_counter()
    adapter = load_gguf(args.model, n_threads=args.threads, flash_attn=args.flash_attn)
    load_ours = time.perf_counter() - start
    start = time.perf_counter()
    llama = Llama(str(args.model), n_ctx=args.prompt_tokens + args.max_new + 64, n_threads=args.threads,
                  n_threads_batch=args.threads, flash_attn=args.flash_attn, verbose=False)
    load_llama = time.perf_counter() - start

    ids = prompt_ids(adapter, args.prompt_tokens)
    greedy = DecodingConfig(max_new_tokens=args.max_new)
    ends = set(adapter.eos_token_ids)

    def ours() -> list[int]:
        return generate(adapter, [ids], greedy)[0][0].token_ids

    def theirs() -> list[int]:
        llama.reset()  # decode the prompt again every run (llama-cpp-python would reuse it)
        out: list[int] = []
        for token in llama.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0):
            if token in ends:
                break
            out.append(token)
            if len(out) == args.max_new:
                break
        return out

    def completion() -> list[int]:
        llama.reset()
        r = llama.create_completion(ids, max_tokens=args.max_new, temperature=0.0, top_k=1, repeat_penalty=1.0)
        return r["usage"]["completion_tokens"]

    ours(), theirs(), completion()  # warm up (token texts, contexts, caches)
    times: dict[str, list[float]] = {"ours": [], "llama": [], "completion": []}
    outputs = {}
    for _ in range(args.repeats):  # alternate, so a busy moment hits both sides
        for name, fn in (("ours", ours), ("llama", theirs), ("completion", completion)):
            start = time.perf_counter()
            outputs[name] = fn()
            times[name].append(time.perf_counter() - start)
    t_ours, t_llama, t_completion = (min(times[k]) for k in ("ours", "llama", "completion"))
    n_tokens = len(outputs["ours"])
    identical = outputs["ours"] == outputs["llama"]

    counter = StepCounter(adapter)
    beam_cfg = DecodingConfig(max_new_tokens=args.max_new, num_beams=4)
    t_beam, beam_out = best(lambda: generate(adapter, [ids], beam_cfg), args.repeats)
    beam_rows = counter.rows // args.repeats
    batch_inputs = [prompt_ids(adapter, args.prompt_tokens - 8 * (i % 3), offset=i) for i in range(8)]
    counter.rows = 0
    t_batch, batch_out = best(lambda: generate(adapter, batch_inputs, greedy), args.repeats)
    batch_rows = counter.rows // args.repeats
    batch_tokens = sum(len(h[0].token_ids) + h[0].finished for h in batch_out)
    singles = [generate(adapter, [x], greedy)[0][0].token_ids for x in batch_inputs]
    # llama.cpp's own logits depend on how tokens are grouped into a batch (by tenths of a logit
    # on quantized models), so a batch can pick other tokens than one-at-a-time decoding: count
    # the outputs that agree and how far the others agree.
    agree = [h[0].token_ids == one for h, one in zip(batch_out, singles)]
    common = [next((i for i, (x, y) in enumerate(zip(h[0].token_ids, one)) if x != y), min(len(one), len(h[0].token_ids)))
              for h, one in zip(batch_out, singles)]

    result = {
        "environment": {
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs visible (maybe shared with other jobs)",
            "torch": torch.__version__,
            "llama_cpp_python": __import__("llama_cpp").__version__,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        },
        "model": str(args.model.name),
        "threads": args.threads,
        "flash_attn": args.flash_attn,
        "prompt_tokens": len(ids),
        "max_new_tokens": args.max_new,
        "repeats": args.repeats,
        "load_s": {"ours": round(load_ours, 3), "llama": round(load_llama, 3)},
        "greedy": {
            "new_tokens": n_tokens,
            "identical_tokens": identical,
            "ours_s": round(t_ours, 4),
            "llama_generate_s": round(t_llama, 4),
            "llama_completion_s": round(t_completion, 4),
            "ours_tok_s": round(n_tokens / t_ours, 2),
            "llama_generate_tok_s": round(n_tokens / t_llama, 2),
            "ratio_vs_generate": round(t_ours / t_llama, 3),
            "ratio_vs_completion": round(t_ours / t_completion, 3),
            "all_times": {k: [round(x, 4) for x in v] for k, v in times.items()},
        },
        "beam4": {
            "s": round(t_beam, 4),
            "new_tokens_best": len(beam_out[0][0].token_ids),
            "rows_decoded": beam_rows,  # beam rows x steps after the prompt
            "row_tokens_per_s": round(beam_rows / t_beam, 2),
            "output_tokens_per_s": round(len(beam_out[0][0].token_ids) / t_beam, 2),
        },
        "batch8": {
            "s": round(t_batch, 4),
            "new_tokens": batch_tokens,
            "rows_decoded": batch_rows,
            "tok_s": round(batch_tokens / t_batch, 2),
            "prompt_tokens": [len(x) for x in batch_inputs],
            "outputs_same_as_one_at_a_time": sum(agree),
            "tokens_before_first_difference": common,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
