"""A batch of records on a Ray cluster: the same job as a local run, one model per worker.

    from textgen.distributed.ray_batch import run_on_ray

    run_on_ray("title", None, {"method": "write"}, {"num_beams": 1}, records,
               workers=4, threads=2, batch_size=8, address="auto",
               on_output=lambda rec, out: print(rec.id, out["outputs"][0]["text"]))

How it runs (Ray Data, streaming execution):

* The records are cut into batches of ``batch_size`` in input order, as ``Runner.run`` cuts them;
  each batch is one row (its records pickled, so every field survives: an id of any JSON type,
  text, fields, warnings, error, source) and one block, so a batch is also the unit Ray schedules
  and retries.
* ``map_batches`` runs them on a fixed pool of ``workers`` actors (``ActorPoolStrategy``), each
  asking for ``threads`` CPUs. An actor builds its ``Runner`` and ``Job`` once
  (``runner.job(task, model, options=..., decoding=...)``: the model loads once per actor) and
  answers each batch with ``job.task.run(records, job.config)`` as ``Output.to_dict()`` records.
* ``DataContext.execution_options.preserve_order``: outputs come back in input order as they are
  made; ``on_output(record, output_dict)`` gets each (the driver's own ``Record``) in input order.
  The caller writes them as they come (the command line through its ``Sink``).

Faults. An actor that dies (a crash, the OOM killer, a lost node) is restarted by Ray
(``max_restarts=-1``) and the batches it held are retried on it (``max_task_retries=-1``); the
model loads again in the new process. A batch that kills its worker every time must not retry
forever, nor take the job down: a small tracker actor counts the starts of each batch on
restarted workers. A batch started a second time there runs one record at a time, each record's
output kept by the tracker, so the records before the culprit are not redone; a record on which
the worker died ``RECORD_TRIES`` times alone becomes an error record (the job goes on). A Python
exception never kills a worker: the task turns it into an error record.

Ray is imported lazily (``pip install "textgen-zh[ray]"``); nothing here imports the command line.
``ray_session`` starts a local Ray (the default; ``RAY_ADDRESS`` when set) or joins a cluster
(``"auto"``, ``"HOST:PORT"``, ``"ray://HOST:10001"``). docs/scale.md has the measurements and the
scaling model.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textgen.io import Record
    from textgen.runner import Runner

# A batch started this many times on restarted workers runs one record at a time.
BATCH_TRIES = 2
# A record on which the worker died this many times, run alone, becomes an error record.
RECORD_TRIES = 2

OnOutput = Callable[["Record", dict[str, Any]], None]


class RayError(Exception):
    """Ray is missing, cannot be reached, or the job failed on it (one line for the user)."""


@dataclass
class RaySummary:
    """What a Ray run did: its outputs, and the faults it survived."""

    outputs: int = 0
    batches: int = 0
    workers: int = 0
    threads: int = 1
    cluster_cpus: float = 0.0
    retried_batches: int = 0  # batch starts on a restarted worker (a worker had died)
    lost_records: int = 0  # records that became error records because their worker kept dying
    seconds: float = 0.0  # from the call to the last output
    first_output_s: float | None = None  # from the call to the first output


@dataclass
class RaySession:
    """A connection to Ray for the length of a ``with ray_session(...)`` block."""

    address: str  # the GCS address (what ``--ray-address`` takes to join the same cluster)
    started: bool  # this process started the Ray it uses (a local Ray, shut down at the end)
    cpus: float  # the cluster's CPUs


def ray_available() -> bool:
    """Whether Ray Data can be imported (the ``ray`` extra is installed)."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise RayError('--engine ray needs Ray Data: pip install "textgen-zh[ray]" (or "ray[data]>=2.9")') from None
    return ray


def runner_options(runner: Runner) -> dict[str, Any]:
    """What a worker's ``Runner`` needs to make the same job as ``runner``: its settings (the
    user's config file, read once here, not on every node), device choice, dtype, pickle
    permission and the chat prompts in force (a ``--prompt-file`` read here)."""
    return {
        "settings": runner.settings,
        "device": runner.device_choice,
        "dtype": runner.dtype,
        "allow_pickle": runner.allow_pickle,
        "prompts": runner.prompts(),
    }


