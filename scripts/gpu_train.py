"""The GPU recipe: a wider, deeper multitask backbone trained from scratch on the whole corpus in a
fixed time budget, exported as a model directory with weights sharded into files of at most 15 MB.

    OUT=DIR bash scripts/gpu_train.sh            # one large GPU, bf16, about 8 minutes of training
    SMOKE=1 OUT=DIR bash scripts/gpu_train.sh    # the same recipe on CPU with a tiny config

What it does, in order:
1. token data for every task (``textgen/training/multitask.py``), tokenized in parallel processes and
   cached in ``DIR/run`` (the vocabulary is the embedded ``mini-zh``'s 17,431 word units);
2. a speed probe of 10 steps, from which the number of steps that fits ``--minutes`` is set, so the
   learning-rate schedule ends when the time does;
3. one multitask run (packed causal/masked/span windows, title/summary/qa pairs with copy tags), bf16
   autocast, batches built ahead in worker processes so the GPU does not wait for Python;
4. ``DIR/model``: the checkpoint with the best dev loss, fp16, sharded; ``DIR/report.json``: steps,
   tokens/s, wall times and the dev losses.
A rerun with the same ``OUT`` resumes from the last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from textgen.models.backbone import BertBackbone, BertConfig  # noqa: E402
from textgen.training.export import save_model_dir  # noqa: E402
from textgen.tokenizer import ChineseTokenizer  # noqa: E402
from textgen.training import multitask  # noqa: E402
from textgen.training.data import MixedBatches, specials_of  # noqa: E402
from textgen.training.trainer import TrainConfig, Trainer  # noqa: E402

SHARD_BYTES = 15 * 1000 * 1000
FULL = {"layers": 8, "hidden": 384, "batch": 128, "lr": 1e-3, "warmup": 300, "window": 256}
SMOKE = {"layers": 2, "hidden": 64, "batch": 8, "lr": 1e-3, "warmup": 5, "window": 64}


class Prefetched:
    """``batches(step)`` computed ahead in worker processes (the batch of a step is a pure function
    of the step, so workers can build future steps while the GPU trains on the present one)."""

    def __init__(self, batches: MixedBatches, workers: int, ahead: int = 64):
        self.batches, self.ahead = batches, ahead
        self.pool = mp.get_context("fork").Pool(workers) if workers > 1 else None
        self.pending: dict[int, object] = {}

    def __call__(self, step: int, rank: int = 0, world: int = 1):
        if self.pool is None:
            return self.batches(step, rank, world)
        for s in range(step, step + self.ahead):
            if s not in self.pending:
                self.pending[s] = self.pool.apply_async(self.batches, (s, rank, world))
        for s in [s for s in self.pending if s < step]:
            del self.pending[s]
        return self.pending.pop(step).get()


def build_model(cfg: dict, vocab_size: int) -> BertBackbone:
    torch.manual_seed(0)
    return BertBackbone(BertConfig(
        vocab_size=vocab_size, hidden_size=cfg["hidden"], num_hidden_layers=cfg["layers"],
        num_attention_heads=max(1, cfg["hidden"] // 64), intermediate_size=4 * cfg["hidden"],
        max_position_embeddings=512, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, copy_head=True,
    ))


def probe_seconds_per_step(cfg: dict, batches, vocab_size: int, out: Path) -> float:
    """Seconds per step of this configuration on this machine, from 10 steps of a throwaway model."""
    probe = Trainer(build_model(cfg, vocab_size), TrainConfig(out_dir=str(out / "probe"), steps=10, warmup=1,
                    eval_every=0, save_every=10**9, log_every=10**9, progress=False, resume=False), batches)
    probe.fit()  # the first steps warm up kernels and workers
    t = time.time()
    probe.cfg.steps = 20
    probe.fit()
    return (time.time() - t) / 10


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--smoke", action="store_true", help="tiny config, a data subset, CPU is fine")
    ap.add_argument("--minutes", type=float, default=8.0, help="training time budget (the probe and export come on top)")
    ap.add_argument("--steps", type=int, help="fixed number of steps instead of the time budget")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    args = ap.parse_args()
    cfg = SMOKE if args.smoke else FULL
    out = Path(args.out)
    run = out / "run"
    t0 = time.time()
    tok = ChineseTokenizer.from_dir(ROOT / "textgen" / "models" / "embedded" / "mini-zh")
    train, dev = multitask.build_data(run, tok, cfg["window"], limit=60 if args.smoke else None, workers=args.workers)
    data_s = time.time() - t0
    batches = MixedBatches(train, specials_of(tok), cfg["batch"], multitask.SCHEDULE, seed=3)
    fetch = Prefetched(batches, 0 if args.smoke else min(args.workers, 8))
    steps = args.steps
    if steps is None:
        per_step = probe_seconds_per_step(cfg, fetch, len(tok), out)
        steps = max(20, int(args.minutes * 60 / per_step))
        print(f"probe: {per_step:.3f} s/step -> {steps} steps in {args.minutes} min", flush=True)
    meta = multitask.model_meta("mini-zh-gpu", window=cfg["window"])
    trainer = Trainer(
        build_model(cfg, len(tok)),
        TrainConfig(out_dir=str(run), steps=steps, lr=cfg["lr"], warmup=min(cfg["warmup"], steps // 10 + 1),
                    eval_every=max(steps // 5, 1), save_every=max(steps // 10, 1), log_every=max(steps // 50, 1),
                    progress=False, seed=3),
        fetch,
        evaluate=multitask.dev_evaluator(dev, tok),
        save_model=lambda m, d: save_model_dir(m, tok, d, meta),
    )
    t1 = time.time()
    summary = trainer.fit()
    train_s = time.time() - t1
    best = run / "best" if (run / "best").exists() else run / "last"
    model = BertBackbone.load(best)
    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.1  # for further fine-tuning
    save_model_dir(model, tok, out / "model", meta, dtype=torch.float16, max_shard_bytes=SHARD_BYTES)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    report = {
        "config": cfg, "steps": steps, "device": str(trainer.device), "amp": str(trainer.amp_dtype),
        "parameters": model.num_parameters, "data_s": round(data_s, 1), "train_s": round(train_s, 1),
        "summary": summary, "dev": [r for r in log if "dev" in r],
        "tokens_per_s": [r["tokens_per_s"] for r in log if "tokens_per_s" in r][-5:],
    }
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    print(json.dumps({k: report[k] for k in ("steps", "device", "amp", "parameters", "data_s", "train_s")}), flush=True)


if __name__ == "__main__":
    main()
