"""A loaded model: the adapter, its parsed directory, and what tasks derive from it once.

The runner loads a model once per (path, adapter kind) and hands the same ``Model`` to every task
that runs on it: a chat model once for every task, our backbone once as a seq2seq and once as a
causal adapter. What a task builds from a model and would otherwise rebuild per run (the title
selector, the summarize extractor, the token-healing prefix index over a 150k vocabulary) is kept
in ``cached``, so tasks themselves stay stateless and cheap to construct.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from textgen.models.model_dir import ModelDir

T = TypeVar("T")


@dataclass(eq=False)
class Model:
    name: str  # what output records name
    dir: ModelDir
    adapter: Any  # textgen.models.adapters.Adapter
    family: str = ""
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def cached(self, key: str, build: Callable[[], T]) -> T:
        """``build()``'s result, built once per model and key."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]