# ---------------------------------------------------------------------- connecting
@contextmanager
def ray_session(
    address: str | None = None, *, cpus_needed: int = 1, on_message: Callable[[str], None] | None = None
) -> Iterator[RaySession]:
    """Ray for the block: the one this process already has, else a new local Ray (``address``
    None: ``RAY_ADDRESS`` when set, else a local Ray with this machine's CPUs, at least
    ``cpus_needed``), else the cluster at ``address`` (``"auto"``, ``"HOST:PORT"``, ``"ray://..."``).
    A Ray started here is shut down at the end. Ray's messages to the driver (a worker died ...)
    go to ``on_message`` (default: dropped) instead of standard output, which may hold the records;
    Ray's SIGTERM handler is not kept (the caller's stays in force; a local Ray's processes die
    with the driver anyway)."""
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or "local"
        kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}
        if address == "local":
            kwargs["num_cpus"] = max(os.cpu_count() or 1, cpus_needed)
        _check_reachable(address)
        handlers = _signal_handlers()
        try:
            with _quiet_backend():
                ray.init(address=address, **kwargs)
        except Exception as exc:  # noqa: BLE001 -- a wrong address, a missing token ...: one line
            _shutdown(ray)
            raise RayError(f"cannot {'start Ray' if address == 'local' else f'join the Ray cluster at {address}'}: "
                           f"{_first_line(exc)}") from None
        except BaseException:
            _shutdown(ray)
            raise
        finally:
            _restore(handlers)
        started = True
    restore = _route_messages(on_message)
    try:
        yield RaySession(ray.get_runtime_context().gcs_address, started, float(ray.cluster_resources().get("CPU", 0)))
    finally:
        restore()
        if started:
            _shutdown(ray)


def _check_reachable(address: str) -> None:
    """A ``HOST:PORT`` (or ``ray://HOST:PORT``) that nothing answers at fails at once: Ray itself
    retries such an address for many minutes (14 here) before giving up."""
    if address in ("local", "auto"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # Ray's own message says what is wrong with it
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=10).close()
    except OSError as exc:
        raise RayError(f"cannot join the Ray cluster at {address}: nothing answers there "
                       f"({exc.strerror or exc})") from None


@contextmanager
def _quiet_backend() -> Iterator[None]:
    """Ray's C++ core logs on the driver's stderr (an error-level line for every actor pool Ray
    Data makes, about its own constructor arguments): unless ``RAY_BACKEND_LOG_LEVEL`` says
    otherwise, this driver logs only fatal errors, and the line saying so is not shown (file
    descriptor 2 points to /dev/null while Ray starts; Ray's errors are exceptions)."""
    if "RAY_BACKEND_LOG_LEVEL" in os.environ:
        yield
        return
    os.environ["RAY_BACKEND_LOG_LEVEL"] = "fatal"
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
        del os.environ["RAY_BACKEND_LOG_LEVEL"]


def _shutdown(ray: Any) -> None:
    handlers = _signal_handlers()
    try:
        ray.shutdown()
    finally:
        _restore(handlers)


def _signal_handlers() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore(handlers: dict[int, Any]) -> None:
    for sig, handler in handlers.items():
        if handler is not None:
            signal.signal(sig, handler)


def _route_messages(on_message: Callable[[str], None] | None) -> Callable[[], None]:
    """Send the messages Ray prints on the driver (its error listener writes them to standard
    output) to ``on_message``, shortened to one line; returns the undo."""
    try:
        from ray._private import worker as ray_worker
    except ImportError:  # pragma: no cover -- another Ray layout: leave it alone
        return lambda: None
    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None:  # pragma: no cover
        return lambda: None

    def printer(data: dict[str, Any], ignore_prefix: bool) -> None:
        if data.get("pid") != "raylet":
            original({**data, "is_err": True}, ignore_prefix)  # never on standard output
            return
        for line in data.get("lines", ()):
            message = _ray_message(str(line))
            if message and on_message is not None:
                on_message(message)

    ray_worker.print_to_stdstream = printer

    def restore() -> None:
        ray_worker.print_to_stdstream = original

    return restore


def _ray_message(line: str) -> str | None:
    """One short line for a message of Ray's; None for its retry chatter."""
    if "retries remaining" in line or "will be retried" in line:
        return None
    if "worker died" in line.lower() or "was killed" in line:
        return "a Ray worker died (a crash, out of memory, or killed); it is restarted and its batch retried"
    first = line.split(". ")[0].strip()
    return first[:200] + ("…" if len(first) > 200 else "")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ---------------------------------------------------------------------- the job
