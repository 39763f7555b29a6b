"""The HTTP API: a FastAPI app over the warm models (``textgen.serve.served``).

Endpoints (docs/serve.md):

* ``POST /v1/tasks/{task}``: ``{"records": [...], "model"?, "options"?}`` -> ``{"task", "model",
  "warnings", "textgen", "records": [...]}``: one output record per input record, in order, in the
  JSONL form of a local run (``Output.to_dict()``, error records for bad ones). ``options`` are
  decoding settings (DecodingConfig fields) and task options, checked as a local run checks them
  (``Runner.job``); ``warnings`` are the run's, said once (a record's own are on the record). No
  records: the settings are checked and described, nothing runs (the command line's first call).
* ``POST /v1/completions``, ``POST /v1/chat/completions``: OpenAI-compatible (``textgen.serve.openai``).
* ``GET /v1/models``: OpenAI's list, each model with the tasks it serves here; ``GET /health``.

Safety (``Guard``, an ASGI middleware in front of everything): with a token, a request without
``Authorization: Bearer TOKEN`` is refused (401; ``/health`` answers only ``{"status": "ok"}``
without it); a body over ``max_body_bytes`` is refused by its Content-Length or, streamed, as soon
as it grows past the limit (413). Every error is one line of JSON, ``{"error": {"message", "type"}}``,
never a traceback. A request can name only the models the server was started with.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from textgen.serve.openai import add_openai_routes
from textgen.serve.records import request_records
from textgen.serve.served import NotServed, Served, installed_version
from textgen.serve.state import ERRORS, JSON, ApiError, ServeSettings, State, error_response
from textgen.tasks import TASKS


# ---------------------------------------------------------------------- the guard (auth, body size)
class Guard:
    """ASGI middleware: the token, the body limit, and the count of requests in flight."""

    def __init__(self, app: Any, settings: ServeSettings, stats: dict[str, int]) -> None:
        self.app, self.settings, self.stats = app, settings, stats
        self.token = settings.token.encode() if settings.token else None

    def authorized(self, scope: dict[str, Any]) -> bool:
        if self.token is None:
            return True
        for name, value in scope.get("headers") or []:
            if name == b"authorization":
                scheme, _, given = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token)
        return False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope["textgen.authorized"] = authorized = self.authorized(scope)
        if not authorized and scope["path"] != "/health":
            await error_response(401, "missing or wrong token: send 'Authorization: Bearer TOKEN'",
                                 headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        limit = self.settings.max_body_bytes
        too_large = f"the request body is larger than the server's limit of {limit} bytes (--max-body-bytes)"
        length = next((v for k, v in scope.get("headers") or [] if k == b"content-length"), None)
        if length is not None:
            if not length.isdigit():
                await error_response(400, "malformed Content-Length header")(scope, receive, send)
                return
            if int(length) > limit:
                await error_response(413, too_large)(scope, receive, send)
                return
        body = bytearray()
        if scope["method"] in ("POST", "PUT", "PATCH"):
            # Every body is JSON, whatever it is labelled (curl -d says form data).
            scope["headers"] = [(k, v) for k, v in scope.get("headers") or [] if k != b"content-type"]
            scope["headers"].append((b"content-type", b"application/json"))
            deadline = time.monotonic() + self.settings.timeout
            while True:  # read the body here, counting: a chunked body has no Content-Length
                try:
                    message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    await error_response(408, "the request body did not arrive within the server's --timeout",
                                         headers={"Connection": "close"})(scope, receive, send)
                    return
                if message["type"] == "http.disconnect":
                    return
                body += message.get("body", b"")
                if len(body) > limit:
                    await error_response(413, too_large, headers={"Connection": "close"})(scope, receive, send)
                    return
                if not message.get("more_body"):
                    break
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # then the connection's own messages (a disconnect)

        self.stats["in_flight"] += 1
        try:
            await self.app(scope, replay, send)
        finally:
            self.stats["in_flight"] -= 1
            self.stats["requests"] += 1


# ---------------------------------------------------------------------- request and response bodies
class TaskRequest(BaseModel):
    """``POST /v1/tasks/{task}``."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    records: list[Any] = Field(default_factory=list, description='Input records, as JSONL input lines: {"id", "text", other fields}.')
    model: str | None = Field(None, description="A model this server serves (GET /v1/models); default: the task's.")
    options: dict[str, Any] = Field(default_factory=dict, description="Decoding settings (DecodingConfig fields) and task options.")
    names: dict[str, str] | None = Field(None, description="How messages spell settings (the command line sends its flags).")


