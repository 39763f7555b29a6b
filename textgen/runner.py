"""The one way a run goes, whoever asks: the command line, the REPL, ``eval``, the benchmarks, the
server, a Ray actor or Python (``textgen.generate``).

    runner = Runner()                                   # the user's settings; models load on first use
    job = runner.job("title", model=None, options={"method": "write"}, decoding={"num_beams": 4})
    job.warnings                                        # settings the strategy ignores, a shortened length ...
    for output in runner.run(job, records, batch_size=8):
        ...                                             # textgen.output.Output, one per record, in order

``job`` does every check before any record: it resolves the model (``--model``, else the user's
config, else the task's default), refuses a model that does not serve the task, builds the
decoding config from its layers (task defaults < the model's textgen.json < the user config <
what was asked) and validates it, loads the model (once per path and adapter kind; a chat model once
for every task), builds the task with its options (refusing what the model cannot do), and fits
``max_new_tokens`` to the model's window. Every problem is a ``RunError`` with a one-line message;
warnings are returned, never printed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textgen.config import ConfigError, Settings, load_settings
from textgen.decoding.config import DecodingConfig, build_config
from textgen.models.families import LoadOptions, family_of
from textgen.models.registry import ModelInfo, ModelNotFound, resolve
from textgen.tasks import DEFAULT_MODELS, PROMPTS, TASKS, Task

if TYPE_CHECKING:
    from textgen.io import Record
    from textgen.models.loaded import Model
    from textgen.output import Output
    from textgen.prompts import Prompt


class RunError(Exception):
    """A user-facing problem with the task, model, device or settings (one line)."""


@dataclass
class Job:
    """A checked run: the task over its loaded model, the decoding config, and what the user
    should be told about the settings."""

    task: Task
    config: DecodingConfig
    info: ModelInfo
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.task.name


class Runner:
    """The user's settings, a device, and the models loaded so far (reused across jobs)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        device: str | None = None,
        threads: int | None = None,
        dtype: str | None = None,
        allow_pickle: bool = False,
        prompt_file: str | Path | None = None,
        prompts: Mapping[str, Prompt] | None = None,
    ) -> None:
        """``settings``: the user's (default: the config file and environment). The other
        arguments override the settings' device, threads and dtype; ``prompt_file`` is a TOML file
        of chat prompts over the config file's ``[prompts]``; ``prompts`` (key -> Prompt) replaces
        both, for callers that hold prompts of their own."""
        if settings is None:
            try:
                settings = load_settings()
            except ConfigError as exc:
                raise RunError(str(exc)) from None
        self.settings = settings
        self.device_choice = device or settings.device
        self.threads = threads or settings.threads
        self.dtype = dtype or settings.dtype
        self.allow_pickle = allow_pickle
        self.prompt_file = Path(prompt_file).expanduser() if prompt_file else None
        self._device: str | None = None
        self._prompts: dict[str, Prompt] | None = {**PROMPTS, **prompts} if prompts is not None else None
        self._models: dict[tuple[str, str], Model] = {}

    # ------------------------------------------------------------------ resolution (no torch)
    def check_task(self, name: str) -> type[Task]:
        if name not in TASKS:
            raise RunError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}")
        return TASKS[name]

    def resolve(self, task: str, spec: str | None = None, *, how: str = "--model") -> ModelInfo:
        """The model for ``task``: ``spec``, else the user's default, else the task's own. ``how``
        is what the messages tell the user to change (``:model`` in the REPL)."""
        self.check_task(task)
        spec = spec or self.settings.model_for(task) or DEFAULT_MODELS[task]
        try:
            info = resolve(spec)
        except ModelNotFound as exc:
            raise RunError(str(exc)) from None
        if not info.serves(task):
            raise RunError(f"model {spec!r} serves {', '.join(info.tasks)}, not {task!r}; pick another with {how}")
        return info

    def config(self, task: str, info: ModelInfo, decoding: Mapping[str, Any]) -> DecodingConfig:
        """The validated config: task defaults < the model's textgen.json < the user config <
        ``decoding``. Needs no loaded model, so bad values are reported before loading."""
        layers = (TASKS[task].defaults, info.decoding.get(task, {}), self.settings.task_decoding.get(task, {}), dict(decoding))
        try:
            return build_config(*layers)
        except (ValueError, TypeError) as exc:
            raise RunError(f"decoding settings: {exc}") from None

    def check_options(self, task: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` checked against the task's (a usage error before any model loads)."""
        try:
            return TASKS[task].checked(options)
        except ValueError as exc:
            raise RunError(str(exc)) from None

    def prompts(self) -> dict[str, Prompt]:
        """The chat prompts in force: the tasks' own, the config file's ``[prompts]``, ``--prompt-file``."""
        if self._prompts is None:
            from textgen.prompts import PromptError, load_prompts, read_prompt_file

            try:
                layers = [self.settings.prompts] + ([read_prompt_file(self.prompt_file, PROMPTS)] if self.prompt_file else [])
                self._prompts = load_prompts(PROMPTS, *layers)
            except PromptError as exc:
                raise RunError(str(exc)) from None
        return self._prompts

    # ------------------------------------------------------------------ loading
    def device(self) -> str:
        """Set torch's threads and turn ``auto`` into ``cuda`` or ``cpu`` (imports torch)."""
        if self._device is None:
            import torch

            if self.threads:
                torch.set_num_threads(self.threads)
            choice = self.device_choice
            if choice == "auto":
                choice = "cuda" if torch.cuda.is_available() else "cpu"
            elif choice == "cuda" and not torch.cuda.is_available():
                raise RunError("--device cuda: no CUDA device is available (use --device cpu)")
            self._device = choice
        return self._device

    def model(self, info: ModelInfo, kind: str) -> Model:
        """The loaded model behind ``info`` as a ``kind`` adapter; loaded once and reused (a family
        that serves every kind, such as a chat model, is loaded once for all tasks)."""
        from textgen.models.loaded import Model

        family = family_of(info.path)
        key = (str(info.path), "any" if family.any_kind else kind)
        if key not in self._models:
            options = LoadOptions(device=self.device(), dtype=self.dtype, allow_pickle=self.allow_pickle, threads=self.threads)
            try:
                adapter = family.load(info.dir, kind, options)
            except Exception as exc:  # noqa: BLE001 -- any load failure is reported in one line
                raise RunError(f"cannot load model {info.name!r} from {info.path}: {exc}") from None
            self._models[key] = Model(info.name, info.dir, adapter, family.name)
        return self._models[key]

    def task(self, name: str, info: ModelInfo, options: Mapping[str, Any] | None = None) -> Task:
        """The task ``name`` over ``info``'s model with ``options``; ``RunError`` when the
        options ask for something the model cannot do."""
        cls = self.check_task(name)
        model = self.model(info, cls.kind)
        try:
            return cls(model, options=options, prompts=self.prompts())
        except ValueError as exc:
            raise RunError(str(exc)) from None

    def job(
        self,
        task: str,
        model: str | None = None,
        *,
        options: Mapping[str, Any] | None = None,
        decoding: Mapping[str, Any] | None = None,
        names: Mapping[str, str] | None = None,
        model_how: str = "--model",
        length_how: str = "--max-new-tokens",
    ) -> Job:
        """A checked run of ``task`` (see the module docstring). ``decoding``: DecodingConfig
        fields the user set; ``names`` spells them in warnings as the user wrote them (``--top-p``);
        ``model_how`` and ``length_how`` are the settings messages tell the user to change."""
        decoding = dict(decoding or {})
        self.check_task(task)
        options = self.check_options(task, options or {})
        info = self.resolve(task, model, how=model_how)
        config = self.config(task, info, decoding)
        warnings = [info.note] if info.note else []
        warnings += config.ignored(decoding, names)
        built = self.task(task, info, options)
        ignored, why = built.unread(list(decoding))
        if ignored:
            spelled = ", ".join((names or {}).get(f, f) for f in ignored)
            warnings.append(f"{spelled} {'is' if len(ignored) == 1 else 'are'} ignored: {why}")
        config, note = self._fit_length(built, config, explicit="max_new_tokens" in decoding, how=length_how)
        if note:
            warnings.append(note)
        return Job(built, config, info, warnings)

    @staticmethod
    def _fit_length(task: Task, config: DecodingConfig, *, explicit: bool, how: str) -> tuple[DecodingConfig, str]:
        """``config`` with a ``max_new_tokens`` that leaves the model room for the input. A value the
        user set that leaves none is refused (it could only fail every record); a default that leaves
        none (a model trained on short windows) is shortened, with a warning."""
        try:
            task.check_length(config)
        except ValueError as exc:
            fitted = None if explicit else task.fit_length(config)
            if fitted is None:
                raise RunError(f"{exc}; lower {how}") from None
            return fitted, f"{exc}; generating at most {fitted.max_new_tokens} tokens ({how} sets another length)"
        return config, ""

    # ------------------------------------------------------------------ running
    def run(
        self,
        job: Job,
        records: Iterable[Record],
        *,
        batch_size: int = 8,
        on_text: Callable[[str], None] | None = None,
        skip: Callable[[Record], bool] | None = None,
    ) -> Iterator[tuple[Record, Output]]:
        """Each record with its output, in order, a batch at a time (a lazy stream of records is
        answered as it arrives). ``skip(record)``: records already done (``--resume``) get no
        output. ``on_text`` streams the first record of each batch."""
        it = iter(records)
        while batch := list(islice(it, batch_size)):
            todo = [rec for rec in batch if skip is None or not skip(rec)]
            yield from zip(todo, job.task.run(todo, job.config, on_text=on_text) if todo else [])


# ---------------------------------------------------------------------- what an output was made with
def installed_version() -> str:
    """The installed version of textgen (``textgen --version``, the ``"textgen"`` record)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("textgen-zh")
    except PackageNotFoundError:  # a source tree that was never installed
        from textgen import __version__

        return f"{__version__} (not installed)"


def made_with(job: Job) -> dict[str, Any]:
    """The ``"textgen"`` record of a job's outputs (``Output.made_with``): textgen's version and
    the settings in force, i.e. the decoding fields that differ from neutral (only those the
    strategy reads: no ``top_p`` under greedy decoding) and the task's options."""
    from dataclasses import fields

    from textgen.decoding.config import ONLY_IN

    neutral = DecodingConfig()
    settings: dict[str, Any] = {}
    for f in fields(job.config):
        value = getattr(job.config, f.name)
        if ONLY_IN.get(f.name, job.config.strategy) != job.config.strategy:
            continue
        if value != getattr(neutral, f.name):
            settings[f.name] = list(value) if isinstance(value, tuple) else value
    settings.update(job.task.settings)
    return {"version": installed_version(), "settings": settings}


# ---------------------------------------------------------------------- the Python entry point
_DEFAULT_RUNNER: Runner | None = None


def generate(
    task: str,
    texts_or_records: str | Iterable[str | Mapping[str, Any]],
    model: str | None = None,
    *,
    batch_size: int = 8,
    **options: Any,
) -> list[Output]:
    """Run ``task`` on texts (or JSONL-style records: ``{"id", "text", ...}``) and return one
    ``Output`` per input, in order. ``options`` are decoding settings (``num_beams=4``,
    ``max_new_tokens=24``, any ``DecodingConfig`` field) and task options (``method="write"``,
    ``copy="text"``, ``extract_only=True`` ...). Models load once per process and are reused::

        import textgen
        out = textgen.generate("title", ["受冷空气影响，本周末我市将出现明显降温。"])
        print(out[0].text)

    Warnings about the settings are attached to every output; a bad setting raises ``RunError``.
    """
    from dataclasses import fields

    from textgen.io import make_record

    global _DEFAULT_RUNNER
    if _DEFAULT_RUNNER is None:
        _DEFAULT_RUNNER = Runner()
    runner = _DEFAULT_RUNNER
    known = {f.name for f in fields(DecodingConfig)}
    decoding = {k: v for k, v in options.items() if k in known}
    task_options = {k: v for k, v in options.items() if k not in known}
    job = runner.job(task, model, options=task_options, decoding=decoding)
    items = [texts_or_records] if isinstance(texts_or_records, str) else list(texts_or_records)
    records = [
        make_record(item.get("id", i), str(item.get("text") or ""), fields={k: v for k, v in item.items() if k not in ("id", "text")})
        if isinstance(item, Mapping) else make_record(i, item)
        for i, item in enumerate(items)
    ]
    outputs = [out for _, out in runner.run(job, records, batch_size=batch_size)]
    for out in outputs:
        out.warnings = [*job.warnings, *out.warnings]
    return outputs
