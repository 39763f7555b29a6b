"""``textgen serve``: what a client pays, what batching buys, and a bounded load run.

Run from the repository root (one run; loopback only, every loop bounded)::

    python benchmarks/serve.py --out benchmarks/results/serve.json

1. **The command line as a client**: the whole-process time of ``textgen title --server URL TEXT``
   against a local ``textgen title TEXT`` (which loads torch and the model) and ``textgen
   --version`` (what any ``textgen`` command costs to start), the median of ``--cli-runs``.
2. **Throughput**: 1, 4, 16 and 64 concurrent clients (threads of this process, each on its own
   kept-alive connection) send one article per request to a server of the embedded title model;
   titles/s and p50/p99 latency, against sequential local calls (``task.run`` on one record at a
   time in this process: what a loop over ``textgen.generate`` costs) and local batches of 16.
3. **Load**: 64 clients x 20 requests (bounded by count and by ``--load-seconds``): failed
   requests, and the server's resident memory before and after.

The title task runs with ``--method write`` (the model writes the title: beam search under its
textgen.json's copy constraint) unless ``--method clause`` is given. Server and local runs use one
torch thread each (``--threads``); the clients share the machine with the server, so on a small
machine the numbers are a floor. The machine's load average is recorded before and after.
"""

from __future__ import annotations

import argparse
import http.client
import inspect
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL = "mini-zh-title"


def articles() -> list[str]:
    """Distinct news paragraphs from samples/ (our own texts)."""
    texts = [json.loads(line)["text"] for line in (ROOT / "samples" / "batch.jsonl").read_text(encoding="utf-8").splitlines()
             if line.strip()]
    for name in ("news.txt", "abstract.txt", "passage.txt", "qa_passage.txt"):
        texts += [p.strip() for p in (ROOT / "samples" / name).read_text(encoding="utf-8").split("\n") if len(p.strip()) > 30]
    return list(dict.fromkeys(texts))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[k]


# ---------------------------------------------------------------------- the server
class Server:
    def __init__(self, method: str, threads: int, max_batch: int, max_wait_ms: float) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TEXTGEN_SERVE_TOKEN": ""}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from textgen.cli.app import main; main()", "serve", "-m", MODEL, "--port", "0",
             "--threads", str(threads), "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms)],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)
        self.url = ""
        while line := self.proc.stderr.readline():
            if " on http://" in line:
                self.url = line.split(" on ", 1)[1].split()[0].rstrip(";")
                break
        if not self.url:
            raise SystemExit("textgen serve did not start")
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()
        self.port = int(self.url.rsplit(":", 1)[1])
        self.options = {"method": method}

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(120)


class Connection:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def title(self, text: str, options: dict[str, Any]) -> tuple[bool, float]:
        body = json.dumps({"records": [{"text": text}], "options": options}, ensure_ascii=False).encode()
        start = time.perf_counter()
        try:
            self.conn.request("POST", "/v1/tasks/title", body=body, headers={"Content-Type": "application/json"})
            resp = self.conn.getresponse()
            data = json.loads(resp.read())
            ok = resp.status == 200 and "error" not in data["records"][0]
        except (OSError, http.client.HTTPException, ValueError):
            self.conn.close()
            ok = False
        return ok, time.perf_counter() - start


def concurrent(server: Server, texts: list[str], clients: int, per_client: int, deadline: float) -> dict[str, Any]:
    """``clients`` threads, each sending ``per_client`` requests (stopping at ``deadline``)."""
    latencies: list[float] = []
    failed = 0
    lock = threading.Lock()

    def client(i: int) -> None:
        nonlocal failed
        conn = Connection(server.port)
        for j in range(per_client):
            if time.monotonic() > deadline:
                return
            ok, seconds = conn.title(texts[(i * per_client + j) % len(texts)], server.options)
            with lock:
                latencies.append(seconds)
                failed += not ok

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    wall = time.perf_counter() - start
    return {"clients": clients, "requests": len(latencies), "failed": failed, "seconds": round(wall, 3),
            "titles_per_s": round((len(latencies) - failed) / wall, 2),
            "p50_ms": round(1000 * percentile(latencies, 0.5), 1), "p99_ms": round(1000 * percentile(latencies, 0.99), 1)}


