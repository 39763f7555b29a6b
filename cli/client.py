"""``textgen TASK --server URL``: the records go to a running ``textgen serve``, the outputs come back
through the same ``Sink`` as a local run's, so what is printed or written, the error records, the
exit status and ``--resume`` are those of a local run. No model loads here and nothing heavy is
imported (no torch): the HTTP client is the standard library's.

``run_remote`` takes the place of the local runner once the records are read and the outputs
opened (``cli.tasks``):

1. one request with no records checks the settings on the server (a bad option, an unknown model
   or task, a wrong token, a server that cannot be reached: one line, exit 2, before any work)
   and names the model, so ``--resume`` can check the output file first;
2. the records are posted a batch at a time (``--batch-size``, and never more bytes than the
   server takes), in order, a lazy stream (stdin) as it arrives; records already in the output
   (``--resume``) are not sent;
3. each answer's records are written as they come. A record the input already made an error record
   (blank text, malformed JSON) keeps its own message; a batch the server cannot answer (too
   large, too slow: 413, 504, 500) becomes error records, which ``--resume`` retries; losing the
   server mid-run stops with exit 1 and ``--resume`` finishes it.

The token is ``$TEXTGEN_SERVE_TOKEN`` (the variable ``textgen serve`` reads too).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sys
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any
from urllib.parse import urlsplit

from textgen.io import Record, id_key
from textgen.output import Output

from .console import error, fail, is_quiet, say, warn
from .options import FLAG_NAMES
from .output import OutputError, Sink, Stopped, Tally, progress_bar

TOKEN_ENV = "TEXTGEN_SERVE_TOKEN"
# Flags that choose how a model loads here; with --server the server's models are used.
LOCAL_ONLY = {"device": "--device", "threads": "--threads", "dtype": "--dtype", "allow_pickle": "--allow-pickle",
              "prompt_file": "--prompt-file"}
# How the server's messages spell settings: as the flags the user typed.
NAMES = {**FLAG_NAMES, "model": "--model", "max_new_tokens": "--max-new-tokens"}
WAIT = 3600.0  # seconds to wait for an answer (the server's --timeout ends a request sooner)
_RETRIED = (413, 500, 502, 503, 504)  # a batch the server could not answer: its records fail, the run goes on


class ServerError(Exception):
    """The server refused a request or could not be reached: one line for the user."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class Client:
    """JSON requests to one server over a kept-alive connection (``http.client``)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = WAIT) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ServerError(f"--server {url}: give an http:// or https:// URL, such as http://127.0.0.1:8741")
        self.url = url
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port
        self.base = parts.path.rstrip("/")
        self.token, self.timeout = token, timeout
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        if self._conn is not None:
            return self._conn, True
        kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        self._conn = kind(self.host, self.port, timeout=self.timeout)
        return self._conn, False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """The JSON answer of ``method path``; ``ServerError`` with the server's one-line message."""
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        while True:
            conn, reused = self._connection()
            try:
                conn.request(method, self.base + path, body=data, headers=headers)
                response = conn.getresponse()
                raw = response.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if reused and not isinstance(exc, TimeoutError):  # a kept-alive connection the server closed
                    continue
                reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                raise ServerError(f"cannot reach the server at {self.url}: {reason}") from None
        if response.will_close:
            self.close()
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if response.status != 200:
            message = None
            if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
                message = answer["error"].get("message")
            raise ServerError(f"the server at {self.url} answered {response.status}: {message or response.reason}",
                              response.status)
        if not isinstance(answer, dict):
            raise ServerError(f"the server at {self.url} did not answer with JSON (is it textgen serve?)")
        return answer


# ---------------------------------------------------------------------- one run
def run_remote(task: str, records: Iterable[Record], sink: Sink, v: dict[str, Any], *, options: dict[str, Any],
               decoding: dict[str, Any]) -> int:
    """Run ``task`` on ``records`` at the server ``v["server"]``, writing through ``sink``; the exit
    status of a local run (see the module docstring). ``v``: the command's option values;
    ``options`` and ``decoding``: the task options and decoding settings the user gave."""
    for key, flag in LOCAL_ONLY.items():
        if v.get(key):
            warn(f"{flag} has no effect with --server: the server's models are loaded there")
    try:
        client = Client(v["server"], os.environ.get(TOKEN_ENV) or None)
        settings = {"model": v.get("model"), "options": {**decoding, **options}, "names": NAMES}
        with sink.guard:
            hello = client.request("POST", f"/v1/tasks/{task}", {**settings, "records": []})
            limits = client.request("GET", "/health").get("limits") or {}
        model = str(hello.get("model", ""))
        sink.check_resume(task, model, records if isinstance(records, list) else None)
    except Stopped as stop:
        sink.close()
        error(f"stopped by {signal.Signals(stop.signum).name} while reaching the server")
        return 128 + stop.signum
    except (ServerError, OutputError) as exc:
        sink.close()
        fail(str(exc))
    for message in hello.get("warnings") or []:
        warn(message)
    made_with = hello.get("textgen") or {}
    if v.get("verbose"):
        described = " ".join(f"{k}={val}" for k, val in (made_with.get("settings") or {}).items())
        say(f"textgen: server {v['server']}: model {model}, textgen {made_with.get('version', '?')}"
            + (f", {described}" if described else ""))
    for message in sink.resume_notes(made_with.get("settings") or {}):
        warn(message)
    max_bytes = int(limits.get("max_body_bytes") or 4 * 1024 * 1024)
    return _process(client, task, model, records, sink, v, settings, max_bytes)


