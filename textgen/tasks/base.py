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
    from pathlib import Path

    from textgen.decoding.config import DecodingConfig
    from textgen.io import Record


# ``Task.clip``: a text longer than this many characters per token the model reads is cut before
# tokenizing. ``Task.max_chars``: no task reads more of a record than this (see ``Task.run``).
CHARS_PER_TOKEN = 16
MAX_CHARS = 100_000


@dataclass
class Prepared:
    """The adapter inputs for a batch of texts, and how to turn each decoded output into a result."""

    inputs: list[list[int]]
    processors: list[Any] = field(default_factory=list)  # logits processors with one row per input
    finish: Callable[[int, str], str] = lambda i, text: text  # (input index, decoded text) -> result
    # Per input, text the output re-spells first and ``finish`` removes (token healing's remainder);
    # streaming shows nothing until it is spelled.
    hidden_lead: list[str] = field(default_factory=list)


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
    # The most characters of a record the task reads (the beginning; the end for causal tasks): a
    # 10,000,000-character record costs gigabytes and minutes to tokenize. A task built to read
    # longer documents may raise it.
    max_chars: ClassVar[int] = MAX_CHARS
    # Streaming (``run(..., on_text=)``): the writer of the first record's text as it is generated.
    _on_text: Callable[[str], None] | None = None
    model_dir: Path | None = None  # set by load_task: its textgen.json may name source prefixes

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
        """Change task options (``heal=False``...) and what they imply (``implied``); unknown
        names and values of the wrong type or outside the option's choices are a ``ValueError``
        naming the option."""
        options = self.implied(options)
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ValueError(f"task {self.name!r} has no option(s) {unknown}")
        self.settings.update({k: self.check_option(k, v) for k, v in options.items()})

    @classmethod
    def implied(cls, options: dict[str, Any]) -> dict[str, Any]:
        """``options`` plus the settings they imply when given together (a subclass says which);
        the REPL shows settings through it too."""
        return options

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

    @property
    def source_prefix(self) -> dict[str, str]:
        """The model's source prefixes (textgen.json ``source_prefix``, e.g. ``{"title": "标题："}``:
        what a multitask model reads before a task's input); none for a model trained without them."""
        from textgen.models.adapters import textgen_meta

        table = textgen_meta(self.model_dir).get("source_prefix") if self.model_dir else None
        return {k: v for k, v in table.items() if isinstance(v, str)} if isinstance(table, dict) else {}

    # ------------------------------------------------------------------ texts -> adapter inputs
    def prepare(self, texts: list[str]) -> Prepared:
        raise NotImplementedError

    # ------------------------------------------------------------------ records
    def run(
        self, records: list[Record], config: DecodingConfig, *, on_text: Callable[[str], None] | None = None
    ) -> list[dict[str, Any]]:
        """One output record per input record, in order. Bad records and records the model fails
        on become error records; a batch that fails is retried one record at a time so only the
        culprit fails. ``on_text`` streams: it gets each new piece of the first record's output as
        it is generated (tasks that decode in one pass; others ignore it), which the returned
        record then holds whole."""
        self._on_text = on_text
        try:
            return self._run([self._capped(rec) for rec in records], config)
        finally:
            self._on_text = None

    def _run(self, records: list[Record], config: DecodingConfig) -> list[dict[str, Any]]:
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
            else:  # find the culprit(s): one record at a time, not streamed again
                self._on_text = None
                results.update((i, self._run([records[i]], config)[0]) for i in todo)
        return [results[i] for i in range(len(records))]

    def _generate(self, records: list[Record], config: DecodingConfig) -> list[dict[str, Any]]:
        if not records:
            return []
        from textgen.decoding import generate

        limit = self.adapter.input_limit(config.max_new_tokens)
        clipped = [self.clip(rec.text or "", limit) for rec in records]
        prepared = self.prepare([text for text, _ in clipped])
        stream = None
        if self._on_text is not None:
            from textgen.tasks.streaming import TextStream

            lead = prepared.hidden_lead[0] if prepared.hidden_lead else ""
            stream = TextStream(self.adapter.decode, self._on_text, lead)
        hyps = generate(self.adapter, prepared.inputs, config, processors=prepared.processors, on_step=stream)
        return [
            self._output(rec, [prepared.finish(i, self.adapter.decode(h.token_ids)) for h in hs], hs, config,
                         self._cut_warning(len(prepared.inputs[i]), limit, clipped[i][1]))
            for i, (rec, hs) in enumerate(zip(records, hyps))
        ]

    def _capped(self, rec: Record) -> Record:
        """``rec`` with its text cut to ``max_chars`` characters, and a warning saying so."""
        if rec.text is None or len(rec.text) <= self.max_chars:
            return rec
        from dataclasses import replace

        cut = rec.text[: self.max_chars] if self.kind == "seq2seq" else rec.text[-self.max_chars :]
        part = "first" if self.kind == "seq2seq" else "last"
        note = f"the input is {len(rec.text):,} characters long; only its {part} {self.max_chars:,} are used"
        return replace(rec, text=cut, warnings=[*rec.warnings, note])

    def clip(self, text: str, limit: int | None) -> tuple[str, int | None]:
        """``text`` cut, before tokenizing, to what a model reading ``limit`` tokens can use (the
        beginning for seq2seq, the end for causal models), and its length in characters when cut.
        A token of Chinese text holds a few characters (only long runs of one symbol make longer
        ones), so at ``CHARS_PER_TOKEN`` characters per token the cut keeps all the model reads;
        and a 10,000,000-character record is not tokenized whole (gigabytes, half a minute) only
        to learn that it is too long."""
        if limit is None or len(text) <= limit * CHARS_PER_TOKEN:
            return text, None
        budget = limit * CHARS_PER_TOKEN
        return (text[:budget] if self.kind == "seq2seq" else text[-budget:]), len(text)

    def _cut_warning(self, length: int, limit: int | None, chars: int | None = None) -> list[str]:
        """Say so when the model could not read the whole input (silent truncation is the most
        common surprise with long documents). ``chars``: the text's length when ``clip`` cut it."""
        part = "first" if self.kind == "seq2seq" else "last"
        if limit is None or length <= limit:
            return []
        size = f"{chars:,} characters" if chars else f"{length} tokens"
        return [f"the input is {size} long; the model reads only its {part} {limit} tokens"]

    # ------------------------------------------------------------------ settings the model cannot serve
    def check_ready(self) -> None:
        """``ValueError`` when the task's options ask for something the model cannot do (every
        record would fail, so the command line refuses the run before it starts)."""

    def check_length(self, config: DecodingConfig) -> None:
        """``ValueError`` when ``max_new_tokens`` leaves the model no room for any input: every
        record would fail, so the command line refuses the run before it starts."""
        self.adapter.input_limit(config.max_new_tokens)

    def fit_length(self, config: DecodingConfig) -> DecodingConfig | None:
        """``config`` with the longest ``max_new_tokens`` (at most its own) that leaves the input
        at least as much room as the output; None when even one token leaves none."""
        low, high, best = 1, config.max_new_tokens, None
        while low <= high:
            mid = (low + high) // 2
            try:
                room = self.adapter.input_limit(mid)
            except ValueError:
                room = 0
            if room is None or room >= mid:
                best, low = mid, mid + 1
            else:
                high = mid - 1
        if best is None:
            return None
        return config.replace(max_new_tokens=best, min_new_tokens=min(config.min_new_tokens, best))

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
