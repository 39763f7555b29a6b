"""Search-based generation (algorithms.md 4): sentences that satisfy hard constraints, found by
Markov chain Monte Carlo over whole sentences instead of left-to-right decoding.

* keywords -> a sentence holding every keyword (CGMH insert/delete/replace, 4.4);
* infill: blanks filled, everything else kept (masked-LM Gibbs for fixed-length blanks, 4.3;
  insert/delete/replace for blanks of any length);
* rewrite: the same meaning in other words (masked-LM proposals with Metropolis-Hastings on
  fluency x similarity, plus insert/delete).

Modules: ``state`` (sentences as locked/free/fixed segments), ``problems`` (user input -> initial
state), ``lm`` (batched scoring and proposals), ``target`` (log ρ), ``sampler`` (the chains),
``engine`` (the entry point), ``heldout`` (evaluation keyword sets), ``evaluate`` (metrics).
See docs/search.md.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# Names and the module that defines them; imported on first use, so that importing this package
# (the command line's --help does) does not import torch.
_EXPORTS = {
    "BackboneTextScorer": "engine",
    "Searcher": "engine",
    "from_adapter": "engine",
    "load_backbone_lm": "engine",
    "BackboneLM": "lm",
    "HFScorer": "lm",
    "MODES": "problems",
    "SearchInputError": "problems",
    "split_keywords": "problems",
    "Result": "sampler",
    "Settings": "sampler",
    "Step": "sampler",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'textgen.search' has no attribute {name!r}")
    return getattr(import_module(f"textgen.search.{_EXPORTS[name]}"), name)
