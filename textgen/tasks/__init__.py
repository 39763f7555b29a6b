"""Tasks: turn records into adapter inputs and hypotheses into output records.

``TASKS`` maps a command name to its task class; ``PLANNED`` names the tasks whose commands exist
but whose implementation lands in a later issue.
"""

from __future__ import annotations

from typing import Any

from textgen.tasks.base import Prepared, Task, build_config
from textgen.tasks.continuation import ContinuationTask
from textgen.tasks.qa import QATask
from textgen.tasks.search import SearchTask
from textgen.tasks.summarize import SummarizeTask
from textgen.tasks.title import TitleTask

TASKS: dict[str, type[Task]] = {"title": TitleTask, "summarize": SummarizeTask, "qa": QATask, "search": SearchTask, "continue": ContinuationTask}
PLANNED: dict[str, str] = {}
TASK_NAMES = (*TASKS, *PLANNED)
__all__ = ["PLANNED", "TASKS", "TASK_NAMES", "Prepared", "Task", "build_config", "load_task"]


def load_task(
    name: str,
    path: Any,
    *,
    model: str,
    device: str = "cpu",
    allow_pickle: bool = False,
    dtype: str | None = None,
    prompts: dict[str, Any] | None = None,
    **options: Any,
) -> Task:
    """The task ``name`` over the model directory ``path`` (loads the adapter: imports torch).
    The model's ``textgen.json`` may preset task options (``"options": {"title": {"copy": true}}``);
    ``options`` override them. The adapter learns the task's name: a chat model renders that
    task's prompt (``prompts``: ``textgen.prompts.load_prompts`` output; default the shipped
    ones). ``dtype``: ``bf16``, ``fp16`` or ``fp32`` for Hugging Face models."""
    from pathlib import Path

    from textgen.models.adapters import load_adapter, textgen_meta
    from textgen.models.registry import per_task

    cls = TASKS[name]
    adapter = load_adapter(
        path, cls.kind, device=device, allow_pickle=allow_pickle, dtype=dtype, task=name, prompts=prompts
    )
    preset = per_task(textgen_meta(Path(path)), "options").get(name, {})
    task = cls(adapter, model=model, preset=preset, **options)
    task.model_dir = Path(path)  # tasks that read more of the directory (summarize: its extractor)
    return task
