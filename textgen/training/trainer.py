"""One trainer for every objective: AdamW, warm-up then decay, clipping, accumulation, EMA,
autocast (GPUs, and CPUs with native bf16), checkpoints with resume, periodic dev evaluation keeping the best checkpoint,
a JSONL loss log, and torch DDP when launched by ``torchrun``.

The trainer knows nothing about objectives: it asks a ``batches(step, rank, world)`` callable for the
step's batch (a pure function of the step, so a resumed run sees the same data) and a
``LossModel`` turns a batch into a loss. Only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from textgen.training.objectives import Batch, LossModel, batch_loss

STATE_FILE = "trainer_state.pt"


@dataclass
class TrainConfig:
    out_dir: str
    steps: int = 1000
    lr: float = 5e-4
    warmup: int = 100
    schedule: str = "cosine"  # cosine | linear | constant (after warm-up)
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    clip: float = 1.0
    accumulate: int = 1
    ema: float = 0.0  # 0 disables; e.g. 0.999
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (auto: bf16 on CUDA and on CPUs with native bf16)
    sparse_k: int = 0  # 0 = full softmax; k > 0 = sparse softmax over the top k logits
    eval_every: int = 200
    save_every: int = 200
    log_every: int = 10
    seed: int = 0
    resume: bool = True
    progress: bool = True
    plot: bool = False

    def __post_init__(self) -> None:
        if self.steps < 1 or self.accumulate < 1:
            raise ValueError("steps and accumulate must be >= 1")
        if self.schedule not in ("cosine", "linear", "constant"):
            raise ValueError(f"schedule must be cosine, linear or constant, not {self.schedule!r}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be auto, fp32, bf16 or fp16, not {self.precision!r}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError("ema must be in [0, 1)")


def cpu_has_bf16() -> bool:
    """True on x86 CPUs with native bf16 matrix instructions (``avx512_bf16`` or ``amx_bf16``)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="ignore")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to 1, then cosine or linear decay to ``min_lr_ratio`` at ``cfg.steps``."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    if cfg.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    decay = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1 - progress
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * decay


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Distributed:
    """Join the process group when launched by ``torchrun`` (gloo on CPU, NCCL on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    return Distributed(dist.get_rank(), dist.get_world_size(), local)


class EMA:
    """Exponential moving average of the weights (SPACES trains with it; evaluation uses it)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, v in model.state_dict().items():
            if k in self.shadow:
                self.shadow[k].mul_(self.decay).add_(v.float(), alpha=1 - self.decay)

    @contextlib.contextmanager
    def applied(self, model: nn.Module):
        """Temporarily load the averaged weights into ``model``."""
        backup = {k: v.detach().clone() for k, v in model.state_dict().items() if k in self.shadow}
        model.load_state_dict(self.shadow, strict=False)
        try:
            yield
        finally:
            model.load_state_dict(backup, strict=False)