class TaskResponse(BaseModel):
    task: str
    model: str
    warnings: list[str] = Field(description="What the settings do (said once; a record's own warnings are on the record).")
    textgen: dict[str, Any] = Field(description='{"version", "settings"}: what the records were made with.')
    records: list[dict[str, Any]] = Field(description="One output record per input record, in order (Output.to_dict()).")


# ---------------------------------------------------------------------- the app
def build_app(served: Served, settings: ServeSettings | None = None) -> FastAPI:
    """The app over ``served`` (already loaded: ``Served.load``)."""
    settings = settings or ServeSettings()
    state = State(served, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        yield
        for model in served.models:  # the workers end with the event loop; the threads stay for reuse
            model.batcher.stop()

    app = FastAPI(title="textgen", version=installed_version(), lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="textgen's tasks and OpenAI-compatible completions over warm models (docs/serve.md).")
    app.state.textgen = state
    app.add_middleware(Guard, settings=settings, stats=state.stats)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.kind)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, describe_validation(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = f"no such endpoint: {request.method} {request.url.path}" if exc.status_code in (404, 405) else str(exc.detail)
        return error_response(exc.status_code, message)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        return error_response(500, f"internal error ({type(exc).__name__}); the server log has the details")

    @app.get("/health", summary="Whether the server is up")
    async def health(request: Request) -> dict[str, Any]:
        if not request.scope.get("textgen.authorized", True):
            return {"status": "ok"}
        batchers = {id(m.batcher): m.batcher for m in served.models}.values()
        return {"status": "ok", "models": [m.name for m in served.models], "in_flight": state.stats["in_flight"] - 1,
                "requests": state.stats["requests"], "queued": sum(b.queued() for b in batchers),
                "batches": sum(b.batches for b in batchers), "batched_items": sum(b.items for b in batchers),
                "limits": {"max_batch": settings.max_batch, "max_wait_ms": settings.max_wait_ms,
                           "max_body_bytes": settings.max_body_bytes, "timeout": settings.timeout}}

    @app.get("/v1/models", summary="The models served (OpenAI's list format, with textgen's tasks)")
    async def models() -> dict[str, Any]:
        defaults = {}
        for task in TASKS:
            try:
                defaults[task] = served.default(task).name
            except NotServed:
                pass
        return {"object": "list", "data": [m.to_json(state.started) for m in served.models], "defaults": defaults}

    @app.post("/v1/tasks/{task}", response_model=TaskResponse, responses=ERRORS,
              summary="Run a task on records (the JSONL record contract)")
    async def run_task(task: str, body: TaskRequest) -> JSON:
        model = state.lookup(served.model, body.model, task)
        if body.names is not None and (len(body.names) > 64 or any(len(k) > 64 or len(v) > 64 for k, v in body.names.items())):
            raise ApiError(400, "names: at most 64 names of at most 64 characters")
        sj = await state.job(model, task, body.options, body.names)
        records = request_records(body.records)
        seeded = sj.job.config.do_sample and sj.job.config.seed is not None
        # Seeded sampling is repeatable only among the request's own records: not mixed with others.
        key = (sj.key, id(records)) if seeded else sj.key
        outputs = await state.timed(model.batcher.submit(key, sj.run, records))
        result = []
        for out in outputs:
            out.made_with = sj.stamp
            result.append(out.to_dict())
        return JSON({"task": task, "model": model.name, "warnings": sj.job.warnings, "textgen": sj.stamp,
                             "records": result})

    add_openai_routes(app, state)
    return app


def describe_validation(errors: Any) -> str:
    """One line for pydantic's validation errors (malformed JSON first)."""
    parts = []
    for err in list(errors)[:3]:
        if err.get("type") == "json_invalid":
            reason = (err.get("ctx") or {}).get("error")
            return "malformed JSON" + (f": {reason}" if reason else "")
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    return "; ".join(parts) or "invalid request"
