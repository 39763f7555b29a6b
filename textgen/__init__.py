"""textgen: Chinese text generation (titles, SPACES summaries, QA pairs, MCMC search, continuation).

``textgen.generate(task, texts, model=None, **options)`` runs any task from Python and returns
``textgen.output.Output`` records (``textgen.runner``); the command line is ``textgen.cli``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Output", "RunError", "Runner", "generate"]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing textgen (the command line does) stays instant.
    if name in ("generate", "Runner", "RunError"):
        from textgen import runner

        return getattr(runner, name)
    if name == "Output":
        from textgen.output import Output

        return Output
    raise AttributeError(f"module 'textgen' has no attribute {name!r}")
