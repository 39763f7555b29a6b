"""What the quality benchmarks (``titles.py``, ``healing.py``) share: a frozen copy of each model
with where it came from, the decoding settings as the library builds them, batched task runs,
the machine, and rewriting one section of a markdown report.

Models are read while training may still be writing them (``runs/*/best`` is replaced whenever
the dev loss improves), so every model is first copied to a temporary directory together with the
training step it holds; all numbers then come from that one copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from textgen.config import Settings
from textgen.io import Record
from textgen.models.registry import ModelInfo, describe
from textgen.runner import Runner
from textgen.tasks import Task

# The library's runner without the user's config file or environment, so that results do not
# depend on who runs the benchmark; models load once per process.
RUNNER = Runner(Settings(), device="cpu")

# Training leftovers that are not part of the model (and are large).
_NOT_MODEL = {"trainer_state.pt"}


# ---------------------------------------------------------------------- models and provenance
@dataclass
class ModelCopy:
    """A model directory frozen for one benchmark run, and what it is."""

    label: str  # the name the report uses (``--model NAME=DIR``)
    source: Path  # the directory as given
    path: Path  # the frozen copy everything is loaded from
    info: ModelInfo  # textgen.json of the copy (name, tasks, decoding defaults)
    provenance: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"label": self.label, "dir": str(self.source), **self.provenance}


def parse_model_arg(spec: str) -> tuple[str, Path]:
    """``NAME=DIR`` (or a bare ``DIR``, named after the directory above ``best``/``last``)."""
    name, sep, directory = spec.partition("=")
    if not sep:
        path = Path(spec)
        return (path.parent.name if path.name in ("best", "last") else path.name), path
    return name, Path(directory)


def _best_step(log: Path) -> dict[str, Any] | None:
    """The dev record at which the run's current best checkpoint was saved: the trainer writes
    ``runs/X/best`` exactly when a dev evaluation improves ``best``, then logs that evaluation."""
    found, previous = None, None
    for line in log.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if "dev" in rec:
            if rec.get("best") != previous:
                found = rec
            previous = rec.get("best")
    return found


def _state_step(directory: Path) -> int | None:
    state = directory / "trainer_state.pt"
    if not state.is_file():
        return None
    import torch

    try:
        return int(torch.load(state, weights_only=True, map_location="cpu")["step"])
    except Exception:  # noqa: BLE001 -- a checkpoint being rewritten; provenance stays unknown
        return None


def _training_step(directory: Path) -> dict[str, Any]:
    """The step (and dev scores) of a checkpoint directory: from the run's ``log.jsonl`` for
    ``best``, from ``trainer_state.pt`` for ``last``, else from a ``...-stepN`` directory name."""
    log = directory.parent / "log.jsonl"
    if directory.name == "best" and log.is_file():
        rec = _best_step(log)
        if rec is not None:
            return {"step": rec["step"], "dev": rec["dev"], "step_from": str(log)}
    step = _state_step(directory)
    if step is not None:
        return {"step": step, "step_from": str(directory / "trainer_state.pt")}
    named = re.search(r"step[-_]?(\d+)$", directory.name)  # a snapshot kept as e.g. runs/mini-zh-step1000
    return {"step": int(named.group(1)), "step_from": "directory name"} if named else {"step": None}


def _log_covers(directory: Path) -> bool:
    """False while a just-saved ``best`` is not yet in the log (the trainer saves, then logs)."""
    weights, log = directory / "model.safetensors", directory.parent / "log.jsonl"
    if directory.name != "best" or not weights.is_file() or not log.is_file():
        return True
    return log.stat().st_mtime >= weights.stat().st_mtime


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def freeze_model(label: str, directory: Path, into: Path, attempts: int = 10) -> ModelCopy:
    """Copy ``directory`` (model files only) to ``into/label`` with its training step. Retries
    while the trainer is in the middle of replacing it (the log and the weights disagree)."""
    directory = directory.expanduser().resolve()
    if not (directory / "config.json").is_file():
        raise SystemExit(f"--model {label}={directory}: not a model directory (no config.json)")
    dest = into / label
    for _ in range(attempts):
        before = _training_step(directory)
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(directory, dest, ignore=lambda _d, names: [n for n in names if n in _NOT_MODEL])
        after = _training_step(directory)
        if before == after and _log_covers(directory):
            break
        time.sleep(10)
    else:
        raise SystemExit(f"{directory} kept changing while being copied; try again")
    weights = directory / "model.safetensors"
    provenance = {**after, "weights_sha256": _sha256(dest / "model.safetensors")[:16] if (dest / "model.safetensors").is_file() else None,
                  "weights_saved": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(weights.stat().st_mtime)) if weights.is_file() else None}
    return ModelCopy(label, directory, dest, describe(dest, name=label, source="local"), provenance)


def load_model_task(model: ModelCopy | ModelInfo, task: str, **options: Any) -> Task:
    """The task over the frozen model (or any resolved model), built as the command line builds it."""
    return RUNNER.task(task, model.info if isinstance(model, ModelCopy) else model, options)


def decoding_config(model: ModelCopy | ModelInfo, task: str, overrides: dict[str, Any]):
    """The library's decoding config for ``task``: the task's defaults, then the model's
    ``textgen.json``, then ``overrides`` (no user config: see ``RUNNER``)."""
    return RUNNER.config(task, model.info if isinstance(model, ModelCopy) else model, overrides)


def config_dict(config) -> dict[str, Any]:
    """The settings that act under the config's strategy (sampling warpers only when sampling)."""
    keys = ["num_beams", "do_sample", "no_repeat_ngram_size", "repetition_penalty", "min_new_tokens", "max_new_tokens"]
    if config.strategy == "beam":
        keys += ["length_penalty", "early_stopping"]
    if config.strategy == "sample":
        keys += ["temperature", "top_k", "top_p", "seed"]
    return {k: getattr(config, k) for k in keys}


