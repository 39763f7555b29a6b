"""``textgen serve``: warm models behind an HTTP API (docs/serve.md; the code is ``textgen.serve``).

Safe by default: it listens on 127.0.0.1, and refuses (exit 2) to listen on any other address
without ``--token``; with a token every request must carry ``Authorization: Bearer TOKEN``. A
request can use only the models named here, never a path or a download. SIGTERM (or Ctrl-C) stops
accepting, finishes the requests in flight and exits 0.

Nothing here imports FastAPI, uvicorn or torch until the command runs, so ``textgen --help`` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .console import fail, note, say, warn
from .options import Device

DEFAULT_PORT = 8741


def serve_command(
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", show_default=False,
        help="A model to serve, loaded at start (repeatable; embedded name, model directory, HF hub id in the "
        "local cache). It serves the tasks it serves; requests name it by its name. Default: every task's "
        "default model.")] = None,
    host: Annotated[str, typer.Option(
        "--host", help="Address to listen on. Any other than a loopback address needs --token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on; 0 picks a free one.")] = DEFAULT_PORT,
    token: Annotated[str | None, typer.Option(
        "--token", envvar="TEXTGEN_SERVE_TOKEN", show_default=False,
        help="Require 'Authorization: Bearer TOKEN' on every request (default: $TEXTGEN_SERVE_TOKEN).")] = None,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="Records decoded together, at most.")] = 16,
    max_wait_ms: Annotated[float, typer.Option(
        "--max-wait-ms", min=0, help="How long a record waits for others to batch with (milliseconds).")] = 10.0,
    max_body_bytes: Annotated[int, typer.Option(
        "--max-body-bytes", min=1024, help="The largest request body; larger ones get 413.")] = 4 * 1024 * 1024,
    timeout: Annotated[float, typer.Option(
        "--timeout", min=0.001, help="Seconds a request may take, waiting included; later ones get 504.")] = 120.0,
    threads: Annotated[int | None, typer.Option("--threads", min=1, show_default=False, help="CPU threads for torch.")] = None,
    device: Annotated[Device | None, typer.Option(
        "--device", show_default=False, help="auto, cpu or cuda (default: $TEXTGEN_DEVICE, the config file, auto).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every request (uvicorn's access log).")] = False,
) -> None:
    """Serve models over HTTP: textgen's tasks (POST /v1/tasks/TASK, the JSONL record contract) and
    OpenAI-compatible /v1/completions and /v1/chat/completions, batching concurrent requests.
    `textgen TASK --server URL` runs a task through it."""
    from textgen.serve.run import bind, is_loopback, serve, url_of

    token = token or None
    if not is_loopback(host) and token is None:
        fail(f"--host {host} is not a loopback address: give --token (or set TEXTGEN_SERVE_TOKEN) so that only "
             "clients that have it are served")
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        fail("textgen serve needs FastAPI and uvicorn: pip install 'textgen-zh[serve]'")
    from textgen.runner import Runner, RunError
    from textgen.serve.app import build_app
    from textgen.serve.served import Served
    from textgen.serve.state import ServeSettings

    try:
        sock = bind(host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    try:
        runner = Runner(device=device.value if device else None, threads=threads)
        served = Served(runner, model, max_batch=max_batch, max_wait=max_wait_ms / 1000)
        served.load(on_load=note)
    except RunError as exc:
        sock.close()
        fail(str(exc))
    for message in served.notes:
        warn(message)
    settings = ServeSettings(max_batch=max_batch, max_wait_ms=max_wait_ms, max_body_bytes=max_body_bytes,
                             timeout=timeout, token=token)
    app = build_app(served, settings)
    names = ", ".join(f"{m.name} ({', '.join(m.tasks)}{', chat' if m.chat else ''})" for m in served.models)
    say(f"textgen: serving {names} on {url_of(sock)}{' (token required)' if token else ''}; SIGTERM or Ctrl-C stops")
    try:
        serve(app, sock, graceful_timeout=timeout + 5, verbose=verbose)
    finally:
        served.close()
        sock.close()
    say("textgen: stopped")
