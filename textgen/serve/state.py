"""What the server's handlers share: its settings, the error answers, the timed calls.

Every error answer is one line of JSON, ``{"error": {"message", "type"}}`` (OpenAI's shape), with
the HTTP status that says what went wrong; no traceback ever reaches a client.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from textgen.runner import RunError
from textgen.serve.served import NotServed, Served

MiB = 1024 * 1024


@dataclass
class ServeSettings:
    """What ``textgen serve``'s flags set besides the models."""

    max_batch: int = 16  # records decoded together, at most
    max_wait_ms: float = 10.0  # how long the first record of a batch waits for others
    max_body_bytes: int = 4 * MiB  # the largest request body
    timeout: float = 120.0  # seconds a request may take, queueing included
    token: str | None = None  # required as "Authorization: Bearer TOKEN" when set


class ApiError(Exception):
    """An error answer: HTTP status, OpenAI-style type, one-line message."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, one_line(message), kind


_KINDS = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
          405: "invalid_request_error", 408: "timeout", 413: "request_too_large", 500: "server_error", 504: "timeout"}


def one_line(message: str) -> str:
    return " ".join(str(message).split())


def error_body(status: int, message: str, kind: str | None = None) -> dict[str, Any]:
    return {"error": {"message": one_line(message), "type": kind or _KINDS.get(status, "error")}}


class JSON(JSONResponse):
    """JSON as textgen's JSONL files write it: UTF-8 kept readable, and a score that is not finite
    written as JSON Lines output writes it (``-Infinity``), never a failed answer."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def error_response(status: int, message: str, kind: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, kind), status_code=status, headers=headers)


class ErrorDetail(BaseModel):
    message: str
    type: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in ((400, "Bad request: malformed JSON, a bad option"), (401, "Missing or wrong token"),
                       (404, "Unknown task or model"), (413, "Body too large"), (504, "Took longer than --timeout"))
}


class State:
    """What the handlers share: the models, the settings, the counters."""

    def __init__(self, served: Served, settings: ServeSettings) -> None:
        self.served, self.settings = served, settings
        self.started = int(time.time())
        self.stats = {"in_flight": 0, "requests": 0}

    async def timed(self, awaitable: Any) -> Any:
        """``awaitable`` within the request timeout (504 after it)."""
        try:
            return await asyncio.wait_for(awaitable, self.settings.timeout)
        except asyncio.TimeoutError:
            raise ApiError(504, f"the request took longer than the server's --timeout of {self.settings.timeout:g} s", "timeout") from None

    async def job(self, served: Any, task: str, options: dict[str, Any], names: dict[str, str] | None = None) -> Any:
        try:
            return await self.timed(self.served.job(served, task, options, names))
        except RunError as exc:
            raise ApiError(400, str(exc)) from None

    def lookup(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except NotServed as exc:
            raise ApiError(404, str(exc), "not_found_error") from None


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
