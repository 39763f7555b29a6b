"""``textgen serve`` (textgen/serve/, cli/serve.py) and the command line as its client (cli/client.py).

Tiny random models only (conftest's backbone, tiny_models' Llama with a chat template). Most
endpoints go through FastAPI's TestClient; batching, the disconnect, the client and the SIGTERM
drain use real servers on loopback ports: uvicorn in a thread, or ``textgen serve`` in a subprocess.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import SENTENCES, jsonl, run, subprocess_env, write_jsonl

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from fastapi.testclient import TestClient  # noqa: E402

from textgen.config import Settings  # noqa: E402
from textgen.io import read_path, unique_ids  # noqa: E402
from textgen.runner import Runner  # noqa: E402
from textgen.serve.app import build_app  # noqa: E402
from textgen.serve.batcher import Batcher  # noqa: E402
from textgen.serve.records import request_records  # noqa: E402
from textgen.serve.run import bind, is_loopback, url_of  # noqa: E402
from textgen.serve.served import Served  # noqa: E402
from textgen.serve.state import ServeSettings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "s3cret-token"


# ---------------------------------------------------------------------- servers
def make_app(models: list[str], **settings: Any) -> Any:
    runner = Runner(Settings(), device="cpu")
    served = Served(runner, models, max_batch=settings.get("max_batch", 16),
                    max_wait=settings.get("max_wait_ms", 10.0) / 1000)
    served.load()
    return build_app(served, ServeSettings(**settings))


@pytest.fixture(scope="module")
def app(tiny_model: Path) -> Any:
    return make_app([str(tiny_model)])


@pytest.fixture
def client(app: Any) -> Any:
    with TestClient(app) as c:
        yield c


class ThreadServer:
    """uvicorn serving ``app`` on a free loopback port, in a thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.sock = bind("127.0.0.1", 0)
        self.url = url_of(self.sock)
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        wait_healthy(self.port)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


def request(port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
            raw: bytes | None = None, timeout: float = 60) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        text = resp.read()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text.decode()
    finally:
        conn.close()


def wait_healthy(port: int, seconds: float = 120) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if request(port, "GET", "/health", timeout=5)[0] == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the server did not come up")


