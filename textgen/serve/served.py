"""The models a server was started with, warm, and the checked jobs requests run.

``Served(runner, specs)`` resolves every ``--model`` once, at start (``load``): each is loaded
through the runner for every task it serves (our backbone once as a seq2seq and once as a causal
adapter, a chat model once for all), and the default job of each task is built, so the first
request finds everything warm. A request names a model by the name its outputs carry (``mini-zh``)
or by the ``--model`` string it was started with; nothing else is resolved, so a request can never
make the server read a path or download anything.

Jobs are ``Runner.job`` results (every check of a local run: options, decoding settings, the
model's window), built in the model's thread and cached per (model, task, options). Each has the
``"textgen"`` stamp of a local run's JSONL records: the version and the settings in force.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from textgen.decoding.config import DecodingConfig
from textgen.models.registry import ModelInfo, ModelNotFound, resolve
from textgen.runner import Job, Runner, RunError
from textgen.serve.batcher import Batcher
from textgen.tasks import DEFAULT_MODELS, TASKS

DECODING_FIELDS = frozenset(f.name for f in fields(DecodingConfig))
_JOBS = 256  # jobs kept (distinct option sets over all models)


class NotServed(LookupError):
    """A model or task this server does not serve (HTTP 404)."""


@dataclass
class ServedModel:
    name: str  # what outputs and /v1/models call it
    spec: str  # the --model string it was started with
    info: ModelInfo
    tasks: tuple[str, ...]  # the tasks it serves
    batcher: Batcher
    chat: bool = False  # renders chat messages (/v1/chat/completions)
    adapter: Any = None  # the causal adapter (completions, chat), when it serves continue
    aliases: set[str] = field(default_factory=set)

    def to_json(self, created: int) -> dict[str, Any]:
        """The model as ``GET /v1/models`` lists it (OpenAI's fields, then textgen's)."""
        endpoints = ["/v1/tasks/" + t for t in self.tasks]
        if "continue" in self.tasks:
            endpoints.append("/v1/completions")
        if self.chat:
            endpoints.append("/v1/chat/completions")
        return {"id": self.name, "object": "model", "created": created, "owned_by": "textgen",
                "tasks": list(self.tasks), "chat": self.chat, "endpoints": endpoints,
                "family": self.info.family, "source": self.info.source}


def split_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(decoding settings, task options) of a request's ``options``: DecodingConfig fields are
    decoding settings, anything else a task option (checked by the task)."""
    decoding = {k: v for k, v in options.items() if k in DECODING_FIELDS}
    return decoding, {k: v for k, v in options.items() if k not in DECODING_FIELDS}