def run_on_ray(
    task: str,
    model: str | None,
    options: Mapping[str, Any] | None,
    decoding: Mapping[str, Any] | None,
    records: Iterable[Record],
    *,
    on_output: OnOutput,
    workers: int = 1,
    threads: int = 1,
    batch_size: int = 8,
    address: str | None = None,
    runner: Mapping[str, Any] | None = None,
    gpus_per_worker: float = 0,
    before_batch: Callable[[list[Record]], None] | None = None,
    on_message: Callable[[str], None] | None = None,
    record_tries: int = RECORD_TRIES,
) -> RaySummary:
    """Run ``task`` over ``records`` on Ray (see the module docstring) and hand each output to
    ``on_output(record, output_dict)`` in input order, as it comes. ``model``, ``options`` and
    ``decoding`` are ``Runner.job``'s; ``runner``: ``Runner`` arguments for the workers
    (``runner_options(runner)`` makes the workers' job the caller's; default: the worker's own
    user settings). ``threads``: CPUs (torch threads) of each of the ``workers`` actors.
    ``before_batch(records)`` runs in the worker before each batch (tests inject faults with
    it). ``record_tries``: how many times a record run alone may kill its worker before it becomes
    an error record. Raises ``RayError`` when Ray cannot run the job (the outputs handed so far stand);
    whatever ``on_output`` raises (a full disk, a stop signal) propagates, and the job stops."""
    records = list(records)
    start = time.monotonic()
    summary = RaySummary(threads=threads)
    if not records:
        return summary
    if workers < 1 or threads < 1 or batch_size < 1:
        raise ValueError("workers, threads and batch_size must be at least 1")
    ray = _import_ray()
    with ray_session(address, cpus_needed=workers * threads, on_message=on_message) as session:
        summary.cluster_cpus = session.cpus
        summary.workers = _fit_workers(workers, threads, session.cpus, on_message)
        batches = [records[i : i + batch_size] for i in range(0, len(records), batch_size)]
        summary.batches = len(batches)
        spec = {
            "task": task, "model": model, "options": dict(options or {}), "decoding": dict(decoding or {}),
            "runner": dict(runner or {}), "threads": threads, "cwd": os.getcwd(), "before_batch": before_batch,
            "record_tries": record_tries,
        }
        tracker = ray.remote(num_cpus=0)(_Tracker).remote()
        try:
            _stream(ray, batches, spec, tracker, summary, on_output, gpus_per_worker, start)
        finally:
            try:
                summary.retried_batches, summary.lost_records = ray.get(tracker.stats.remote(), timeout=10)
            except Exception:  # noqa: BLE001 -- statistics only
                pass
            ray.kill(tracker)
    summary.seconds = time.monotonic() - start
    return summary


def _fit_workers(workers: int, threads: int, cpus: float, on_message: Callable[[str], None] | None) -> int:
    """``workers``, or as many as the cluster's CPUs hold now (an actor that can never be placed
    would wait forever)."""
    if cpus < threads:
        raise RayError(f"the Ray cluster has {cpus:g} CPUs; a worker with --threads {threads} cannot be placed")
    fit = int(cpus // threads)
    if workers > fit:
        if on_message is not None:
            on_message(f"the Ray cluster has {cpus:g} CPUs: running {fit} workers of {threads} threads, not {workers}")
        return fit
    return workers


def _stream(
    ray: Any, batches: list[list[Record]], spec: dict[str, Any], tracker: Any, summary: RaySummary,
    on_output: OnOutput, gpus: float, start: float,
) -> None:
    from ray.data import ActorPoolStrategy, DataContext

    ctx = DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars, ctx.print_on_execution_start)
    data_logger = logging.getLogger("ray.data")
    level = data_logger.level
    ctx.execution_options.preserve_order = True  # outputs in input order
    ctx.enable_progress_bars = False  # the caller draws its own
    ctx.print_on_execution_start = False
    data_logger.setLevel(logging.ERROR)
    rows = [{"k": k, "records": pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)} for k, batch in enumerate(batches)]
    # Ray Data's actors already restart without limit (max_restarts=-1) and retry the batches they
    # held (max_task_retries=-1): the tracker bounds a batch that kills its worker every time.
    remote_args: dict[str, Any] = {}
    if os.environ.get("OMP_WAIT_POLICY"):  # a busy-waiting OpenMP is many times slower on a shared node
        remote_args["runtime_env"] = {"env_vars": {"OMP_WAIT_POLICY": os.environ["OMP_WAIT_POLICY"]}}
    iterator = None
    try:
        ds = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            _Worker,
            batch_size=1,
            batch_format="numpy",
            compute=ActorPoolStrategy(size=summary.workers),
            num_cpus=spec["threads"],
            num_gpus=gpus or None,
            fn_constructor_kwargs={"spec": spec, "tracker": tracker},
            **remote_args,
        )
        iterator = iter(ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1))
        pending: dict[int, list[dict[str, Any]]] = {}
        following = 0
        while following < len(batches):
            try:
                block = next(iterator)
            except StopIteration:
                break
            except Exception as exc:  # noqa: BLE001 -- Ray's failures, in one line
                raise RayError(f"the Ray job failed: {_first_line(exc)}") from exc
            for k, outs in zip(block["k"], block["outputs"]):
                pending[int(k)] = json.loads(outs)
            while following in pending:  # in input order, whatever order blocks came in
                outs = pending.pop(following)
                batch = batches[following]
                if len(outs) != len(batch):
                    raise RayError(f"a Ray worker returned {len(outs)} outputs for a batch of {len(batch)} records")
                for rec, out in zip(batch, outs):
                    if summary.first_output_s is None:
                        summary.first_output_s = time.monotonic() - start
                    on_output(rec, out)
                    summary.outputs += 1
                following += 1
        if following < len(batches):
            raise RayError(f"the Ray job ended without the outputs of {len(batches) - following} batches")
    finally:
        if iterator is not None and hasattr(iterator, "close"):
            try:
                iterator.close()  # stops the execution (a stop, a failed write)
            except Exception:  # noqa: BLE001
                pass
        ctx.execution_options.preserve_order, ctx.enable_progress_bars, ctx.print_on_execution_start = saved
        data_logger.setLevel(level)


