"""``--engine ray``: the same JSONL jobs on Ray Data, with the contract of a local run.

One local Ray (2 CPUs) serves the whole module: the library runs in this process, the command
line in-process (it reuses this Ray) and in subprocesses that join it with ``--ray-address`` (a
killed driver takes only its own job down). Each Ray Data run starts its worker actors afresh (a
few seconds each: a new process imports torch and loads the model), so the runs are few and
each test checks several things of one run.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from conftest import SENTENCES, jsonl, run, subprocess_env, write_jsonl  # noqa: E402

from textgen.config import Settings  # noqa: E402
from textgen.distributed.ray_batch import RaySummary, run_on_ray, runner_options  # noqa: E402
from textgen.io import Record, make_record  # noqa: E402
from textgen.runner import Runner  # noqa: E402

# The fault hooks below run in Ray's workers, which cannot import this test module: pickle it by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

GREEDY = {"num_beams": 1}
CLI = [sys.executable, "-c", "from textgen.cli.app import main; main()"]


RAY_ENV: dict[str, str] = {}  # what a subprocess needs to join the module's Ray


@pytest.fixture(scope="module")
def ray_address() -> Any:
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    # Ray's token authentication (on by default in recent versions) keeps its token under the
    # user's home, which each test replaces (conftest.user_env): subprocesses are told where it is.
    token = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if token.is_file():
        RAY_ENV["RAY_AUTH_TOKEN_PATH"] = str(token)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


class Faults:
    """Runs in the workers before each batch: notes the records it got (one JSON line each), kills
    its worker (``os._exit``) on a record ``kill-once`` the first time only (a flag file marks it),
    and on a record ``poison`` every time."""

    def __init__(self, folder: Path) -> None:
        self.folder = str(folder)

    def __call__(self, records: list[Record]) -> None:
        with open(os.path.join(self.folder, "seen.jsonl"), "a", encoding="utf-8") as seen:
            for rec in records:
                seen.write(json.dumps({"id": rec.id, "text": rec.text, "error": rec.error, "warnings": rec.warnings,
                                       "fields": rec.fields, "source": rec.source}, ensure_ascii=False) + "\n")
        ids = [rec.id for rec in records]
        flag = os.path.join(self.folder, "killed-once")
        if "kill-once" in ids and not os.path.exists(flag):
            open(flag, "w").close()
            os._exit(1)
        if "poison" in ids:
            os._exit(1)


def _records() -> list[Record]:
    """Ids of every JSON type, an error record, fields, a record that kills its worker once and
    one that kills it every time (in a batch of two)."""
    ids: list[Any] = [1, "a", 2.5, True, "kill-once", 7, "dup#2", 0, "x", "poison", "y", 12]
    recs = [make_record(rid, SENTENCES[i % len(SENTENCES)], warnings=[f"w{i}"] if i == 2 else None,
                        fields={"id": rid, "keywords": ["地铁", i], "meta": {"n": i, "f": 1.5}}, source="in.jsonl")
            for i, rid in enumerate(ids)]
    recs[5] = make_record(7, "   ")  # blank: an error record before any worker
    return recs


@pytest.fixture(scope="module")
def library_run(ray_address: str, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("faults")
    records = _records()
    runner = Runner(Settings(), device="cpu")
    job = runner.job("title", str(tiny_model), options={"method": "write"}, decoding=GREEDY)
    innocent = [rec for rec in records if rec.id != "poison"]
    local = {json.dumps(rec.id): out.to_dict() for rec, out in runner.run(job, innocent, batch_size=2)}
    got: list[tuple[Record, dict[str, Any]]] = []
    start = time.monotonic()
    summary = run_on_ray("title", str(tiny_model), {"method": "write"}, GREEDY, records, workers=2, threads=1,
                         batch_size=2, runner=runner_options(runner), before_batch=Faults(folder), record_tries=1,
                         on_output=lambda rec, out: got.append((rec, out)))
    return {"records": records, "got": got, "local": local, "summary": summary, "folder": folder,
            "seconds": time.monotonic() - start}


def test_outputs_equal_a_local_run_in_order_with_the_same_ids(library_run: dict[str, Any]):
    records, got, local = library_run["records"], library_run["got"], library_run["local"]
    assert [rec for rec, _ in got] == records  # the driver's own records, in input order
    ids = [out["id"] for _, out in got]
    assert ids == [rec.id for rec in records]
    assert [type(i) for i in ids] == [type(rec.id) for rec in records]  # 1, 2.5, True and "a" keep their types
    for rec, out in got:
        if rec.id != "poison":
            assert out == local[json.dumps(rec.id)], rec.id  # greedy: record for record, warnings included
    blank = next(out for rec, out in got if rec.id == 7)
    assert blank["error"] == "blank text (only whitespace)" and blank["outputs"] == []


def test_records_reach_the_workers_whole(library_run: dict[str, Any]):
    seen = [json.loads(line) for line in (library_run["folder"] / "seen.jsonl").read_text(encoding="utf-8").splitlines()]
    by_id = {json.dumps(s["id"]): s for s in seen}
    for rec in library_run["records"]:
        s = by_id[json.dumps(rec.id)]
        assert (s["text"], s["error"], s["warnings"], s["fields"], s["source"]) == (
            rec.text, rec.error, rec.warnings, rec.fields, rec.source)
        assert type(s["id"]) is type(rec.id)


def test_a_dead_worker_is_replaced_and_its_batch_retried(library_run: dict[str, Any]):
    assert (library_run["folder"] / "killed-once").exists()
    summary: RaySummary = library_run["summary"]
    assert summary.outputs == len(library_run["records"]) and summary.retried_batches >= 1
    out = next(out for rec, out in library_run["got"] if rec.id == "kill-once")
    assert "error" not in out and out["outputs"]


def test_a_record_that_always_kills_its_worker_is_an_error_record(library_run: dict[str, Any]):
    got = dict((json.dumps(rec.id), out) for rec, out in library_run["got"])
    poison = got['"poison"']
    assert "died" in poison["error"] and poison["outputs"] == [] and poison["task"] == "title"
    assert "error" not in got['"x"']  # its batch mate, run alone, succeeded
    assert library_run["summary"].lost_records == 1


# ---------------------------------------------------------------------- the command line
def _input(path: Path, n: int, *, bad: bool = True) -> Path:
    rows: list[dict[str, Any]] = [{"id": i if i % 3 else f"r{i}", "text": f"第{i}篇：" + SENTENCES[i % len(SENTENCES)]}
                                  for i in range(n)]
    if bad:
        rows[2] = {"id": 2.5, "text": "  "}
        rows[4] = {"id": True, "text": None}
    return write_jsonl(path, rows)


def test_cli_engine_ray_writes_what_a_local_run_writes(ray_address: str, tiny_model: Path, tmp_path: Path):
    source = _input(tmp_path / "in.jsonl", 11)
    common = ["title", "-i", source, "-f", "jsonl", "--method", "write", "-m", tiny_model, "--beam", 1, "--batch-size", 3]
    local = run(*common, "-o", tmp_path / "local.jsonl")
    remote = run(*common, "-o", tmp_path / "ray.jsonl", "--engine", "ray", "--workers", 2, "--ray-address", ray_address)
    assert local.exit_code == remote.exit_code == 1, remote.output  # two error records
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    assert remote.stderr == local.stderr  # the same warnings, errors and summary line
    assert "Traceback" not in remote.output
    assert [r["id"] for r in jsonl((tmp_path / "ray.jsonl").read_text(encoding="utf-8"))][:5] == ["r0", 1, 2.5, "r3", True]


def test_cli_engine_ray_usage(tmp_path: Path, tiny_model: Path):
    source = _input(tmp_path / "in.jsonl", 3, bad=False)
    result = run("title", "-i", source, "--workers", 2, "-m", tiny_model, "--method", "write", "--beam", 1)
    assert result.exit_code == 0 and "--workers has no effect without --engine ray" in result.stderr


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _stop_when(proc: subprocess.Popen, out: Path, lines: int, signum: int) -> bytes:
    deadline = time.monotonic() + 90
    while _lines(out) < lines and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be stopped: " + proc.communicate()[1].decode()
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode in (128 + signum, -signum), stderr.decode()
    return stderr


def test_resume_after_sigterm_and_sigkill_of_the_driver(ray_address: str, tiny_model: Path, tmp_path: Path):
    n = 60
    source = _input(tmp_path / "in.jsonl", n, bad=False)
    out = tmp_path / "out.jsonl"
    slow = ["--beam", 1, "--min-new-tokens", 40, "--max-new-tokens", 40, "--batch-size", 1]
    cmd = [*CLI, "title", "-i", str(source), "-o", str(out), "-f", "jsonl", "-m", str(tiny_model), "--method", "write",
           "-q", "--engine", "ray", "--ray-address", ray_address, *map(str, slow)]
    env = subprocess_env(RAY_ENV)
    stderr = _stop_when(subprocess.Popen(cmd, stderr=subprocess.PIPE, env=env), out, 3, signal.SIGTERM)
    assert b"--resume" in stderr and b"Traceback" not in stderr, stderr.decode()
    first = out.read_bytes()
    assert first.endswith(b"\n") and 3 <= first.count(b"\n") < n

    _stop_when(subprocess.Popen([*cmd, "--resume"], stderr=subprocess.PIPE, env=env), out, first.count(b"\n") + 3,
               signal.SIGKILL)
    assert out.read_bytes().startswith(first)

    done = subprocess.run([*cmd, "--resume"], capture_output=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr.decode()
    ids = [r["id"] for r in jsonl(out.read_text(encoding="utf-8"))]
    assert len(ids) == n and sorted(map(json.dumps, ids)) == sorted(
        json.dumps(i if i % 3 else f"r{i}") for i in range(n))

    local = tmp_path / "local.jsonl"
    result = run("title", "-i", source, "-o", local, "-f", "jsonl", "-m", tiny_model, "--method", "write", *slow)
    assert result.exit_code == 0, result.output
    by_id = {json.dumps(r["id"]): r for r in jsonl(local.read_text(encoding="utf-8"))}
    assert all(r == by_id[json.dumps(r["id"])] for r in jsonl(out.read_text(encoding="utf-8")))


def test_an_address_nothing_answers_at_fails_at_once():
    """Ray would retry it for many minutes; the check before ``ray.init`` says so in one line."""
    from textgen.distributed.ray_batch import RayError, _check_reachable

    start = time.monotonic()
    with pytest.raises(RayError, match="nothing answers there"):
        _check_reachable("127.0.0.1:1")
    assert time.monotonic() - start < 10
    _check_reachable("auto")  # Ray finds these itself
    _check_reachable("local")
