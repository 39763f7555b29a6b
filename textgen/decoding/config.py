"""The decoding settings, validated once so every strategy can trust them.

Tasks hold defaults, model directories (``textgen.json``) and the command line override them with
``config.replace(**overrides)``; each layer gets a fresh validated object, so a bad value is
reported where it was given, not deep inside a decoding loop.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


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
        object.__setattr__(self, "banned_token_ids", tuple(int(i) for i in self.banned_token_ids))
        for name in ("num_beams", "num_return_sequences", "max_new_tokens"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("top_k", "no_repeat_ngram_size", "min_new_tokens"):
            _check_int(name, getattr(self, name), minimum=0)
        for name in ("do_sample", "early_stopping"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, not {getattr(self, name)!r}")
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

    def replace(self, **overrides: Any) -> DecodingConfig:
        """A new validated config with ``overrides`` applied; unknown names are an error."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown decoding option(s) {unknown}; known: {sorted(known)}")
        return replace(self, **overrides)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, not {value!r}")
