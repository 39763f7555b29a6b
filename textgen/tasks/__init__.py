"""The task registry: every task is declared once, and everything else is derived from it.

A task is a thin class (``textgen.tasks.base.Task``) naming itself, its adapter kind, defaults,
options, chat prompts and default model; its algorithm lives in a package of its own
(``textgen.summarize``, ``textgen.titles``, ``textgen.qa``, ``textgen.search``). The command line
builds one command per entry, the REPL switches among them, the runner picks each task's default
model, and the prompt files are checked against the prompts the tasks declare. Adding a task is its
module plus one entry in ``TASK_CLASSES``.
"""

from __future__ import annotations

from textgen.prompts import Prompt
from textgen.tasks.base import Prepared, Task
from textgen.tasks.continuation import ContinuationTask
from textgen.tasks.qa import QATask
from textgen.tasks.search import SearchTask
from textgen.tasks.summarize import SummarizeTask
from textgen.tasks.title import TitleTask

TASK_CLASSES: tuple[type[Task], ...] = (TitleTask, SummarizeTask, QATask, SearchTask, ContinuationTask)

TASKS: dict[str, type[Task]] = {cls.name: cls for cls in TASK_CLASSES}
TASK_NAMES = tuple(TASKS)
# The model each task uses when neither --model, TEXTGEN_MODEL nor the config file names one.
DEFAULT_MODELS: dict[str, str] = {cls.name: cls.default_model for cls in TASK_CLASSES}
# Every chat prompt a task renders, as shipped (key -> prompt); user prompt files are checked against these.
PROMPTS: dict[str, Prompt] = {key: prompt for cls in TASK_CLASSES for key, prompt in cls.prompts.items()}

__all__ = ["DEFAULT_MODELS", "PROMPTS", "TASKS", "TASK_CLASSES", "TASK_NAMES", "Prepared", "Task"]
