"""Decoding: a validated config, one processor class per rule, and the search strategies.

``generate(adapter, inputs, config)`` drives any model adapter (textgen.models.adapters); token
healing for continuations lives in :mod:`textgen.decoding.healing`.
"""

from textgen.decoding.config import DecodingConfig
from textgen.decoding.processors import (
    AllowedTokens,
    BannedTokens,
    ForcedPrefix,
    LogitsProcessor,
    MinNewTokens,
    NoRepeatNGram,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
)
from textgen.decoding.search import Hypothesis, generate

__all__ = [
    "AllowedTokens",
    "BannedTokens",
    "DecodingConfig",
    "ForcedPrefix",
    "Hypothesis",
    "LogitsProcessor",
    "MinNewTokens",
    "NoRepeatNGram",
    "RepetitionPenalty",
    "Temperature",
    "TopK",
    "TopP",
    "generate",
]