class ProcessServer:
    """``textgen serve`` in a subprocess; the address is read from its start line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from textgen.cli.app import main; main()", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(env), cwd=ROOT,
        )
        self.lines: list[str] = []
        self.url = ""
        end = time.monotonic() + 180
        while time.monotonic() < end:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.lines.append(line)
            if " on http://" in line:
                self.url = line.split(" on ", 1)[1].split()[0].rstrip(";")
                break
        if not self.url:
            self.proc.kill()
            raise AssertionError("textgen serve did not start:\n" + "".join(self.lines) + self.proc.stderr.read())
        self.port = int(self.url.rsplit(":", 1)[1])
        self._rest: list[str] = []
        self._reader = threading.Thread(target=lambda: self._rest.extend(self.proc.stderr), daemon=True)
        self._reader.start()

    def stderr(self) -> str:
        self._reader.join(5)
        return "".join(self.lines + self._rest)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


@pytest.fixture(scope="module")
def process_server(tiny_model: Path) -> Any:
    server = ProcessServer("-m", str(tiny_model), env={"OMP_NUM_THREADS": "1", "TEXTGEN_SERVE_TOKEN": ""})
    yield server
    server.stop()


def error_of(response: Any) -> str:
    """The one-line JSON error of a response: ``{"error": {"message", "type"}}``, no traceback."""
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type"}, body
    message = body["error"]["message"]
    assert "\n" not in message and "Traceback" not in message
    return message


# ---------------------------------------------------------------------- endpoints
def test_health_and_models_list_the_served_model_and_its_tasks(client, tiny_model):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["models"] == [str(tiny_model)]
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    (entry,) = models["data"]
    assert entry["id"] == str(tiny_model) and entry["object"] == "model" and entry["owned_by"] == "textgen"
    assert entry["tasks"] == ["title", "continue"] and entry["chat"] is False
    assert "/v1/completions" in entry["endpoints"] and "/v1/tasks/title" in entry["endpoints"]
    assert models["defaults"] == {"title": str(tiny_model), "continue": str(tiny_model)}


def test_task_records_follow_the_jsonl_contract_of_a_local_run(client, tiny_model, tmp_path):
    """One output per input, in order, the JSONL form of a local run: error records in place,
    ids kept (repeats renamed), other fields kept, the "textgen" stamp."""
    items = [{"id": "a", "text": SENTENCES[0]}, {"text": "  "}, 7, {"id": "a", "text": SENTENCES[1]},
             {"id": [1], "text": "x"}, {"id": 3.5, "title": "no text"}, {"id": "n", "text": None}]
    resp = client.post("/v1/tasks/title", json={"records": items, "options": {"num_beams": 2}})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["task"] == "title" and body["model"] == str(tiny_model) and body["warnings"] == []
    got = body["records"]
    # The same objects as a JSONL file through the command line.
    path = write_jsonl(tmp_path / "in.jsonl", items)
    local = run("title", "-i", path, "--json", "-m", tiny_model, "--beam", "2")
    want = jsonl(local.stdout)
    assert [r["id"] for r in got] == [r["id"] for r in want] == ["a", 2, 3, "a#2", 5, 3.5, "n"]
    for g, w in zip(got, want):
        w["error"] = w.get("error", "").replace("line ", "record ") or None
        g.setdefault("error", None)
        assert g == w
    assert got[0]["textgen"]["settings"]["num_beams"] == 2


def test_request_records_are_read_as_jsonl_lines_are(tmp_path):
    items = [{"id": "x", "text": "文本", "keywords": ["a"]}, {"text": ""}, "str", {"id": True, "text": "t"},
             {"id": {"a": 1}, "text": "t"}, {"id": "k", "keywords": ["白云"]}, {"id": "dup", "text": "1"},
             {"id": "dup", "text": "2"}]
    served = request_records(items)
    path = write_jsonl(tmp_path / "r.jsonl", items)
    read = list(unique_ids(read_path(path)))
    assert len(served) == len(read)
    for s, r in zip(served, read):
        assert (s.id, s.text, s.fields, s.warnings) == (r.id, r.text, r.fields, r.warnings)
        assert (s.error or "").replace("record ", "line ") == (r.error or "")


def test_no_records_check_and_describe_the_settings(client, tiny_model):
    body = client.post("/v1/tasks/continue", json={"options": {"max_new_tokens": 5, "heal": False}}).json()
    assert body["records"] == [] and body["model"] == str(tiny_model)
    assert body["textgen"]["settings"]["max_new_tokens"] == 5 and body["textgen"]["settings"]["heal"] is False
    # Warnings about the settings are said once, at the top.
    body = client.post("/v1/tasks/title", json={"options": {"temperature": 0.5}}).json()
    assert any("temperature" in w for w in body["warnings"])
    names = client.post("/v1/tasks/title", json={"options": {"temperature": 0.5}, "names": {"temperature": "-t"}}).json()
    assert any(w.startswith("-t ") for w in names["warnings"])


@pytest.mark.parametrize("body, status, words", [
    ({"options": {"num_beams": 0}}, 400, "num_beams"),
    ({"options": {"bogus": 1}}, 400, "bogus"),
    ({"options": {"max_new_tokens": 100000}}, 400, "max_new_tokens"),
    ({"records": [], "model": "/etc"}, 404, "not served"),
    ({"records": [], "model": "mini-zh"}, 404, "not served"),
    ({"records": [], "unknown_field": 1}, 400, "unknown_field"),
    ({"records": {"text": "x"}}, 400, "records"),
])
def test_bad_requests_are_one_line_json_errors(client, body, status, words):
    resp = client.post("/v1/tasks/title", json=body)
    assert resp.status_code == status, resp.text
    assert words in error_of(resp)


def test_unknown_task_endpoint_and_method_and_malformed_json(client):
    resp = client.post("/v1/tasks/poem", json={})
    assert resp.status_code == 404 and "unknown task 'poem'" in error_of(resp)
    resp = client.post("/v1/tasks/summarize", json={})  # a task, but not one this model serves
    assert resp.status_code == 404 and "no model served here serves 'summarize'" in error_of(resp)
    resp = client.get("/nowhere")
    assert resp.status_code == 404 and "no such endpoint" in error_of(resp)
    resp = client.delete("/health")
    assert resp.status_code == 405 and error_of(resp)
    resp = client.post("/v1/tasks/title", content=b'{"records": [', headers={"content-type": "application/json"})
    assert resp.status_code == 400 and error_of(resp).startswith("malformed JSON")
    resp = client.post("/v1/tasks/title", content=b'{"records": []}', headers={"content-type": "text/plain"})
    assert resp.status_code == 200  # every body is JSON, whatever its label (curl -d)


def test_oversized_bodies_are_refused_by_length_and_while_streamed(tiny_model):
    app = make_app([str(tiny_model)], max_body_bytes=2048)
    big = json.dumps({"records": [{"text": "字" * 2000}]}).encode()
    with TestClient(app) as c:
        resp = c.post("/v1/tasks/title", content=big, headers={"content-type": "application/json"})
        assert resp.status_code == 413 and "2048 bytes" in error_of(resp)

        def chunks():  # no Content-Length: counted as it arrives
            for i in range(0, len(big), 512):
                yield big[i:i + 512]

        resp = c.post("/v1/tasks/title", content=chunks(), headers={"content-type": "application/json"})
        assert resp.status_code == 413 and error_of(resp)
        assert c.post("/v1/tasks/title", json={"records": [{"text": SENTENCES[0]}]}).status_code == 200


def test_a_request_past_the_timeout_gets_504(tiny_model, monkeypatch):
    app = make_app([str(tiny_model)], timeout=0.3)
    from textgen.tasks.base import Task

    real = Task.run
    monkeypatch.setattr(Task, "run", lambda self, recs, config, **kw: (time.sleep(1), real(self, recs, config, **kw))[1])
    with TestClient(app) as c:
        resp = c.post("/v1/tasks/title", json={"records": [{"text": SENTENCES[0]}]})
        assert resp.status_code == 504 and "--timeout" in error_of(resp)


def test_the_token_is_required_when_set(tiny_model):
    app = make_app([str(tiny_model)], token=TOKEN)
    with TestClient(app) as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}):
            resp = c.get("/v1/models", headers=headers)
            assert resp.status_code == 401 and "token" in error_of(resp)
            assert c.post("/v1/tasks/title", json={"records": []}, headers=headers).status_code == 401
            assert c.get("/openapi.json", headers=headers).status_code == 401
        assert c.get("/health").json() == {"status": "ok"}  # up or not, nothing more
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert c.get("/v1/models", headers=auth).status_code == 200
        assert "models" in c.get("/health", headers=auth).json()
        resp = c.post("/v1/tasks/title", json={"records": [{"text": SENTENCES[0]}]}, headers=auth)
        assert resp.status_code == 200 and len(resp.json()["records"]) == 1


def test_loopback_addresses():
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "example.com", "localhost.example.com"):
        assert not is_loopback(host), host


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.0.1"])
def test_a_public_address_without_a_token_refuses_to_start(host, tiny_model):
    env = subprocess_env({"TEXTGEN_SERVE_TOKEN": ""})
    proc = subprocess.run([sys.executable, "-c", "from textgen.cli.app import main; main()", "serve", "--host", host,
                           "-m", str(tiny_model)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a loopback address" in lines[0] and "--token" in lines[0], proc.stderr


def test_help_imports_neither_fastapi_nor_torch():
    for args in (["--help"], ["serve", "--help"]):
        script = ("import sys\nfrom textgen.cli.app import app\ntry:\n    app(%r)\nexcept SystemExit:\n    pass\n"
                  "print(sorted(m for m in ('torch', 'fastapi', 'uvicorn', 'starlette') if m in sys.modules))" % args)
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=subprocess_env(),
                              timeout=120, cwd=ROOT)
        assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout[-300:] + proc.stderr
        if args[0] == "serve":
            assert "--max-batch" in proc.stdout


def test_a_model_is_named_by_its_spec_or_its_textgen_json_name_and_nothing_else(client, tiny_model):
    for name in (str(tiny_model), "tiny"):
        resp = client.post("/v1/tasks/title", json={"model": name, "records": [{"text": SENTENCES[0]}]})
        assert resp.status_code == 200 and resp.json()["records"][0]["model"] == str(tiny_model)
    for name in ("./tiny", str(tiny_model) + "/", "mini-zh-title", "gpt2"):
        resp = client.post("/v1/tasks/title", json={"model": name, "records": []})
        assert resp.status_code == 404 and "not served here" in error_of(resp)


def test_openapi_schema_is_valid_and_documents_every_endpoint(client):
    schema = client.get("/openapi.json").json()
    try:
        from openapi_spec_validator import validate
    except ImportError:
        validate = None
    if validate is not None:
        validate(schema)
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    assert {"/v1/tasks/{task}", "/v1/completions", "/v1/chat/completions", "/v1/models", "/health"} <= set(paths)
    for path, ops in paths.items():
        for method, op in ops.items():
            assert method in ("get", "post") and "200" in op["responses"] and op.get("summary"), (path, method)
            if method == "post":
                assert "requestBody" in op and {"400", "404", "413"} <= set(op["responses"]), path


# ---------------------------------------------------------------------- completions (the continue task)
def test_completions_are_the_continue_task(client, tiny_model):
    body = {"prompt": SENTENCES[2], "max_tokens": 6, "temperature": 0, "n": 1}
    resp = client.post("/v1/completions", json=body)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["object"] == "text_completion" and out["model"] == str(tiny_model)
    (choice,) = out["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] in ("stop", "length") and choice["text"]
    assert out["usage"]["total_tokens"] == out["usage"]["prompt_tokens"] + out["usage"]["completion_tokens"]
    task = client.post("/v1/tasks/continue", json={"records": [{"text": SENTENCES[2]}],
                                                   "options": {"max_new_tokens": 6, "temperature": 0}}).json()
    assert choice["text"] == task["records"][0]["outputs"][0]["text"]
    # Several prompts, n each; stop strings cut the text; heal is the task option.
    resp = client.post("/v1/completions", json={"prompt": [SENTENCES[0], SENTENCES[1]], "n": 2, "max_tokens": 4,
                                                "seed": 3, "heal": False})
    assert [c["index"] for c in resp.json()["choices"]] == [0, 1, 2, 3]
    full = choice["text"]
    cut = client.post("/v1/completions", json={**body, "stop": [full[1:3]]}).json()["choices"][0]
    assert cut["text"] == full[: full.find(full[1:3])] and cut["finish_reason"] == "stop"


@pytest.mark.parametrize("body, words", [
    ({"prompt": ""}, "empty"),
    ({"prompt": "x", "logprobs": 2}, "logprobs"),
    ({"prompt": "x", "presence_penalty": 0.5}, "presence_penalty"),
    ({"prompt": "x", "temperature": -1}, "temperature"),
    ({"prompt": "x", "stop": [""]}, "stop"),
    ({}, "prompt"),
])
def test_bad_completions_are_400(client, body, words):
    resp = client.post("/v1/completions", json=body)
    assert resp.status_code == 400 and words in error_of(resp)


def test_neutral_openai_fields_are_accepted(client):
    resp = client.post("/v1/completions", json={"prompt": "x", "presence_penalty": 0, "logprobs": None, "user": "me",
                                                "max_tokens": 2})
    assert resp.status_code == 200, resp.text


def sse(text: str) -> list[Any]:
    """The events of a server-sent event stream: JSON objects, and "[DONE]"."""
    events = []
    for block in text.split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block
            data = block[len("data: "):]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def test_streamed_completions_are_server_sent_events_of_the_same_text(client):
    body = {"prompt": SENTENCES[3], "max_tokens": 8, "temperature": 0}
    whole = client.post("/v1/completions", json=body).json()["choices"][0]
    with client.stream("POST", "/v1/completions", json={**body, "stream": True}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        events = sse(resp.read().decode())
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == whole["finish_reason"]
    assert len(chunks) > 2  # the text came in pieces


# ---------------------------------------------------------------------- chat completions
@pytest.fixture(scope="module")
def chat_app(tmp_path_factory, tiny_model) -> Any:
    from tiny_models import save_llama

    path = tmp_path_factory.mktemp("models") / "llama-chat"
    save_llama(path, eos_factor=1.5)
    return make_app([str(tiny_model), str(path)]), path


def test_chat_completions_render_the_template_and_decode(chat_app):
    app, path = chat_app
    from textgen.decoding import DecodingConfig, generate
    from textgen.models.families import load_adapter

    messages = [{"role": "system", "content": "你是助手"}, {"role": "user", "content": "白云机场在哪里"}]
    with TestClient(app) as c:
        models = c.get("/v1/models").json()
        chat = [m for m in models["data"] if m["chat"]]
        assert [m["id"] for m in chat] == [str(path)] and "/v1/chat/completions" in chat[0]["endpoints"]
        resp = c.post("/v1/chat/completions", json={"messages": messages, "max_tokens": 8, "temperature": 0})
        assert resp.status_code == 200, resp.text
        out = resp.json()
        assert out["object"] == "chat.completion" and out["model"] == str(path)
        (choice,) = out["choices"]
        assert choice["message"]["role"] == "assistant" and choice["finish_reason"] in ("stop", "length")
        # The same as rendering with the template and decoding greedily here.
        adapter = load_adapter(path, "causal")
        ids = adapter.source_ids(adapter.render(messages))
        (hyp,), = generate(adapter, [ids], DecodingConfig(max_new_tokens=8))
        assert choice["message"]["content"] == adapter.decode(hyp.token_ids)
        assert out["usage"]["prompt_tokens"] == len(ids) and out["usage"]["completion_tokens"] == len(hyp.token_ids)
        # Streamed: a role chunk, then the same text in pieces, then [DONE].
        with c.stream("POST", "/v1/chat/completions", json={"messages": messages, "max_tokens": 8, "temperature": 0,
                                                            "stream": True}) as resp:
            events = sse(resp.read().decode())
        assert events[0]["choices"][0]["delta"]["role"] == "assistant" and events[-1] == "[DONE]"
        assert all(e["object"] == "chat.completion.chunk" for e in events[:-1])
        text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1])
        assert text == choice["message"]["content"]
        assert events[-2]["choices"][0]["finish_reason"] == choice["finish_reason"]
        # The copy constraint: the answer is made of pieces of the source.
        source = "广州白云机场有地铁"
        resp = c.post("/v1/chat/completions", json={"messages": messages, "max_tokens": 6, "temperature": 0,
                                                    "copy": "text", "source": source})
        copied = resp.json()["choices"][0]["message"]["content"]
        assert resp.status_code == 200 and all(ch in source for ch in copied.replace(" ", ""))
        # A model without a chat template, a bad role, copy without a source: 400.
        for body, words in (({"model": str(path.parent.parent), "messages": messages}, "not served"),
                            ({"messages": [{"role": "tool", "content": "x"}]}, "role"),
                            ({"messages": messages, "copy": "text"}, "source"),
                            ({"messages": []}, "messages")):
            resp = c.post("/v1/chat/completions", json=body)
            assert resp.status_code in (400, 404) and words in error_of(resp), resp.text
        resp = c.post("/v1/chat/completions", json={"model": next(m["id"] for m in models["data"] if not m["chat"]),
                                                    "messages": messages})
        assert resp.status_code == 400 and "no chat template" in error_of(resp)


def test_the_openai_sdk_talks_to_the_server(chat_app):
    openai = pytest.importorskip("openai")
    app, path = chat_app
    with ThreadServer(app) as server:
        sdk = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
        out = sdk.chat.completions.create(model=str(path), messages=[{"role": "user", "content": "你好"}], max_tokens=4,
                                          temperature=0)
        assert out.choices[0].message.role == "assistant"
        assert [m.id for m in sdk.models.list().data][-1] == str(path)


# ---------------------------------------------------------------------- batching
def test_the_batcher_batches_by_key_and_keeps_order():
    import asyncio

    calls: list[list[int]] = []

    def run(items: list[int]) -> list[int]:
        calls.append(list(items))
        time.sleep(0.01)
        return [i * 10 for i in items]

    async def main() -> list[list[int]]:
        batcher = Batcher("t", max_batch=4, max_wait=0.05)
        try:
            jobs = [batcher.submit("a", run, [i, i + 100]) for i in range(3)] + [batcher.submit("b", run, [7])]
            return await asyncio.gather(*jobs)
        finally:
            batcher.stop()

    results = asyncio.run(main())
    assert results == [[0, 1000], [10, 1010], [20, 1020], [70]]
    assert sorted(map(sorted, calls)) == sorted([[0, 1, 100, 101], [2, 102], [7]])  # at most 4, never mixing keys


@pytest.mark.parametrize("options", [{"num_beams": 1}, {"num_beams": 3, "num_return_sequences": 2}])
def test_concurrent_requests_are_decoded_together_with_the_outputs_of_each_alone(tiny_model, options):
    """Greedy and beam outputs are those of decoding each record alone, though the records of many
    requests share one decoder call."""
    app = make_app([str(tiny_model)], max_batch=8, max_wait_ms=300.0)
    texts = SENTENCES + [s[:9] for s in SENTENCES]
    runner = Runner(Settings(), device="cpu")
    job = runner.job("title", str(tiny_model), decoding=options)
    from textgen.io import make_record

    alone = [job.task.run([make_record(1, t)], job.config)[0].to_dict()["outputs"] for t in texts]
    with ThreadServer(app) as server:
        before = request(server.port, "GET", "/health")[1]

        def one(text: str) -> Any:
            status, body = request(server.port, "POST", "/v1/tasks/title", {"records": [{"text": text}], "options": options})
            assert status == 200, body
            return body["records"][0]["outputs"]

        with ThreadPoolExecutor(len(texts)) as pool:
            served = list(pool.map(one, texts))
        after = request(server.port, "GET", "/health")[1]
    assert served == alone
    batches = after["batches"] - before["batches"]
    assert after["batched_items"] - before["batched_items"] == len(texts)
    assert batches < len(texts), "no two requests were batched"


# ---------------------------------------------------------------------- a real server: disconnects, the client, SIGTERM
def test_a_client_leaving_mid_stream_stops_its_decoding_and_disturbs_no_other_request(app, monkeypatch):
    import textgen.serve.openai as openai_api

    pieces: list[int] = []
    real = openai_api._completion_rows

    def counted(job: Any, records: Any, on_text: Any = None) -> Any:
        if on_text is None:
            return real(job, records)
        pieces.append(0)

        def write(piece: str) -> None:
            pieces[-1] += 1
            on_text(piece)

        return real(job, records, write)

    monkeypatch.setattr(openai_api, "_completion_rows", counted)
    with ThreadServer(app) as server:
        port = server.port
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        body = json.dumps({"prompt": SENTENCES[0], "max_tokens": 100, "min_tokens": 100, "stream": True}).encode()
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        received = b""
        while b"data: {" not in received:
            received += sock.recv(4096)
        with ThreadPoolExecutor(4) as pool:
            others = [pool.submit(request, port, "POST", "/v1/tasks/title", {"records": [{"text": s}]}) for s in SENTENCES[:4]]
            sock.close()  # gone mid-stream
            results = [f.result() for f in others]
        assert all(status == 200 and len(body["records"]) == 1 for status, body in results)
        status, body = request(port, "POST", "/v1/completions", {"prompt": SENTENCES[1], "max_tokens": 3})
        assert status == 200 and body["choices"]
        assert request(port, "GET", "/health")[1]["status"] == "ok"
        assert pieces and pieces[0] < 100  # the decoding stopped soon after the client left


def _remote(url: str, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    """``textgen title --server URL ARGS`` in a fresh process that must not import torch
    (tests/serve_client.py: the real command once the task commands have the flag)."""
    env = {"TEXTGEN_SERVE_TOKEN": token or "", "TEXTGEN_REPORT_TORCH": "1"}
    return subprocess.run([sys.executable, str(ROOT / "tests" / "serve_client.py"), url, *args], capture_output=True,
                          text=True, env=subprocess_env(env), timeout=120, stdin=subprocess.DEVNULL, cwd=ROOT)


def _no_torch(proc: subprocess.CompletedProcess[str]) -> str:
    assert "NO-TORCH" in proc.stderr, proc.stderr
    return "\n".join(line for line in proc.stderr.splitlines() if line != "NO-TORCH")


def test_the_client_prints_what_a_local_run_prints(process_server, tiny_model, tmp_path):
    rows = [{"id": "a", "text": SENTENCES[0]}, {"id": "b", "text": " "}, {"id": "c", "text": SENTENCES[4]}]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    with path.open("a", encoding="utf-8") as f:
        f.write("not json\n")
    for fmt in (["--json"], []):
        remote = _remote(process_server.url, "-i", str(path), "-m", str(tiny_model), "--beam", "2", *fmt)
        local = run("title", "-i", path, "-m", tiny_model, "--beam", "2", *fmt)
        assert remote.returncode == local.exit_code == 1
        assert remote.stdout == local.stdout
        assert _no_torch(remote).strip() == local.stderr.strip()
    text = _remote(process_server.url, SENTENCES[1], "-m", str(tiny_model))
    assert text.returncode == 0 and text.stdout == run("title", SENTENCES[1], "-m", tiny_model).stdout
    _no_torch(text)


def test_the_client_resumes_as_a_local_run_does(process_server, tiny_model, tmp_path):
    rows = [{"id": i, "text": s} for i, s in enumerate(SENTENCES)]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    local = run("title", "-i", path, "-m", tiny_model, "--json", "-o", tmp_path / "local.jsonl")
    assert local.exit_code == 0
    want = (tmp_path / "local.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text("".join(want[:3]) + want[3][:10], encoding="utf-8")  # stopped mid-line
    proc = _remote(process_server.url, "-i", str(path), "-m", str(tiny_model), "--json", "-o", str(out), "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "3 records already written" in proc.stderr
    assert out.read_text(encoding="utf-8").splitlines(keepends=True) == want
    # A file of another task's output is refused before any work, as locally.
    other = write_jsonl(tmp_path / "other.jsonl", [{"id": 0, "outputs": [], "model": "m", "task": "summarize"}])
    proc = _remote(process_server.url, "-i", str(path), "--json", "-o", str(other), "--resume")
    assert proc.returncode == 2 and "holds summarize output" in proc.stderr


def test_client_usage_errors_exit_2_before_any_work(process_server, tiny_model, tmp_path):
    out = tmp_path / "out.jsonl"
    for args, words in ((["--beam", "0"], "num_beams"), (["-m", "/elsewhere/model"], "not served"),
                        (["--method", "clause"], "clause")):
        proc = _remote(process_server.url, SENTENCES[0], "-m", str(tiny_model), *args, "--json", "-o", str(out))
        assert proc.returncode == 2, proc.stderr
        lines = _no_torch(proc).strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("textgen: error:") and words in lines[0], lines
        assert not out.exists()
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    proc = _remote(f"http://127.0.0.1:{free}", SENTENCES[0])
    assert proc.returncode == 2 and "cannot reach the server" in proc.stderr


def test_sigterm_finishes_the_requests_in_flight_and_exits_0(tiny_model):
    server = ProcessServer("-m", str(tiny_model), "--max-batch", "4", env={"OMP_NUM_THREADS": "1"})
    try:
        records = [{"id": i, "text": SENTENCES[i % len(SENTENCES)]} for i in range(64)]  # 16 batches: seconds
        body = {"records": records, "options": {"max_new_tokens": 100, "min_new_tokens": 100, "heal": False}}
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(request, server.port, "POST", "/v1/tasks/continue", body, None, None, 120)
            end = time.monotonic() + 60
            while request(server.port, "GET", "/health")[1].get("in_flight", 0) < 1:
                assert time.monotonic() < end and not pending.done()
                time.sleep(0.02)
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            assert not pending.done()  # still decoding after the signal: this is the drain
            status, answer = pending.result(120)
        assert status == 200 and [r["id"] for r in answer["records"]] == list(range(64))
        assert all("error" not in r for r in answer["records"])
        assert server.proc.wait(60) == 0
        with pytest.raises(OSError):
            request(server.port, "GET", "/health", timeout=5)
        assert "Traceback" not in server.stderr() and "stopped" in server.stderr()
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