# ---------------------------------------------------------------------- in the workers
class _Tracker:
    """Counts, across worker restarts, the starts of each batch and of each record run alone
    (a worker holds nothing that survives its death), and keeps the outputs of records run
    alone. Only restarted workers call it: a first attempt costs nothing."""

    def __init__(self) -> None:
        self.batch_starts: dict[int, int] = {}
        self.record_starts: dict[tuple[int, int], int] = {}
        self.outputs: dict[tuple[int, int], dict[str, Any]] = {}
        self.lost = 0

    def begin_batch(self, k: int) -> int:
        self.batch_starts[k] = self.batch_starts.get(k, 0) + 1
        return self.batch_starts[k]

    def begin_record(self, key: tuple[int, int]) -> tuple[int, dict[str, Any] | None]:
        if key in self.outputs:
            return 0, self.outputs[key]
        self.record_starts[key] = self.record_starts.get(key, 0) + 1
        return self.record_starts[key], None

    def finish_record(self, key: tuple[int, int], output: dict[str, Any], lost: bool) -> None:
        if key not in self.outputs:
            self.outputs[key] = output
            self.lost += lost

    def stats(self) -> tuple[int, int]:
        return sum(self.batch_starts.values()), self.lost


class _Worker:
    """One Ray Data actor: a ``Runner`` and its ``Job``, built once, answering batches."""

    def __init__(self, spec: dict[str, Any], tracker: Any) -> None:
        import ray

        cwd = spec.get("cwd")
        if cwd and os.path.isdir(cwd):  # relative model paths and files mean what they meant to the driver
            os.chdir(cwd)
        from textgen.runner import Runner

        runner = Runner(**spec["runner"], threads=spec["threads"])
        self.job = runner.job(spec["task"], spec["model"], options=spec["options"], decoding=spec["decoding"])
        self.before_batch = spec.get("before_batch")
        self.record_tries = int(spec.get("record_tries", RECORD_TRIES))
        self.tracker = tracker
        self.restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        keys = [int(k) for k in batch["k"]]
        outputs = [json.dumps(self._answer(k, pickle.loads(blob)), ensure_ascii=False)
                   for k, blob in zip(keys, batch["records"])]
        return {"k": np.array(keys, dtype=np.int64), "outputs": np.array(outputs, dtype=object)}

    def _answer(self, k: int, records: list[Record]) -> list[dict[str, Any]]:
        if not self.restarted:  # no worker has died here: nothing to count
            return self._run(records)
        import ray

        starts = ray.get(self.tracker.begin_batch.remote(k))
        if starts < BATCH_TRIES and len(records) > 1:
            return self._run(records)
        return [self._alone(k, j, rec, starts) for j, rec in enumerate(records)]

    def _alone(self, k: int, j: int, rec: Record, batch_starts: int) -> dict[str, Any]:
        """One record of a batch that killed its worker: its output, kept by the tracker; an
        error record once the worker died on it ``record_tries`` times."""
        import ray

        starts, kept = ray.get(self.tracker.begin_record.remote((k, j)))
        if kept is not None:
            return kept
        lost = starts > self.record_tries
        if lost:
            out = self.job.task.error(rec, (
                f"the Ray worker running this record died {starts - 1} times (a crash, out of memory, or "
                "killed); the record was given up"
            )).to_dict()
        else:
            out = self._run([rec])[0]
        ray.get(self.tracker.finish_record.remote((k, j), out, lost))
        return out

    def _run(self, records: list[Record]) -> list[dict[str, Any]]:
        if self.before_batch is not None:
            self.before_batch(records)
        try:
            outputs = self.job.task.run(records, self.job.config)
        except Exception as exc:  # noqa: BLE001 -- the task isolates errors; anything left is one per record
            outputs = [self.job.task.error(rec, f"{type(exc).__name__}: {exc}") for rec in records]
        return [out.to_dict() for out in outputs]


__all__ = ["BATCH_TRIES", "RECORD_TRIES", "RayError", "RaySession", "RaySummary", "ray_available", "ray_session",
           "run_on_ray", "runner_options"]