class Trainer:
    def __init__(
        self,
        backbone: nn.Module,
        cfg: TrainConfig,
        batches: Callable[[int, int, int], Batch],
        *,
        evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
        metric: str = "dev_loss",
        higher_is_better: bool = False,
        save_model: Callable[[nn.Module, Path], None] | None = None,
    ):
        """``save_model(backbone, dir)`` writes a complete model directory (weights, tokenizer,
        textgen.json); the default writes only the backbone's weights and config."""
        self.cfg = cfg
        self.dist = setup_distributed()
        self.device = torch.device(f"cuda:{self.dist.local_rank}" if torch.cuda.is_available() else "cpu")
        self.backbone = backbone.to(self.device)
        self.loss_model: nn.Module = LossModel(self.backbone, cfg.sparse_k)
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.dist.local_rank] if self.device.type == "cuda" else None
            self.loss_model = DistributedDataParallel(self.loss_model, device_ids=ids)
        self.batches = batches
        self.evaluate = evaluate
        self.metric = metric
        self.higher_is_better = higher_is_better
        self.save_model = save_model or (lambda m, d: m.save(d))
        decay = [p for n, p in backbone.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in backbone.named_parameters() if p.ndim < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
        )
        self.ema = EMA(backbone, cfg.ema) if cfg.ema > 0 else None
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.out = Path(cfg.out_dir)
        self.step = 0
        self.best: float | None = None

    def _amp_dtype(self) -> torch.dtype | None:
        """Autocast dtype: on CUDA bf16 where supported, else fp16 with a scaler; on a CPU bf16 when
        it has native bf16 instructions (AVX512-BF16 or AMX), where the 6-layer/512 backbone trains
        1.85x faster (``benchmarks/train_speed.py``); master weights stay fp32 either way."""
        if self.cfg.precision == "fp32":
            return None
        if self.device.type == "cpu":
            return torch.bfloat16 if self.cfg.precision == "bf16" or cpu_has_bf16() else None
        if self.cfg.precision == "fp16":
            return torch.float16
        if self.cfg.precision == "bf16" or torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self) -> None:
        if not self.dist.main:
            return
        last = self.out / "last"
        tmp = self.out / "last.tmp"
        self.save_model(self.backbone, tmp)
        state = {
            "step": self.step,
            "best": self.best,
            "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.shadow if self.ema else None,
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "rng": torch.get_rng_state(),  # dropout continues exactly where it stopped
            "config": asdict(self.cfg),
        }
        torch.save(state, tmp / STATE_FILE)
        if last.exists():
            shutil.rmtree(last)
        tmp.rename(last)  # never leave a half-written "last"

    def _try_resume(self) -> None:
        state_path = self.out / "last" / STATE_FILE
        if not (self.cfg.resume and state_path.exists()):
            return
        saved = type(self.backbone).load(self.out / "last")
        changed = _shape_changes(saved, self.backbone)
        if changed:
            raise ValueError(f"{self.out / 'last'} holds a model with {changed}: resume with the settings it was "
                             "started with, or start over in another --out (or with --no-resume)")
        self.backbone.load_state_dict(saved.state_dict())
        state = torch.load(state_path, map_location=self.device, weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema and state.get("ema"):
            self.ema.shadow = {k: v.to(self.device) for k, v in state["ema"].items()}
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = state["step"]
        self.best = state.get("best")
        if state.get("rng") is not None and self.dist.world == 1:
            torch.set_rng_state(state["rng"].cpu())
        self._log({"event": "resume", "step": self.step})

    # ------------------------------------------------------------------ logging
    def _log(self, record: dict) -> None:
        if not self.dist.main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")

    def _progress(self):
        if not (self.cfg.progress and self.dist.main):
            return contextlib.nullcontext(None)
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        return Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )

    # ------------------------------------------------------------------ evaluation
    def _run_eval(self) -> dict[str, float]:
        if self.evaluate is None or not self.dist.main:
            return {}
        self.backbone.eval()
        with torch.no_grad(), self.ema.applied(self.backbone) if self.ema else contextlib.nullcontext():
            scores = self.evaluate(self.backbone)
            value = scores.get(self.metric)
            improved = value is not None and (
                self.best is None or (value > self.best if self.higher_is_better else value < self.best)
            )
            if improved:
                self.best = value
                self.save_model(self.backbone, self.out / "best")
        self.backbone.train()
        self._log({"step": self.step, "dev": scores, "best": self.best})
        return scores

    # ------------------------------------------------------------------ loop
    def fit(self) -> dict:
        """Train to ``cfg.steps`` (resuming from ``out_dir/last`` when present) and return a summary."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed + self.dist.rank)
        random.seed(cfg.seed + self.dist.rank)
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2), encoding="utf-8")
        self._try_resume()
        self.backbone.train()
        t0, tokens, loss_sum, n_loss = time.time(), 0, 0.0, 0
        first_step = self.step
        last_loss = self._logged_loss()  # a finished run resumed trains nothing: report its last loss
        with self._progress() as progress:
            task = progress.add_task("train", total=cfg.steps, completed=self.step, info="") if progress else None
            while self.step < cfg.steps:
                for group in self.optimizer.param_groups:
                    group["lr"] = cfg.lr * lr_factor(self.step, cfg)
                for micro in range(cfg.accumulate):
                    batch = self.batches(self.step * cfg.accumulate + micro, self.dist.rank, self.dist.world).to(self.device)
                    sync = micro == cfg.accumulate - 1 or self.dist.world == 1
                    ctx = contextlib.nullcontext() if sync else self.loss_model.no_sync()
                    with ctx, torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                        loss = batch_loss(self.loss_model, batch) / cfg.accumulate
                    (self.scaler.scale(loss) if self.scaler else loss).backward()
                    loss_sum += loss.item() * cfg.accumulate
                    n_loss += 1
                    tokens += int(batch.attention_mask.sum())
                if self.scaler:
                    self.scaler.unscale_(self.optimizer)
                if cfg.clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.backbone.parameters(), cfg.clip)
                if self.scaler:
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                if self.ema:
                    self.ema.update(self.backbone)
                self.step += 1
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    elapsed = time.time() - t0
                    last_loss = loss_sum / max(n_loss, 1)
                    rec = {"step": self.step, "loss": round(last_loss, 4), "lr": self.optimizer.param_groups[0]["lr"],
                           "tokens_per_s": round(tokens * self.dist.world / max(elapsed, 1e-9), 1)}
                    self._log(rec)
                    if progress:
                        progress.update(task, completed=self.step, info=f"loss {last_loss:.3f}  {rec['tokens_per_s']:.0f} tok/s")
                    t0, tokens, loss_sum, n_loss = time.time(), 0, 0.0, 0
                if cfg.eval_every and self.step % cfg.eval_every == 0:
                    self._run_eval()
                if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                    self._save_checkpoint()
        if self.evaluate and cfg.eval_every and self.step % cfg.eval_every:
            self._run_eval()
        if self.dist.main and self.ema:
            with self.ema.applied(self.backbone):
                self.save_model(self.backbone, self.out / "ema")
        if cfg.plot and self.dist.main:
            plot_log(self.out / "log.jsonl", self.out / "loss.png")
        return {"step": self.step, "last_loss": last_loss, "best": self.best, "steps_run": self.step - first_step}

    def _logged_loss(self) -> float:
        """The last training loss in ``log.jsonl`` (nan when there is none)."""
        log = self.out / "log.jsonl"
        loss = float("nan")
        if self.dist.main and log.exists():
            for line in log.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError):
                    loss = float(json.loads(line).get("loss", loss))
        return loss


def _shape_changes(saved: nn.Module, model: nn.Module) -> str:
    """How the saved model differs in shape from ``model`` (e.g. ``hidden_size 256, not 128``, from
    their configurations); empty when every weight fits. A changed shape cannot take the saved
    weights (``--hidden`` changed on an existing run)."""
    old, new = saved.state_dict(), model.state_dict()
    misfits = sorted(set(old) ^ set(new)) + [k for k in old if k in new and old[k].shape != new[k].shape]
    if not misfits:
        return ""
    was, now = (getattr(getattr(m, "config", None), "__dict__", {}) for m in (saved, model))
    diffs = [f"{k} {v}, not {now[k]}" for k, v in was.items()
             if isinstance(v, (int, bool)) and k in now and now[k] != v]
    return "; ".join(diffs) or f"weights of another shape ({misfits[0]})"


def plot_log(log_path: Path, png_path: Path) -> None:
    """Training (and dev) loss curves from ``log.jsonl`` into a PNG (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("textgen: --plot needs matplotlib (pip install matplotlib); skipped the plot", file=sys.stderr)
        return
    train, dev = [], []
    for line in log_path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if "loss" in rec:
            train.append((rec["step"], rec["loss"]))
        if "dev_loss" in rec.get("dev", {}):
            dev.append((rec["step"], rec["dev"]["dev_loss"]))
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train loss")
    if dev:
        ax.plot(*zip(*dev), marker="o", label="dev loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
