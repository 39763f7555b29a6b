"""The decoding settings, validated once so every strategy can trust them.

Tasks hold defaults, model directories (``textgen.json``) and the command line override them with
``config.replace(**overrides)``; each layer gets a fresh validated object, so a bad value is
reported where it was given, not deep inside a decoding loop.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

# Beam search keeps num_beams rows per input for the whole decode; wider beams cost memory without
# better outputs (and -n K widens the beam to K). Sampling has no such cap: its rows go in passes.
MAX_BEAMS = 256
MAX_SEQUENCES = 100_000  # outputs per input a run may ask for (each is kept in memory and written)

# Settings that act only in one strategy: field -> the strategy ("sample" or "beam").
ONLY_IN: dict[str, str] = {"temperature": "sample", "top_k": "sample", "top_p": "sample", "length_penalty": "beam"}
_STRATEGY_NAMES = {"beam": "beam search", "sample": "sampling", "greedy": "greedy decoding"}


@dataclass(frozen=True)
class DecodingConfig:
    """How to pick output tokens.

    ``num_beams > 1`` is beam search, ``do_sample`` is sampling, otherwise greedy. The sampling
    warpers (``temperature``, ``top_k``, ``top_p``) act only when sampling, as in Hugging Face's
    ``generate``; ``length_penalty`` and ``early_stopping`` only in beam search.
    """

    num_beams: int = 1
    do_sample: bool = False
    num_return_sequences: int = 1
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    min_new_tokens: int = 0
    max_new_tokens: int = 32
    length_penalty: float = 1.0
    early_stopping: bool = True
    banned_token_ids: tuple[int, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        # Values arriving from JSON/TOML/CLI may be lists or ints-as-floats; normalise then check.
        object.__setattr__(self, "banned_token_ids", _token_ids(self.banned_token_ids))
        for name in ("num_beams", "num_return_sequences", "max_new_tokens"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("top_k", "no_repeat_ngram_size", "min_new_tokens"):
            _check_int(name, getattr(self, name), minimum=0)
        for name in ("do_sample", "early_stopping"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, not {getattr(self, name)!r}")
        for f in fields(self):  # nan and inf pass "> 0" checks, then fail every record
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{f.name} must be a finite number, not {value}")
        if self.seed is not None:
            _check_int("seed", self.seed, minimum=0)
        if not _is_number(self.temperature) or self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, not {self.temperature!r}")
        if not _is_number(self.top_p) or not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], not {self.top_p!r}")
        if not _is_number(self.repetition_penalty) or self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, not {self.repetition_penalty!r}")
        if not _is_number(self.length_penalty):
            raise ValueError(f"length_penalty must be a number, not {self.length_penalty!r}")
        if any(i < 0 for i in self.banned_token_ids):
            raise ValueError("banned_token_ids must be token ids (>= 0)")
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError(f"min_new_tokens ({self.min_new_tokens}) exceeds max_new_tokens ({self.max_new_tokens})")
        if self.num_beams > MAX_BEAMS:
            raise ValueError(f"num_beams={self.num_beams} is more than beam search keeps ({MAX_BEAMS}); for many "
                             "outputs, sample them (--sample -n N)")
        if self.num_return_sequences > MAX_SEQUENCES:
            raise ValueError(f"num_return_sequences={self.num_return_sequences} is more than a run returns per input "
                             f"({MAX_SEQUENCES:,})")
        if self.do_sample and self.num_beams > 1:
            raise ValueError("choose beam search (num_beams > 1) or sampling (do_sample), not both")
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            raise ValueError(
                f"beam search returns at most num_beams ({self.num_beams}) sequences, "
                f"not num_return_sequences={self.num_return_sequences}"
            )
        if self.num_beams == 1 and not self.do_sample and self.num_return_sequences > 1:
            raise ValueError("greedy decoding returns one sequence; use num_beams or do_sample for more")

    @property
    def strategy(self) -> str:
        """``"beam"``, ``"sample"`` or ``"greedy"``."""
        if self.num_beams > 1:
            return "beam"
        return "sample" if self.do_sample else "greedy"

    def ignored(self, given: Iterable[str], names: Mapping[str, str] | None = None) -> list[str]:
        """Warnings for the settings in ``given`` (field names the user set) that this config's
        strategy ignores (``top_p`` with beam search), as ``GenerationConfig.validate`` warns;
        ``names`` spells a field as the user wrote it (``--top-p``)."""
        names = names or {}
        messages = []
        for key in given:
            if key == "temperature" and isinstance(given, Mapping) and _is_number(given[key]) and given[key] == 0:
                continue  # an explicit temperature 0 is the request for greedy decoding (build_config)
            needs = ONLY_IN.get(key)
            if needs is not None and self.strategy != needs:
                what = "sampling (--sample)" if needs == "sample" else "beam search (--beam N)"
                messages.append(f"{names.get(key, key)} is ignored: it acts in {what}, "
                                f"and this run uses {_STRATEGY_NAMES[self.strategy]}")
        return messages

    def replace(self, **overrides: Any) -> DecodingConfig:
        """A new validated config with ``overrides`` applied; unknown names are an error."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown decoding option(s) {unknown}; known: {sorted(known)}")
        return replace(self, **overrides)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _token_ids(value: Any) -> tuple[int, ...]:
    """``banned_token_ids`` as a tuple of ints (JSON and TOML give lists; ints-as-floats pass)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"banned_token_ids must be a list of token ids, not {value!r}")
    ids = []
    for i in value:
        if isinstance(i, bool) or not isinstance(i, (int, float)) or i != int(i):
            raise ValueError(f"banned_token_ids must be a list of token ids, not {value!r}")
        ids.append(int(i))
    return tuple(ids)


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, not {value!r}")


def build_config(*layers: Mapping[str, Any]) -> DecodingConfig:
    """Apply default layers in order, the last being what the user asked for explicitly; for a
    task: ``Task.defaults``, the model's textgen.json, the user config, then flags or ``:set``.
    ``ValueError`` names a bad option.

    An explicit choice carries what it implies over the defaults beneath it, so flags compose
    without fights: ``--sample`` over a beam-search default turns beams off, ``--beam 5`` over a
    sampling default turns sampling off, ``-n 5`` widens a smaller default beam.

    An explicit ``temperature`` of 0 asks for greedy decoding, as in most sampling APIs (the
    limit of sampling as the temperature falls): sampling off, and beams off unless ``num_beams``
    is given too. Only the explicit layer means this; a default temperature must be > 0.
    Values of the wrong type are a ``ValueError`` naming the field, never a comparison error.
    """
    *defaults, explicit = layers
    explicit = dict(explicit)
    merged: dict[str, Any] = {}
    for layer in defaults:
        merged.update(layer)
    temperature = explicit.get("temperature")
    if _is_number(temperature) and temperature == 0:
        del explicit["temperature"]  # the temperature beneath stays; greedy decoding never reads it
        explicit["do_sample"] = False
        explicit.setdefault("num_beams", 1)
    if explicit.get("do_sample") is True and "num_beams" not in explicit:
        merged["num_beams"] = 1
    beams = explicit.get("num_beams", 1)
    if _is_int(beams) and beams > 1 and "do_sample" not in explicit:
        merged["do_sample"] = False
    merged.update(explicit)
    n = explicit.get("num_return_sequences")
    below = merged.get("num_beams", 1)
    if _is_int(n) and n > 0 and _is_int(below) and "num_beams" not in explicit and not merged.get("do_sample"):
        merged["num_beams"] = max(below, n)
    return DecodingConfig().replace(**merged)