# ---------------------------------------------------------------------- running tasks
@dataclass
class Outputs:
    """The first output text of each record, with how many records failed or were cut."""

    texts: list[str]
    failed: int = 0
    cut: int = 0  # stopped by max_new_tokens, not by the end token
    seconds: float = 0.0


def run_task(task: Task, texts: list[str], config, batch_size: int) -> Outputs:
    """``task.run`` over ``texts`` in batches, as the command line does; a failed record is an
    empty output (it scores 0)."""
    out = Outputs([])
    start = time.perf_counter()
    for first in range(0, len(texts), batch_size):
        records = [Record(first + i, t) for i, t in enumerate(texts[first : first + batch_size])]
        for result in task.run(records, config):
            out.texts.append(result.text)
            out.failed += result.error is not None
            out.cut += any("max_new_tokens" in w for w in result.warnings)
    out.seconds = time.perf_counter() - start
    return out


# ---------------------------------------------------------------------- the machine and reports
def set_threads(threads: int) -> int:
    import torch

    torch.set_num_threads(threads)
    return torch.get_num_threads()


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def machine_line(env: dict[str, Any]) -> str:
    return (f"{env['cpu']} ({env['cpu_cores']} cores), torch {env['torch']} with {env['torch_threads']} thread(s), "
            f"Python {env['python']}, transformers {env['transformers']}; {env['date']}")


def model_line(model: dict[str, Any]) -> str:
    """One markdown line naming a model copy: directory, step, weights hash."""
    step = f"step {model['step']}" if model.get("step") is not None else "step unknown"
    dev = model.get("dev") or {}
    dev_text = ", ".join(f"{k} {v:.4f}" for k, v in dev.items() if isinstance(v, (int, float)))
    return (f"`{model['label']}` = `{model['dir']}` ({step}{'; ' + dev_text if dev_text else ''}; "
            f"weights saved {model.get('weights_saved')}, sha256 {model.get('weights_sha256')}…)")


def rel(path: Path) -> str:
    """``path`` relative to the repository when inside it (for reports)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def write_json(path: Path, data: dict[str, Any], rows: str | None = None) -> None:
    """Indented JSON, except that each item of the list ``data[rows]`` takes one line (per-case
    rows stay readable and diffable without a line per field)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    head = {k: v for k, v in data.items() if k != rows}
    text = json.dumps(head, indent=2, ensure_ascii=False)
    if rows is not None:
        items = ",\n".join("    " + json.dumps(item, ensure_ascii=False) for item in data[rows])
        text = text[: text.rfind("}")].rstrip() + f',\n  "{rows}": [\n{items}\n  ]\n}}'
    path.write_text(text + "\n", encoding="utf-8")


def write_section(doc: Path, title: str, heading: str, body: str) -> None:
    """Replace the ``## heading`` section of ``doc`` with ``body`` (append it when missing),
    leaving the rest of the file alone; a new file starts with ``# title``."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else f"# {title}\n"
    section = f"## {heading}\n\n{body.strip()}\n"
    start = text.find(f"## {heading}\n")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end:] if end != -1 else "")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text, encoding="utf-8")


def markdown_table(header: list[str], rows: list[list[Any]], align: str | None = None) -> str:
    """A markdown table; ``align`` is one of ``l``/``r`` per column (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = [header, rule, *[[str(c) for c in r] for r in rows]]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)