def local_baseline(texts: list[str], method: str, threads: int, n: int) -> dict[str, Any]:
    """Sequential local calls (one record per ``task.run``) and batches of 16, in this process."""
    import torch

    from textgen.config import Settings
    from textgen.io import make_record
    from textgen.runner import Runner

    torch.set_num_threads(threads)
    runner = Runner(Settings(), device="cpu", threads=threads)
    job = runner.job("title", MODEL, options={"method": method})
    job.task.run([make_record(0, texts[0])], job.config)  # warm-up
    latencies = []
    start = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        job.task.run([make_record(i, texts[i % len(texts)])], job.config)
        latencies.append(time.perf_counter() - t)
    wall = time.perf_counter() - start
    records = [make_record(i, texts[i % len(texts)]) for i in range(n)]
    t = time.perf_counter()
    for k in range(0, n, 16):
        job.task.run(records[k:k + 16], job.config)
    batched = time.perf_counter() - t
    return {"sequential": {"titles": n, "seconds": round(wall, 3), "titles_per_s": round(n / wall, 2),
                           "p50_ms": round(1000 * percentile(latencies, 0.5), 1),
                           "p99_ms": round(1000 * percentile(latencies, 0.99), 1)},
            "batches_of_16": {"titles": n, "seconds": round(batched, 3), "titles_per_s": round(n / batched, 2)},
            "settings": {**{k: v for k, v in vars(job.config).items() if k in ("num_beams", "max_new_tokens",
                                                                                  "no_repeat_ngram_size")},
                         **job.task.settings}}


# ---------------------------------------------------------------------- the command line
def _wired() -> bool:
    from textgen.cli.tasks import task_command

    return "server" in inspect.signature(task_command("title")).parameters


def client_command(url: str, text: str, method: str) -> list[str]:
    """``textgen title --server URL TEXT``: the real command once the task commands have the flag,
    until then the command's own steps with cli/client.py in place of the runner (tests/serve_client.py)."""
    if _wired():
        return [sys.executable, "-c", "from textgen.cli.app import main; main()", "title", "--server", url,
                "--method", method, text]
    return [sys.executable, str(ROOT / "tests" / "serve_client.py"), url, "--method", method, text]


def timed(cmd: list[str], runs: int, env: dict[str, str]) -> dict[str, Any]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"{cmd[-1][:40]}... failed: {proc.stderr[-500:]}")
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3), "runs": runs,
            "output": proc.stdout.strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="write", choices=("write", "clause"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--cli-runs", type=int, default=5)
    parser.add_argument("--load-clients", type=int, default=64)
    parser.add_argument("--load-requests", type=int, default=20, help="per client")
    parser.add_argument("--load-seconds", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve.json")
    args = parser.parse_args()

    texts = articles()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TEXTGEN_SERVE_TOKEN": ""}
    result: dict[str, Any] = {"model": MODEL, "method": args.method, "threads": args.threads,
                              "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "articles": len(texts),
                              "cpu_cores": os.cpu_count(), "load_average_before": load_average(),
                              "date": time.strftime("%Y-%m-%d %H:%M")}
    server = Server(args.method, args.threads, args.max_batch, args.max_wait_ms)
    try:
        rss_start = rss_kib(server.proc.pid)
        text = texts[0]
        result["cli"] = {
            "client_wired": _wired(),
            "textgen --version": timed([sys.executable, "-c", "from textgen.cli.app import main; main()", "--version"],
                                       args.cli_runs, env),
            "textgen title --server URL": timed(client_command(server.url, text, args.method), args.cli_runs, env),
            "textgen title (local)": timed([sys.executable, "-c", "from textgen.cli.app import main; main()", "title",
                                            "--method", args.method, "--threads", str(args.threads), text], args.cli_runs, env),
        }
        print(json.dumps(result["cli"], ensure_ascii=False, indent=1), flush=True)
        Connection(server.port).title(text, server.options)  # warm-up
        levels = []
        for clients in (1, 4, 16, 64):
            per_client = max(1, {1: 24, 4: 12, 16: 6, 64: 3}[clients])
            levels.append(concurrent(server, texts, clients, per_client, time.monotonic() + 120))
            print(levels[-1], flush=True)
        result["throughput"] = levels
        result["local"] = local_baseline(texts, args.method, args.threads, 24)
        print(result["local"], flush=True)
        rss_before = rss_kib(server.proc.pid)
        load = concurrent(server, texts, args.load_clients, args.load_requests, time.monotonic() + args.load_seconds)
        load["planned"] = args.load_clients * args.load_requests
        load["rss_kib_at_start"], load["rss_kib_before"], load["rss_kib_after"] = rss_start, rss_before, rss_kib(server.proc.pid)
        result["load"] = load
        print(load, flush=True)
    finally:
        result["server_exit_status"] = server.stop()
    result["load_average_after"] = load_average()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
