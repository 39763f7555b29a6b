"""What every generation task shares: record -> adapter inputs -> ``generate`` -> output record.

A task knows nothing of the terminal. Subclasses say which adapter kind they need, their built-in
decoding defaults, and how a batch of texts becomes adapter inputs (``Prepared``), including how
each decoded output becomes the result.

Importing this module (and the task modules) does not import torch: the command line reads the
tasks' names and defaults to print ``--help`` instantly. The decoder is imported when generating.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from textgen.decoding.config import DecodingConfig
    from textgen.io import Record


@dataclass
class Prepared:
    """The adapter inputs for a batch of texts, and how to turn each decoded output into a result."""

    inputs: list[list[int]]
    processors: list[Any] = field(default_factory=list)  # logits processors with one row per input
    finish: Callable[[int, str], str] = lambda i, text: text  # (input index, decoded text) -> result


class Task:
    """Base class: a subclass sets the class attributes and ``prepare``; ``run`` does the rest."""

    name: ClassVar[str]
    kind: ClassVar[str]  # the adapter kind: "seq2seq" or "causal"
    summary: ClassVar[str]
    # Built-in decoding defaults (DecodingConfig fields); textgen.json, the user config and flags override.
    defaults: ClassVar[dict[str, Any]] = {}
    # Task switches beyond decoding (name -> default), settable from the CLI (``--name``; booleans
    # as ``--name/--no-name``) and the REPL's :set. The default's type is the option's type.
    options: ClassVar[dict[str, Any]] = {}
    # One line of --help per option, and the allowed values of string options that are choices.
    option_help: ClassVar[dict[str, str]] = {}
    option_choices: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init__(self, adapter: Any, *, model: str, preset: dict[str, Any] | None = None, **options: Any) -> None:
        """``preset``: the model's own choices for the task options (its textgen.json), which
        ``options`` override; ``self.preset`` keeps them so that a REPL can go back to them."""
        self.adapter = adapter
        self.model = model
        self.settings: dict[str, Any] = dict(self.options)
        self.configure(**(preset or {}))
        self.preset = dict(self.settings)
        self.configure(**options)

    def configure(self, **options: Any) -> None:
        """Change task options (``heal=False``...); unknown names and values of the wrong type or
        outside the option's choices are a ``ValueError`` naming the option."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ValueError(f"task {self.name!r} has no option(s) {unknown}")
        self.settings.update({k: self.check_option(k, v) for k, v in options.items()})

    @classmethod
    def check_option(cls, name: str, value: Any) -> Any:
        """``value`` as the type of the option's default (ints accepted for floats); a clear
        ``ValueError`` otherwise."""
        default = cls.options[name]
        kind = type(default)
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
            value = float(value) if ok else value
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, kind)
        if not ok:
            raise ValueError(f"{name} must be a {kind.__name__}, not {value!r}")
        choices = cls.option_choices.get(name)
        if choices and value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        return value

    # ------------------------------------------------------------------ texts -> adapter inputs
    def prepare(self, texts: list[str]) -> Prepared:
        raise NotImplementedError

    # ------------------------------------------------------------------ records
    def run(self, records: list[Record], config: DecodingConfig) -> list[dict[str, Any]]:
        """One output record per input record, in order. Bad records and records the model fails
        on become error records; a batch that fails is retried one record at a time so only the
        culprit fails."""
        results: dict[int, dict[str, Any]] = {}
        todo: list[int] = []
        for i, rec in enumerate(records):
            if rec.error is not None:
                results[i] = self._error(rec, rec.error)
            else:
                todo.append(i)
        try:
            results.update(zip(todo, self._generate([records[i] for i in todo], config)))
        except Exception as exc:  # noqa: BLE001 -- one bad record must not stop a batch
            if len(todo) == 1:
                results[todo[0]] = self._error(records[todo[0]], f"{type(exc).__name__}: {exc}")
            else:  # find the culprit(s): one record at a time
                results.update((i, self.run([records[i]], config)[0]) for i in todo)
        return [results[i] for i in range(len(records))]

    def _generate(self, records: list[Record], config: DecodingConfig) -> list[dict[str, Any]]:
        if not records:
            return []
        from textgen.decoding import generate

        prepared = self.prepare([rec.text or "" for rec in records])
        hyps = generate(self.adapter, prepared.inputs, config, processors=prepared.processors)
        limit = self.adapter.input_limit(config.max_new_tokens)
        return [
            self._output(rec, [prepared.finish(i, self.adapter.decode(h.token_ids)) for h in hs], hs, config,
                         self._cut_warning(len(prepared.inputs[i]), limit))
            for i, (rec, hs) in enumerate(zip(records, hyps))
        ]

    def _cut_warning(self, length: int, limit: int | None) -> list[str]:
        """Say so when the model could not read the whole input (silent truncation is the most
        common surprise with long documents)."""
        if limit is None or length <= limit:
            return []
        part = "first" if self.kind == "seq2seq" else "last"
        return [f"the input is {length} tokens long; the model reads only its {part} {limit}"]

    def _output(
        self, rec: Record, texts: list[str], hyps: list[Any], config: DecodingConfig, warnings: list[str]
    ) -> dict[str, Any]:
        warnings = [*rec.warnings, *warnings]
        outputs = []
        for rank, (text, hyp) in enumerate(zip(texts, hyps), 1):
            which = f"output {rank}" if len(hyps) > 1 else "output"
            if not hyp.finished:
                warnings.append(
                    f"{which} was cut at max_new_tokens={config.max_new_tokens}; raise --max-new-tokens for more"
                )
            elif not text.strip():
                warnings.append(
                    f"{which} is empty: the model ended it at once; try --min-new-tokens 1 or another model"
                )
            outputs.append({"text": text, "score": round(float(hyp.score), 4)})
        out: dict[str, Any] = {"id": rec.id, "outputs": outputs, "model": self.model, "task": self.name}
        if warnings:
            out["warnings"] = warnings
        return out

    def _error(self, rec: Record, message: str) -> dict[str, Any]:
        out: dict[str, Any] = {"id": rec.id, "outputs": [], "model": self.model, "task": self.name, "error": message}
        if rec.warnings:
            out["warnings"] = list(rec.warnings)
        return out


def build_config(*layers: dict[str, Any]) -> DecodingConfig:
    """Apply default layers in order, the last being what the user asked for explicitly; for a
    task: ``task.defaults``, the model's textgen.json, the user config, then flags or ``:set``.
    ``ValueError`` names a bad option.

    An explicit choice carries what it implies over the defaults beneath it, so flags compose
    without fights: ``--sample`` over a beam-search default turns beams off, ``--beam 5`` over a
    sampling default turns sampling off, ``-n 5`` widens a smaller default beam.
    """
    from textgen.decoding.config import DecodingConfig

    *defaults, explicit = layers
    merged: dict[str, Any] = {}
    for layer in defaults:
        merged.update(layer)
    if explicit.get("do_sample") and "num_beams" not in explicit:
        merged["num_beams"] = 1
    if explicit.get("num_beams", 1) > 1 and "do_sample" not in explicit:
        merged["do_sample"] = False
    merged.update(explicit)
    n = explicit.get("num_return_sequences")
    if n and "num_beams" not in explicit and not merged.get("do_sample"):
        merged["num_beams"] = max(merged.get("num_beams", 1), n)
    return DecodingConfig().replace(**merged)
