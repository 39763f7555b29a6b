"""Training speed on this CPU: tokens per second of a full training step (forward, backward, AdamW)
in fp32 and under bf16 autocast, for the shipped backbone configuration and the GPU recipe's larger
one, measured in one run with the two precisions interleaved (so a busy machine slows both alike);
plus the loss of both precisions trained from the same initial weights on the same batches (the
"checked loss curves") and the padding that packing removes.

    python benchmarks/train_speed.py                      # -> benchmarks/results/train_speed.json, docs/training.md
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import random
import time

import torch

from common import ROOT, machine, machine_line, markdown_table, set_threads, write_json, write_section
from textgen.models.backbone import BertBackbone, BertConfig
from textgen.tokenizer import ChineseTokenizer
from textgen.training.data import MixedBatches, TokenData, packed_windows, specials_of, text_windows
from textgen.training.objectives import LossModel, batch_loss

CONFIGS = {
    "shipped 4x256": {"layers": 4, "hidden": 256},
    "gpu recipe 8x384": {"layers": 8, "hidden": 384},
}


def model_of(cfg: dict, vocab: int) -> BertBackbone:
    torch.manual_seed(0)
    return BertBackbone(BertConfig(vocab_size=vocab, hidden_size=cfg["hidden"], num_hidden_layers=cfg["layers"],
                                   num_attention_heads=cfg["hidden"] // 64, intermediate_size=4 * cfg["hidden"],
                                   hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, copy_head=True))


def step(model: BertBackbone, opt, batch, bf16: bool) -> float:
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with ctx:
        loss = batch_loss(LossModel(model), batch)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss)


def speed(cfg: dict, vocab: int, batches: list, rounds: int) -> dict[str, float]:
    """Tokens/s per precision: ``rounds`` alternations of 3 timed steps each (after one warm-up)."""
    out = {}
    models = {p: model_of(cfg, vocab) for p in ("fp32", "bf16")}
    opts = {p: torch.optim.AdamW(m.parameters(), lr=1e-4) for p, m in models.items()}
    times = {p: 0.0 for p in models}
    tokens = {p: 0 for p in models}
    for p in models:
        step(models[p], opts[p], batches[0], p == "bf16")
    for r in range(rounds):
        for p in (("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32")):
            for b in batches[1:4]:
                t = time.perf_counter()
                step(models[p], opts[p], b, p == "bf16")
                times[p] += time.perf_counter() - t
                tokens[p] += int(b.attention_mask.sum())
    for p in models:
        out[p] = round(tokens[p] / times[p], 1)
    out["bf16/fp32"] = round(out["bf16"] / out["fp32"], 3)
    return out


def loss_curves(vocab: int, batches: list, steps: int) -> dict[str, list[float]]:
    """Both precisions from the same initial weights over the same batches (shipped config)."""
    base = model_of(CONFIGS["shipped 4x256"], vocab)
    curves = {}
    for p in ("fp32", "bf16"):
        model = copy.deepcopy(base)
        opt = torch.optim.AdamW(model.parameters(), lr=5e-4)
        curves[p] = [round(step(model, opt, batches[i % len(batches)], p == "bf16"), 4) for i in range(steps)]
    return curves


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--curve-steps", type=int, default=60)
    args = ap.parse_args()
    set_threads(args.threads)
    from textgen.training import corpus

    tok = ChineseTokenizer.from_dir(ROOT / "textgen" / "models" / "embedded" / "mini-zh")
    texts = corpus.pretrain_texts()
    random.Random(0).shuffle(texts)
    sample = texts[:3000]
    windows, ends = text_windows(tok, sample, 256)
    padded = sum(256 - len(w) for w in windows) / (256 * len(windows))
    packed = packed_windows(tok, sample, 256)
    data = TokenData(packed, [False] * len(packed))
    mixed = MixedBatches(data, specials_of(tok), 16, ["causal", "masked", "span"], seed=0)
    batches = [mixed(i) for i in range(12)]
    env = machine()
    results = {name: speed(cfg, len(tok), batches, args.rounds) for name, cfg in CONFIGS.items()}
    curves = loss_curves(len(tok), batches, args.curve_steps)
    tail = {p: round(sum(c[-10:]) / 10, 4) for p, c in curves.items()}
    report = {"machine": env, "batch": "16 x 256 tokens (causal, masked, span)", "tokens_per_s": results,
              "padding_share_per_document_windows": round(padded, 4), "padding_share_packed": 0.0,
              "loss_last10_mean": tail, "loss_curves": curves}
    write_json(ROOT / "benchmarks" / "results" / "train_speed.json", report)
    rows = [[name, r["fp32"], r["bf16"], f"{r['bf16/fp32']:.2f}x"] for name, r in results.items()]
    body = (f"`python benchmarks/train_speed.py` on {machine_line(env)}. A step is forward, backward and AdamW "
            "on 16 windows of 256 tokens (causal, masked and span objectives in turn); the two precisions "
            f"alternate within the run.\n\n{markdown_table(['config', 'fp32 tokens/s', 'bf16 tokens/s', 'bf16/fp32'], rows)}\n\n"
            f"Loss check: the shipped configuration trained {args.curve_steps} steps from the same weights on "
            f"the same batches ends at {tail['fp32']} (fp32) and {tail['bf16']} (bf16) nats/token (mean of the "
            f"last 10 steps). Packing: cutting each document into its own windows leaves {padded:.1%} of the "
            "tokens of a 256-token batch as padding on this corpus sample; packed windows leave none.")
    write_section(ROOT / "docs" / "training.md", "Training", "Training speed on the CPU (bf16, packing)", body)
    print(body)


if __name__ == "__main__":
    main()