def _process(client: Client, task: str, model: str, records: Iterable[Record], sink: Sink, v: dict[str, Any],
             settings: dict[str, Any], max_bytes: int) -> int:
    total = len(records) if isinstance(records, list) else None
    terminal = v.get("progress") is not False and not is_quiet() and sys.stderr.isatty()
    show = v["progress"] if v.get("progress") is not None else terminal and (total is None or total > 1)
    tally, seen = Tally(sink), 0
    try:
        with sink.guard, progress_bar(show, total) as advance:
            sink.begin()
            it = iter(records)
            while batch := list(islice(it, v.get("batch_size") or 8)):
                seen += len(batch)
                todo = []
                for rec in batch:
                    if sink.done(rec):  # resumed: already in the output
                        advance(1)
                    else:
                        todo.append(rec)
                for rec, out in _answer(client, task, model, todo, settings, max_bytes, v.get("field")):
                    tally.record(rec, out)
                    advance(1)
    except (Stopped, BrokenPipeError, OutputError) as exc:
        return tally.ended(exc)
    except ServerError as exc:
        then = "; rerun with --resume to finish" if sink.resumable else ""
        error(f"{exc}; stopped after {tally.written} records{then}")
        return 1
    finally:
        sink.close()
        client.close()
    return tally.status(bool(seen))


def _payload(rec: Record, field: str | None) -> dict[str, Any]:
    """What the server reads for ``rec``: a JSONL record with its text in ``"text"``. A record the
    input made an error record goes without text (the server answers an error record; a task
    that reads other fields, such as search's ``keywords``, reads them there as here)."""
    drop = {"id", "text", field} if rec.error is not None else {"id", "text"}
    obj = {k: val for k, val in rec.fields.items() if k not in drop}
    obj["id"] = rec.id
    if rec.error is None and rec.text is not None:
        obj["text"] = rec.text
    return obj


def _answer(client: Client, task: str, model: str, records: list[Record], settings: dict[str, Any], max_bytes: int,
            field: str | None) -> Iterator[tuple[Record, Output]]:
    """Each record with its output from the server, in order, in requests of at most ``max_bytes``."""
    sizes = [len(json.dumps(_payload(rec, field), ensure_ascii=False).encode("utf-8")) + 1 for rec in records]
    room = max(1, int(max_bytes * 0.9) - 4096)  # the request's own fields and JSON punctuation
    start = 0
    while start < len(records):
        end, size = start, 0
        while end < len(records) and (end == start or size + sizes[end] <= room):
            size += sizes[end]
            end += 1
        yield from _post(client, task, model, records[start:end], settings, field, too_large=sizes[start] > room)
        start = end


def _post(client: Client, task: str, model: str, records: list[Record], settings: dict[str, Any], field: str | None,
          too_large: bool = False) -> Iterator[tuple[Record, Output]]:
    if too_large and len(records) == 1:
        yield records[0], _failed(records[0], task, model, "the record is larger than the server takes (its --max-body-bytes)")
        return
    try:
        answer = client.request("POST", f"/v1/tasks/{task}", {**settings, "records": [_payload(r, field) for r in records]})
    except ServerError as exc:
        if exc.status == 413 and len(records) > 1:  # split the batch
            half = len(records) // 2
            yield from _post(client, task, model, records[:half], settings, field)
            yield from _post(client, task, model, records[half:], settings, field)
            return
        if exc.status not in _RETRIED:
            raise
        for rec in records:
            yield rec, _failed(rec, task, model, str(exc))
        return
    outputs = answer.get("records")
    if not isinstance(outputs, list) or len(outputs) != len(records):
        raise ServerError(f"the server at {client.url} answered {len(outputs or [])} records for {len(records)}")
    for rec, data in zip(records, outputs):
        out = Output.from_dict(data)
        if id_key(out.id) != id_key(rec.id):
            raise ServerError(f"the server at {client.url} answered record {out.id!r} for {rec.id!r}")
        out.warnings = [*rec.warnings, *out.warnings]  # the input's own warnings, first as in a local run
        if rec.error is not None and out.error is not None:
            out.error = rec.error  # the input's own reason (its line number, its field)
        yield rec, out


def _failed(rec: Record, task: str, model: str, message: str) -> Output:
    return Output(rec.id, task, model, warnings=list(rec.warnings), error=message)


