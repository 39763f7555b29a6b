"""``--engine ray``: a task command's batch on a Ray cluster (``textgen.distributed.ray_batch``).

The run keeps the contract of a local one (docs/cli.md): one output record per input record, in
input order, written through the same ``Sink`` as each comes (whole lines, never a partial one),
the same warnings and error lines on stderr, the same ``"textgen"`` stamp, the same exit status,
and ``--resume`` after a stop (Ctrl-C, SIGTERM, a killed driver). ``cli.tasks`` reads the
records, checks the settings and loads the model here first (every usage error before any work),
then calls ``run_ray`` instead of its local loop.

Ray starts (or is joined) before the stop guard is armed: ``ray.init`` installs a SIGTERM handler
of its own, and the guard's must be the one in force while records are written.
"""

from __future__ import annotations

import importlib.util
import signal
import sys
from collections.abc import Iterable
from contextlib import ExitStack
from typing import Any

from textgen.io import Record
from textgen.output import Output
from textgen.runner import Job, Runner, made_with

from .console import error, fail, say, warn
from .output import OutputError, Sink, Stopped, Tally, progress_bar


def _engine(v: dict[str, Any]) -> str:
    engine = v.get("engine")
    return str(getattr(engine, "value", engine) or "local")


def wants_ray(v: dict[str, Any]) -> bool:
    """Whether the parsed options ask for ``--engine ray``."""
    return _engine(v) == "ray"


def check_engine_usage(v: dict[str, Any]) -> None:
    """Usage checks of the engine flags (exit 2 before any work): Ray must be installed, and a
    Ray run is a batch (no REPL); flags that do nothing are warnings."""
    if not wants_ray(v):
        given = [flag for flag, key, unset in (("--ray-address", "ray_address", None), ("--workers", "workers", 1))
                 if v.get(key, unset) != unset]
        if given:
            warn(f"{' and '.join(given)} {'has' if len(given) == 1 else 'have'} no effect without --engine ray")
        return
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("pyarrow") is None:
        fail('--engine ray needs Ray Data: pip install "textgen-zh[ray]" (or "ray[data]>=2.9")')
    if v.get("text") is None and v.get("input") is None and sys.stdin.isatty():
        fail("--engine ray runs a batch: give -i FILE or DIR, a text, or pipe the records in (the REPL runs locally)")
    if v.get("stream"):
        warn("--stream has no effect with --engine ray: outputs come a batch at a time")


def run_ray(
    name: str,
    v: dict[str, Any],
    records: Iterable[Record],
    runner: Runner,
    job: Job,
    sink: Sink,
    *,
    options: dict[str, Any],
    overrides: dict[str, Any],
    progress: bool,
    total: int | None,
) -> int:
    """Run the records on Ray into ``sink``; returns the exit status (0, 1, 2 when Ray cannot be
    started or joined, 128 + signal number when stopped). ``job`` is the driver's checked job (its
    warnings already said); each worker builds the same one from ``name``, ``v["model"]``,
    ``options``, ``overrides`` and the driver's settings."""
    from textgen.distributed.ray_batch import RayError, ray_session, run_on_ray, runner_options

    records = list(records)  # a piped stream is read whole: Ray schedules batches of a known list
    workers, threads = v.get("workers") or 1, v.get("threads") or 1
    stamp = made_with(job)
    tally = Tally(sink)

    def on_message(message: str) -> None:
        warn(f"ray: {message}")

    with ExitStack() as stack:
        try:
            with sink.guard:
                session = stack.enter_context(
                    ray_session(v.get("ray_address"), cpus_needed=workers * threads, on_message=on_message))
        except Stopped as stop:
            sink.close()
            error(f"stopped by {signal.Signals(stop.signum).name} while starting Ray")
            return 128 + stop.signum
        except RayError as exc:
            sink.close()
            error(str(exc))
            return 2
        if v.get("verbose"):
            where = "a local Ray" if session.started else "the Ray cluster"
            say(f"textgen: ray: {where} at {session.address}, {session.cpus:g} CPUs; "
                f"{workers} worker(s) of {threads} thread(s), batches of {v['batch_size']}")
        try:
            with sink.guard, progress_bar(progress, total) as advance:
                sink.begin()
                todo = []
                for rec in records:
                    if sink.done(rec):  # resumed: already in the output
                        advance(1)
                    else:
                        todo.append(rec)

                def write(rec: Record, data: dict[str, Any]) -> None:
                    out = Output.from_dict(data)
                    out.made_with = stamp
                    tally.record(rec, out)
                    advance(1)

                summary = run_on_ray(
                    name, v.get("model"), options, overrides, todo, on_output=write, workers=workers, threads=threads,
                    batch_size=v["batch_size"], runner=runner_options(runner), on_message=on_message,
                )
        except (Stopped, BrokenPipeError, OutputError) as exc:
            return tally.ended(exc)
        except RayError as exc:
            then = "; rerun with --resume to finish" if sink.resumable else ""
            error(f"{exc} (after {tally.written} records){then}")
            return 1
        finally:
            sink.close()
    if v.get("verbose") and summary.retried_batches:
        say(f"textgen: ray: {summary.retried_batches} batch starts on restarted workers, "
            f"{summary.lost_records} records given up")
    return tally.status(bool(records))