def canonical(value: Any) -> str:
    """A hashable, order-free spelling of JSON options (a cache and batching key)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("textgen-zh")
    except PackageNotFoundError:  # a source tree that was never installed
        from textgen import __version__

        return f"{__version__} (not installed)"


def made_with(job: Job) -> dict[str, Any]:
    """The ``"textgen"`` record of a run (as the command line writes it): textgen's version and
    the settings in force, i.e. the decoding fields that differ from neutral and the task options."""
    neutral = DecodingConfig()
    settings: dict[str, Any] = {}
    for f in fields(job.config):
        value = getattr(job.config, f.name)
        if value != getattr(neutral, f.name):
            settings[f.name] = list(value) if isinstance(value, tuple) else value
    settings.update(job.task.settings)
    return {"version": installed_version(), "settings": settings}


@dataclass
class ServedJob:
    job: Job
    stamp: dict[str, Any]
    key: str  # the batching key: jobs with equal keys decode together

    def run(self, records: list[Any]) -> list[Any]:
        """One decoder call over ``records`` (the batcher's function): ``Task.run``."""
        return self.job.task.run(records, self.job.config)


class Served:
    """The warm models and their jobs (see the module docstring)."""

    def __init__(self, runner: Runner, specs: list[str] | None = None, *, max_batch: int = 16,
                 max_wait: float = 0.010) -> None:
        self.runner = runner
        self.specs = list(dict.fromkeys(specs or []))
        self.max_batch, self.max_wait = max_batch, max_wait
        self.models: list[ServedModel] = []
        self._by_name: dict[str, ServedModel] = {}
        self._jobs: OrderedDict[tuple[str, ...], Any] = OrderedDict()
        self.notes: list[str] = []  # what the start should tell the user (a task whose default job fails)

    # ------------------------------------------------------------------ start
    def load(self, on_load: Callable[[str], None] | None = None) -> None:
        """Resolve and load every model, warm for each task it serves; ``RunError`` (one line) when
        one cannot be. With no specs: the default model of every task."""
        specs = self.specs or list(dict.fromkeys(self.runner.settings.model_for(t) or DEFAULT_MODELS[t] for t in TASKS))
        batchers: dict[str, Batcher] = {}
        for spec in specs:
            try:
                info = resolve(spec)
            except ModelNotFound as exc:
                raise RunError(str(exc)) from None
            tasks = tuple(t for t in TASKS if info.serves(t))
            if not tasks:
                raise RunError(f"model {spec!r} serves none of the tasks ({', '.join(TASKS)})")
            if on_load is not None:
                on_load(f"loading {info.name} ({', '.join(tasks)})")
            path = str(info.path)
            if path not in batchers:  # one thread per loaded model, whatever it is called
                batchers[path] = Batcher(info.name, max_batch=self.max_batch, max_wait=self.max_wait,
                                         initializer=self._thread_setup)
            served = ServedModel(info.name, spec, info, tasks, batchers[path])
            for task in tasks:
                model = self.runner.model(info, TASKS[task].kind)
                if task == "continue":
                    served.adapter = model.adapter
                    served.chat = hasattr(model.adapter, "render") and hasattr(model.adapter, "encode_prompt")
            for alias in dict.fromkeys((info.name, spec, info.dir.name)):
                other = self._by_name.get(alias)
                if other is not None and other is not served and str(other.info.path) != path:
                    if alias == info.dir.name and alias not in (info.name, spec):
                        continue  # only the textgen.json name collides: not an alias of either
                    raise RunError(f"two models are named {alias!r} ({other.spec} and {spec}); serve one of them")
                if alias:
                    self._by_name.setdefault(alias, served)
                    served.aliases.add(alias)
            if info.name not in {m.name for m in self.models}:
                self.models.append(served)
            for task in tasks:  # warm: the task's own caches (title selector, extractor ...)
                try:
                    self._build(served, task, {}, None)
                except RunError as exc:
                    self.notes.append(f"{info.name} {task}: {exc}")

    def _thread_setup(self) -> None:
        """Torch's thread count in each model thread (set per thread under OpenMP)."""
        if self.runner.threads:
            import torch

            torch.set_num_threads(self.runner.threads)

    # ------------------------------------------------------------------ lookups
    def model(self, name: str | None, task: str) -> ServedModel:
        """The served model a request names (None: the task's default here); ``NotServed`` for a
        model this server was not started with, or one that does not serve ``task``."""
        if task not in TASKS:
            raise NotServed(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
        if name is None:
            return self.default(task)
        served = self._by_name.get(name)
        if served is None:
            raise NotServed(f"model {name!r} is not served here; served: {', '.join(m.name for m in self.models)}")
        if task not in served.tasks:
            raise NotServed(f"model {name!r} serves {', '.join(served.tasks)}, not {task!r}")
        return served

    def default(self, task: str) -> ServedModel:
        """The model a request without ``model`` gets: the one a local run would use (the
        user's config, else the task's default) when it is served, else the first that serves
        the task."""
        wanted = self.runner.settings.model_for(task) or DEFAULT_MODELS[task]
        served = self._by_name.get(wanted)
        if served is not None and task in served.tasks:
            return served
        for served in self.models:
            if task in served.tasks:
                return served
        raise NotServed(f"no model served here serves {task!r}; served: {', '.join(m.name for m in self.models)}")

    def chat_model(self, name: str | None) -> ServedModel:
        if name is not None:
            served = self._by_name.get(name)
            if served is None:
                raise NotServed(f"model {name!r} is not served here; served: {', '.join(m.name for m in self.models)}")
            return served
        for served in self.models:
            if served.chat:
                return served
        raise NotServed("no chat model is served here (start the server with --model CHAT_MODEL)")

    # ------------------------------------------------------------------ jobs
    async def job(self, served: ServedModel, task: str, options: Mapping[str, Any],
                  names: Mapping[str, str] | None = None) -> ServedJob:
        """The checked job of a request (``RunError`` for bad options), built in the model's
        thread once per distinct option set."""
        import asyncio

        key = (served.spec, task, canonical(dict(options)), canonical(dict(names or {})))
        pending = self._jobs.get(key)
        if pending is None or pending.cancelled() or (pending.done() and pending.exception() is not None):
            pending = asyncio.ensure_future(served.batcher.call(self._build, served, task, dict(options), names))
            self._jobs[key] = pending
            while len(self._jobs) > _JOBS:
                self._jobs.popitem(last=False)
        else:
            self._jobs.move_to_end(key)
        return await asyncio.shield(pending)

    def _build(self, served: ServedModel, task: str, options: dict[str, Any], names: Mapping[str, str] | None) -> ServedJob:
        decoding, task_options = split_options(options)
        names = dict(names or {})
        job = self.runner.job(
            task, served.spec, options=task_options, decoding=decoding, names=names or None,
            model_how=names.get("model", '"model"'), length_how=names.get("max_new_tokens", '"max_new_tokens"'),
        )
        stamp = made_with(job)
        key = canonical([str(served.info.path), task, stamp["settings"], [job.config.seed]])
        return ServedJob(job, stamp, key)

    def close(self) -> None:
        for batcher in {id(m.batcher): m.batcher for m in self.models}.values():
            batcher.close()
