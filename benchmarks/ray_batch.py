"""``--engine ray`` against a local run: records/s with 1 and 2 workers, Ray's fixed overhead on a
small job, and the driver's ceilings (Ray Data's pass-through rate, the output writer's rate).

Run from the repository root (about three minutes on 2 shared CPU cores; needs ``ray[data]``)::

    python benchmarks/ray_batch.py [--records 200] [--model mini-zh-title]

It writes ``benchmarks/results/ray_batch.json``; docs/scale.md explains the numbers. The job is
the embedded title model with ``--method write``, greedy (``num_beams=1``), over records built
from our own sentences; every run is checked to give the local run's outputs, record for record.
Timings are wall clock on this machine, whatever else it runs (best of ``--repeats``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from textgen.config import Settings  # noqa: E402
from textgen.distributed.ray_batch import ray_session, run_on_ray, runner_options  # noqa: E402
from textgen.io import Record, make_record  # noqa: E402
from textgen.runner import Runner  # noqa: E402

# Our own sentences (not from any data set), combined into news-like records of 2-4 sentences.
SENTENCES = [
    "今天上午，市图书馆新馆正式向读者开放，馆内藏书超过一百万册。",
    "研究人员提出了一种新的中文文本生成方法，在多个数据集上取得了较好的结果。",
    "春天到了，公园里的花都开了，很多市民带着孩子去散步。",
    "这家工厂去年的产量比前年增长了百分之二十。",
    "法院经审理认为，被告的行为构成违约，应当承担赔偿责任。",
    "新的地铁线路明年通车，将方便城市东部居民出行。",
    "受冷空气影响，本周末我市将出现明显降温，请市民注意添衣保暖。",
    "学校食堂推出了新的菜单，学生们可以通过手机提前点餐。",
    "该公司宣布将在南方新建一座研发中心，预计招聘五百名工程师。",
    "志愿者们在社区里为老人测量血压，并讲解日常保健知识。",
    "今年夏天的降雨量明显偏多，部分河流水位超过警戒线。",
    "博物馆新展出了一批出土文物，吸引了大量游客前来参观。",
]


def make_records(n: int) -> list[Record]:
    return [
        make_record(i, "".join(SENTENCES[(i * 7 + j * 5) % len(SENTENCES)] for j in range(2 + i % 3)))
        for i in range(n)
    ]


def local_run(runner: Runner, job: Any, records: list[Record], batch_size: int) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    outs = [out.to_dict() for _, out in runner.run(job, records, batch_size=batch_size)]
    return time.perf_counter() - start, outs


def ray_run(args: argparse.Namespace, runner: Runner, records: list[Record], workers: int) -> dict[str, Any]:
    got: list[dict] = []
    start = time.perf_counter()
    summary = run_on_ray("title", args.model, OPTIONS, DECODING, records, workers=workers, threads=1,
                         batch_size=args.batch_size, runner=runner_options(runner),
                         on_output=lambda rec, out: got.append(out))
    wall = time.perf_counter() - start
    steady = None
    first_batch = min(args.batch_size, len(records))
    if summary.first_output_s is not None and wall - summary.first_output_s > 0.05 and len(records) > first_batch:
        steady = (len(records) - first_batch) / (wall - summary.first_output_s)
    return {"workers": workers, "wall_s": round(wall, 2), "first_output_s": round(summary.first_output_s or 0, 2),
            "records_per_s": round(len(records) / wall, 2),
            "steady_records_per_s": round(steady, 2) if steady else None, "outputs": got}


def passthrough_rate(n_batches: int, batch_size: int, actors: int) -> dict[str, Any]:
    """Ray Data's plumbing alone: the rows ``run_on_ray`` makes (a pickled batch of records per
    row), ``actors`` actors that answer each at once, outputs back on the driver in order: the
    most batches per second the driver and Ray Data's scheduling deliver, whatever the workers."""
    import pickle

    import numpy as np
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    class Echo:
        def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
            outs = [json.dumps([{"id": r.id, "outputs": [{"text": r.text[:12], "score": -1.0}], "model": "m",
                                 "task": "title"} for r in pickle.loads(blob)], ensure_ascii=False)
                    for blob in batch["records"]]
            return {"k": batch["k"], "outputs": np.array(outs, dtype=object)}

    ctx = DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    records = make_records(n_batches * batch_size)
    rows = [{"k": k, "records": pickle.dumps(records[k * batch_size:(k + 1) * batch_size])} for k in range(n_batches)]
    start = time.perf_counter()
    ds = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
        Echo, batch_size=1, batch_format="numpy", compute=ActorPoolStrategy(size=actors), num_cpus=1)
    first = None
    count = 0
    for block in ds.iter_batches(batch_size=None, batch_format="numpy"):
        if first is None:
            first = time.perf_counter()
        count += sum(len(json.loads(o)) for o in block["outputs"])
    end = time.perf_counter()
    assert count == len(records)
    return {"batches": n_batches, "batch_size": batch_size, "actors": actors, "wall_s": round(end - start, 2),
            "batches_per_s_after_first": round((n_batches - 1) / max(end - first, 1e-9), 1),
            "records_per_s_after_first": round((len(records) - batch_size) / max(end - first, 1e-9), 1)}


