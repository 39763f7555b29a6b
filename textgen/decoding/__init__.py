"""Decoding: a validated config, one processor class per rule, and the search strategies.

``generate(adapter, inputs, config)`` drives any model adapter (textgen.models.adapters); token
healing for continuations lives in :mod:`textgen.decoding.healing`. The config
(``textgen.decoding.config``) needs no torch; the names below load the torch modules on first use,
so the command line can validate settings before torch is imported.
"""

from __future__ import annotations

from typing import Any

_PROCESSORS = ("AllowedTokens", "BannedTokens", "LogitsProcessor", "MinNewTokens", "NoRepeatNGram", "NoTokenLeft",
               "RepetitionPenalty", "Temperature", "TopK", "TopP")
__all__ = ["DecodingConfig", "Hypothesis", "generate", *_PROCESSORS]


def __getattr__(name: str) -> Any:
    if name == "DecodingConfig":
        from textgen.decoding.config import DecodingConfig

        return DecodingConfig
    if name in ("Hypothesis", "generate"):
        from textgen.decoding import search

        return getattr(search, name)
    if name in _PROCESSORS:
        from textgen.decoding import processors

        return getattr(processors, name)
    raise AttributeError(f"module 'textgen.decoding' has no attribute {name!r}")
