"""What every generation task shares: records -> the task's ``generate`` hook -> ``Output`` records.

A task knows nothing of the terminal, and holds no state of a run: everything it needs is given
explicitly. The loaded model (``textgen.models.loaded.Model``: adapter, parsed model directory,
per-model caches) and the task options are constructor arguments; the decoding config and the
stream writer are arguments of ``run``, passed down to ``generate`` and ``prepare``. A task is cheap
to build (the runner builds one per set of options over a cached model).

Subclasses declare, once (``textgen.tasks`` registers them): their name, the adapter kind they
drive, their built-in decoding defaults, the decoding fields they read, their options, their chat
prompts and their default model. Each implements the one hook ``generate(records, config,
on_text)``; tasks that decode left to right call ``decode`` from it, with ``prepare(texts,
config)`` saying how texts become adapter inputs.

Importing this module (and the task modules) does not import torch: the command line reads the
tasks' names and defaults to print ``--help`` instantly. The decoder is imported when generating.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from textgen.output import Candidate, Output
from textgen.prompts import Prompt

if TYPE_CHECKING:
    from collections.abc import Mapping

    from textgen.decoding.config import DecodingConfig
    from textgen.io import Record
    from textgen.models.loaded import Model


# ``Task.clip``: a text longer than this many characters per token the model reads is cut before
# tokenizing. ``Task.max_chars``: no task reads more of a record than this (see ``Task.run``).
CHARS_PER_TOKEN = 16
MAX_CHARS = 100_000

OnText = Callable[[str], None]  # streaming: gets each new piece of the first record's output


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
    """Base class: a subclass sets the class attributes and ``generate`` (usually via ``decode``
    and ``prepare``); ``run`` does the rest."""

    name: ClassVar[str]
    kind: ClassVar[str]  # the adapter kind: "seq2seq" or "causal"
    summary: ClassVar[str]
    default_model: ClassVar[str]  # used when neither --model, TEXTGEN_MODEL nor the config file names one
    # Built-in decoding defaults (DecodingConfig fields); textgen.json, the user config and flags override.
    defaults: ClassVar[dict[str, Any]] = {}
    # The DecodingConfig fields the task reads (the CLI offers only their flags); None: all of them.
    decoding_fields: ClassVar[tuple[str, ...] | None] = None
    # Task switches beyond decoding (name -> default), settable from the CLI (``--name``; booleans
    # as ``--name/--no-name``) and the REPL's :set. The default's type is the option's type.
    options: ClassVar[dict[str, Any]] = {}
    # Option defaults on a chat model (an LLM), chosen by measurement (docs/gguf.md); a model's
    # textgen.json and the user's options override them.
    chat_defaults: ClassVar[dict[str, Any]] = {}
    # One line of --help per option, and the allowed values of string options that are choices.
    option_help: ClassVar[dict[str, str]] = {}
    option_choices: ClassVar[dict[str, tuple[str, ...]]] = {}
    # The chat prompts the task renders on a chat model (key -> shipped prompt); a user overrides
    # them by key (config file ``[prompts.KEY]``, ``--prompt-file``). No prompt: raw text.
    prompts: ClassVar[dict[str, Prompt]] = {}
    # The most characters of a record the task reads (the beginning; the end for causal tasks): a
    # 10,000,000-character record costs gigabytes and minutes to tokenize. A task built to read
    # longer documents may raise it.
    max_chars: ClassVar[int] = MAX_CHARS

    def __init__(
        self, model: Model, *, options: Mapping[str, Any] | None = None, prompts: Mapping[str, Prompt] | None = None
    ) -> None:
        """``options`` override the model's own choices (its textgen.json ``options``), which
        override the task's defaults; each is checked (``ValueError`` naming the option).
        ``prompts``: the chat prompts in force (default: the task's shipped ones)."""
        self.model = model
        self.adapter = model.adapter
        self.model_dir = model.dir
        self.chat_prompts = {**self.prompts, **(prompts or {})}
        settings = dict(self.options)
        if self.chat:
            settings.update(self.checked(self.chat_defaults))
        settings.update(self.checked(model.dir.options.get(self.name, {})))
        settings.update(self.checked(options or {}))
        self.settings: Mapping[str, Any] = MappingProxyType(settings)
        self.check_ready()

    def with_options(self, **options: Any) -> Task:
        """The same task on the same model with some options changed."""
        return type(self)(self.model, options={**self.settings, **options}, prompts=self.chat_prompts)

    # ------------------------------------------------------------------ options
    @classmethod
    def checked(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` plus what they imply (``implied``), each value checked; unknown names and
        values of the wrong type or outside the option's choices are a ``ValueError`` naming the option."""
        options = cls.implied(dict(options))
        unknown = sorted(set(options) - set(cls.options))
        if unknown:
            raise ValueError(f"task {cls.name!r} has no option(s) {unknown}")
        return {k: cls.check_option(k, v) for k, v in options.items()}

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

    def check_ready(self) -> None:
        """``ValueError`` when the options ask for something the model cannot do (every record
        would fail, so the task is refused before any record)."""

    def unread(self, fields: list[str]) -> tuple[list[str], str]:
        """Which of the decoding settings ``fields`` (those the user set) do nothing in this run,
        and why (a task whose options choose a method that does not decode says so)."""
        return [], ""

    # ------------------------------------------------------------------ model inputs
    @property
    def chat(self) -> bool:
        """Whether the model renders chat prompts (then the task's prompt wraps its input)."""
        return hasattr(self.adapter, "encode_prompt")

    def encode_input(self, text: str, key: str | None = None) -> list[int]:
        """What the model reads for ``text``: on a chat model the prompt ``key`` (default: the
        task's own) around it; otherwise the model's source prefix for ``key`` and the text."""
        key = key or self.name
        if self.chat and key in self.chat_prompts:
            return self.adapter.encode_prompt(self.chat_prompts[key], text=text)
        return self.adapter.encode(self.model_dir.prefix(key) + text)

    # ------------------------------------------------------------------ records
    def run(self, records: list[Record], config: DecodingConfig, *, on_text: OnText | None = None) -> list[Output]:
        """One output per input record, in order. Bad records and records the model fails on
        become error outputs; a batch that fails is retried one record at a time so only the
        culprit fails. ``on_text`` streams: it gets each new piece of the first record's output as
        it is generated, which the returned output then holds whole."""
        return self._isolated([self._capped(rec) for rec in records], config, on_text)

    def _isolated(self, records: list[Record], config: DecodingConfig, on_text: OnText | None) -> list[Output]:
        results: dict[int, Output] = {}
        todo: list[int] = []
        for i, rec in enumerate(records):
            if rec.error is not None:
                results[i] = self.error(rec, rec.error)
            else:
                todo.append(i)
        try:
            results.update(zip(todo, self.generate([records[i] for i in todo], config, on_text) if todo else []))
        except Exception as exc:  # noqa: BLE001 -- one bad record must not stop a batch
            if len(todo) == 1:
                results[todo[0]] = self.error(records[todo[0]], f"{type(exc).__name__}: {exc}")
            else:  # find the culprit(s): one record at a time, not streamed again
                results.update((i, self._isolated([records[i]], config, None)[0]) for i in todo)
        return [results[i] for i in range(len(records))]

    def generate(self, records: list[Record], config: DecodingConfig, on_text: OnText | None = None) -> list[Output]:
        """The hook: one output per record (none has an error). Left-to-right tasks decode."""
        return self.decode(records, config, on_text)

    def prepare(self, texts: list[str], config: DecodingConfig) -> Prepared:
        """Adapter inputs (and processors) for a batch of texts, for ``decode``."""
        return Prepared([self.encode_input(t) for t in texts])

    def decode(self, records: list[Record], config: DecodingConfig, on_text: OnText | None = None) -> list[Output]:
        """Decode the records' texts left to right with the shared decoder (``prepare`` makes the inputs)."""
        from textgen.decoding import generate

        limit = self.adapter.input_limit(config.max_new_tokens)
        clipped = [self.clip(rec.text or "", limit) for rec in records]
        prepared = self.prepare([text for text, _ in clipped], config)
        stream = None
        if on_text is not None:
            from textgen.tasks.streaming import TextStream

            lead = prepared.hidden_lead[0] if prepared.hidden_lead else ""
            stream = TextStream(self.adapter.decode, on_text, lead)
        hyps = generate(self.adapter, prepared.inputs, self.decoder_config(config), processors=prepared.processors,
                        on_step=stream)
        return [
            self.decoded(rec, [prepared.finish(i, self.adapter.decode(h.token_ids)) for h in hs], hs, config,
                         self._cut_warning(len(prepared.inputs[i]), limit, clipped[i][1]))
            for i, (rec, hs) in enumerate(zip(records, hyps))
        ]

    def decoder_config(self, config: DecodingConfig) -> DecodingConfig:
        """The config the decoder runs with (``prepare`` sees the run's own); a task that applies a
        setting itself, per row, takes it out here."""
        return config

    def _capped(self, rec: Record) -> Record:
        """``rec`` with its text cut to ``max_chars`` characters, and a warning saying so."""
        if rec.text is None or len(rec.text) <= self.max_chars:
            return rec
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

    # ------------------------------------------------------------------ lengths
    def check_length(self, config: DecodingConfig) -> None:
        """``ValueError`` when ``max_new_tokens`` leaves the model no room for any input."""
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

    # ------------------------------------------------------------------ outputs
    def output(self, rec: Record, candidates: list[Candidate], warnings: list[str] = (), **extras: Any) -> Output:
        """A successful output for ``rec`` (its own warnings first)."""
        return Output(rec.id, self.name, self.model.name, candidates, [*rec.warnings, *warnings], extras=extras)

    def decoded(
        self, rec: Record, texts: list[str], hyps: list[Any], config: DecodingConfig, warnings: list[str]
    ) -> Output:
        """The output of decoded hypotheses, with a warning for each one cut or empty."""
        warnings = list(warnings)
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
        return self.output(rec, [Candidate(t, round(float(h.score), 4)) for t, h in zip(texts, hyps)], warnings)

    def error(self, rec: Record, message: str) -> Output:
        return Output(rec.id, self.name, self.model.name, warnings=list(rec.warnings), error=message)