def writer_rate(n: int) -> dict[str, Any]:
    """The driver's output path alone: ``Output.from_dict`` of a worker's dict, the stamp, and
    ``Sink.write`` (one ``os.write`` of a JSON line per record) to a file."""
    from textgen.cli.output import Sink, StopGuard
    from textgen.output import Output

    data = {"id": 0, "outputs": [{"text": "市图书馆新馆正式向读者开放", "score": -3.2}], "model": "mini-zh-title",
            "task": "title", "warnings": ["output was cut at max_new_tokens=32"]}
    stamp = {"version": "0.1.0", "settings": {"max_new_tokens": 32, "method": "write", "copy": "text"}}
    rec = make_record(0, "x")
    with tempfile.TemporaryDirectory() as tmp:
        sink = Sink("jsonl", StopGuard(), output=Path(tmp) / "out.jsonl")
        sink.prepare(None, reads_stdin=False)
        sink.begin()
        start = time.perf_counter()
        for i in range(n):
            out = Output.from_dict({**data, "id": i})
            out.made_with = stamp
            sink.write(rec, out)
        wall = time.perf_counter() - start
        size = (Path(tmp) / "out.jsonl").stat().st_size
        sink.close()
    return {"records": n, "wall_s": round(wall, 3), "records_per_s": round(n / wall), "bytes_per_record": size // n}


OPTIONS = {"method": "write"}
DECODING = {"num_beams": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--small", type=int, default=4, help="records of the small job (fixed overhead)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--model", default="mini-zh-title")
    parser.add_argument("--repeats", type=int, default=2, help="local runs (best of)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ray_batch.json")
    args = parser.parse_args()

    import torch

    records, small = make_records(args.records), make_records(args.small)
    runner = Runner(Settings(), device="cpu", threads=1)
    start = time.perf_counter()
    job = runner.job("title", args.model, options=OPTIONS, decoding=DECODING)
    load_s = time.perf_counter() - start
    local = [local_run(runner, job, records, args.batch_size) for _ in range(args.repeats)]
    local_s, reference = min(t for t, _ in local), local[0][1]
    small_local_s = min(local_run(runner, job, small, args.batch_size)[0] for _ in range(args.repeats))
    torch.set_num_threads(2)
    local2_s = min(local_run(runner, job, records, args.batch_size)[0] for _ in range(args.repeats))
    torch.set_num_threads(1)
    print(f"local: model load {load_s:.2f}s, {args.records} records {local_s:.2f}s "
          f"({args.records / local_s:.1f}/s; 2 threads {args.records / local2_s:.1f}/s)", flush=True)

    result: dict[str, Any] = {
        "environment": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                        "machine": platform.machine(), "load_average": list(os.getloadavg())},
        "job": {"task": "title", "model": args.model, "options": OPTIONS, "decoding": DECODING,
                "records": args.records, "batch_size": args.batch_size, "threads_per_worker": 1},
        "local": {"model_load_s": round(load_s, 2), "wall_s": round(local_s, 2),
                  "records_per_s": round(args.records / local_s, 2),
                  "records_per_s_2_threads": round(args.records / local2_s, 2)},
    }
    start = time.perf_counter()
    with ray_session(None, cpus_needed=2):
        import ray

        result["ray_start_s"] = round(time.perf_counter() - start, 2)
        result["ray_version"] = ray.__version__
        print(f"ray: started in {result['ray_start_s']}s", flush=True)
        runs = []
        for workers in (1, 2):
            run = ray_run(args, runner, records, workers)
            assert run.pop("outputs") == reference, "a Ray run's outputs differ from the local run's"
            runs.append(run)
            print(f"ray, {workers} worker(s): {run}", flush=True)
        result["ray"] = runs
        small_runs = []
        for _ in range(args.repeats):
            run = ray_run(args, runner, small, 1)
            run.pop("outputs")
            small_runs.append(run)
        best = min(small_runs, key=lambda r: r["wall_s"])
        result["small_job"] = {"records": args.small, "local_s": round(small_local_s, 3), "ray_s": best["wall_s"],
                               "overhead_s": round(best["wall_s"] - small_local_s, 2),
                               "overhead_with_ray_start_s": round(best["wall_s"] - small_local_s + result["ray_start_s"], 2)}
        print(f"small job: {result['small_job']}", flush=True)
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        result["driver_passthrough"] = [passthrough_rate(n, bs, a) for n, bs, a in ((200, 8, 1), (200, 8, 2), (100, 64, 2))]
        print(f"pass-through: {result['driver_passthrough']}", flush=True)
    result["driver_writer"] = writer_rate(20000)
    print(f"writer: {result['driver_writer']}", flush=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
