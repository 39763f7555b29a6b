"""OpenAI-compatible endpoints: ``POST /v1/completions`` and ``POST /v1/chat/completions``.

* Completions are the ``continue`` task on the prompt (raw text, no template; token healing on
  unless ``"heal": false``), so they batch and decode exactly as ``textgen continue`` does.
* Chat completions render the messages with the model's own chat template and decode with
  textgen's decoder (``textgen.decoding.generate``), batched like the tasks. textgen extras:
  ``"copy": "text" | "span"`` with a ``"source"`` text: the answer is made of pieces of the
  source (the copy constraint of ``textgen.decoding.copy``: no invented figures).

Fields: ``max_tokens`` (chat also ``max_completion_tokens``), ``temperature`` (0 = greedy),
``top_p``, ``n``, ``stop`` (a string or a list: the text ends before the first one), ``seed``,
``stream`` (server-sent events: ``data: {...}`` chunks, then ``data: [DONE]``), and the textgen
fields ``min_tokens``, ``top_k``, ``repetition_penalty``, ``num_beams``. Omitted fields keep the
task's and model's defaults (completions: ``continue``'s nucleus sampling) or, for chat,
OpenAI's (sampling at temperature 1). A field OpenAI has that textgen does not implement
(``logprobs``, ``tools``, penalties ...) is refused with a 400 unless it is given its neutral value.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from textgen.io import make_record
from textgen.serve.state import ERRORS, JSON, ApiError, State, dumps, error_body
from textgen.serve.served import canonical

DEFAULT_CHAT_TOKENS = 512  # chat's max_tokens when none is given (shortened to fit the model's window)
_IGNORED = {"user", "stream_options", "store", "metadata", "service_tier", "parallel_tool_calls"}
_NEUTRAL: dict[str, tuple[Any, ...]] = {"presence_penalty": (0,), "frequency_penalty": (0,), "best_of": (1,),
                                        "logprobs": (False, 0), "top_logprobs": (0,), "echo": (False,),
                                        "tool_choice": ("none",), "response_format": ({"type": "text"},)}
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class _Aborted(BaseException):
    """Stops a streamed decoding whose client is gone or whose stop string came (a BaseException:
    no task's error isolation catches it)."""


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())
    model: str | None = Field(None, description="A model this server serves; default: the first that can.")
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, description="0: greedy decoding.")
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=128)
    stop: str | list[str] | None = Field(None, description="Up to 16 strings; the output ends before the first.")
    seed: int | None = None
    stream: bool = False
    min_tokens: int | None = Field(None, ge=0, description="textgen: fewest tokens before the end may come.")
    top_k: int | None = Field(None, ge=0, description="textgen: sample among the k likeliest tokens.")
    repetition_penalty: float | None = Field(None, gt=0, description="textgen: penalty on tokens already present.")
    num_beams: int | None = Field(None, ge=1, description="textgen: beam search with this many beams.")


class CompletionRequest(_Sampling):
    prompt: str | list[str] = Field(description="The text to continue (raw text, no chat template); a list: several.")
    heal: bool | None = Field(None, description="textgen: token healing of the prompt's last token (default on).")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    copy_mode: str | None = Field(None, alias="copy", description="textgen: off, text or span: copy from \"source\".")
    source: str | None = Field(None, description="textgen: the text the copy constraint copies from.")


# ---------------------------------------------------------------------- settings
def _check_extras(req: BaseModel) -> None:
    bad = []
    for name, value in (req.model_extra or {}).items():
        if name in _IGNORED or value is None or value in _NEUTRAL.get(name, ()) or value in ((), [], {}):
            continue
        bad.append(name)
    if bad:
        raise ApiError(400, f"unsupported field(s): {', '.join(sorted(bad))} (textgen serve does not implement them)")


def _stops(stop: str | list[str] | None) -> list[str]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > 16 or any(not s for s in stops):
        raise ApiError(400, "stop: at most 16 non-empty strings")
    return stops


def _decoding(req: _Sampling, max_tokens: int | None) -> dict[str, Any]:
    """DecodingConfig overrides of an OpenAI request's fields."""
    out: dict[str, Any] = {}
    if max_tokens is not None:
        out["max_new_tokens"] = max_tokens
    if req.min_tokens is not None:
        out["min_new_tokens"] = req.min_tokens
    if req.temperature is not None:
        out["temperature"] = req.temperature
        if req.temperature > 0 and req.num_beams is None:
            out["do_sample"] = True
    for name, field in (("top_p", "top_p"), ("top_k", "top_k"), ("repetition_penalty", "repetition_penalty"),
                        ("seed", "seed"), ("num_beams", "num_beams")):
        if getattr(req, name) is not None:
            out[field] = getattr(req, name)
    if req.n != 1:
        out["num_return_sequences"] = req.n
    return out


def _first_stop(text: str, stops: list[str]) -> int | None:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def _cut(text: str, stops: list[str]) -> tuple[str, bool]:
    at = _first_stop(text, stops)
    return (text, False) if at is None else (text[:at], True)


class _ChoiceText:
    """One choice's text as it streams: what may be sent, cut before the first stop string, and
    holding back an end that could begin one."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.hold = max((len(s) for s in stops), default=1) - 1
        self.text = ""
        self.sent = 0
        self.stopped = False

    def add(self, piece: str) -> str:
        if self.stopped:
            return ""
        self.text += piece
        at = _first_stop(self.text, self.stops)
        if at is not None:
            self.stopped, end = True, at
        else:
            end = max(self.sent, len(self.text) - self.hold)
        out, self.sent = self.text[self.sent:end], max(self.sent, end)
        return out

    def finish(self, final: str) -> str:
        """The rest of the choice, given its whole text."""
        if self.stopped:
            return ""
        final, self.stopped = _cut(final, self.stops)
        sent = self.text[: self.sent]
        return final[len(sent):] if final.startswith(sent) else ""


def _ids(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


# ---------------------------------------------------------------------- decoding in the model's thread
@dataclass
class _Choice:
    text: str
    finished: bool  # False: cut at max_tokens
    tokens: int


@dataclass
class _Row:
    prompt_tokens: int
    choices: list[_Choice]
    error: str | None = None
    status: int = 500  # of the error: 400 when the request is at fault (messages no template renders)


def _cut_warning(warnings: list[str], rank: int, n: int) -> bool:
    which = f"output {rank} was cut" if n > 1 else "output was cut"
    return any(w.startswith(which) for w in warnings)


def _completion_rows(job: Any, records: list[Any], on_text: Callable[[str], None] | None = None) -> list[_Row]:
    """The continue task over the prompts, with token counts (the task's own ``run``)."""
    adapter = job.task.adapter
    outputs = job.task.run(records, job.config, on_text=on_text)
    rows = []
    for rec, out in zip(records, outputs):
        if out.error is not None:
            rows.append(_Row(0, [], out.error))
            continue
        n = len(out.candidates)
        choices = [_Choice(c.text, not _cut_warning(out.warnings, r, n), len(adapter.source_ids(c.text)) if c.text else 0)
                   for r, c in enumerate(out.candidates, 1)]
        rows.append(_Row(len(adapter.encode(rec.text or "")), choices))
    return rows


def encode_messages(adapter: Any, messages: list[dict[str, str]]) -> list[int]:
    """The ids of chat ``messages`` rendered with the model's template, with the generation prompt."""
    return list(adapter.encode_messages(messages))


def _chat_rows(adapter: Any, config: Any, copy: str, rows: list[tuple[list[dict[str, str]], str | None]],
               on_step: Callable[[list[int]], None] | None = None) -> list[_Row]:
    """One decoder call over the rendered messages of ``rows`` (a failing batch is retried one row at a time)."""
    from textgen.decoding import generate

    results: dict[int, _Row] = {}
    inputs: dict[int, list[int]] = {}
    for i, (messages, _) in enumerate(rows):
        try:
            inputs[i] = encode_messages(adapter, messages)
        except Exception as exc:  # noqa: BLE001 -- a template that refuses these messages
            results[i] = _Row(0, [], f"the chat template cannot render these messages: {type(exc).__name__}: {exc}", 400)
    todo = sorted(inputs)
    if todo:
        try:
            processors = []
            if copy != "off":
                from textgen.decoding.copy import copy_processors

                sources = [adapter.source_ids(rows[i][1] or "") for i in todo]
                processors = copy_processors(adapter, sources, copy, max_new_tokens=config.max_new_tokens)
            hyps = generate(adapter, [inputs[i] for i in todo], config, processors=processors, on_step=on_step)
            for i, hs in zip(todo, hyps):
                results[i] = _Row(len(inputs[i]), [_Choice(adapter.decode(h.token_ids), h.finished, len(h.token_ids)) for h in hs])
        except Exception as exc:  # noqa: BLE001 -- find the row that fails; the others are answered
            if len(todo) == 1:
                results[todo[0]] = _Row(len(inputs[todo[0]]), [], f"{type(exc).__name__}: {exc}")
            else:
                for i in todo:
                    results[i] = _chat_rows(adapter, config, copy, [rows[i]])[0]
    return [results[i] for i in range(len(rows))]


# ---------------------------------------------------------------------- responses
def _usage(rows: list[_Row]) -> dict[str, int]:
    prompt = sum(r.prompt_tokens for r in rows)
    completion = sum(c.tokens for r in rows for c in r.choices)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _check_rows(rows: list[_Row], what: str) -> None:
    for i, row in enumerate(rows):
        if row.error is not None:
            raise ApiError(row.status, f"{what} {i}: {row.error}" if len(rows) > 1 else row.error,
                           "invalid_request_error" if row.status == 400 else "server_error")


def _finish(choice: _Choice, stopped: bool) -> str:
    return "stop" if stopped or choice.finished else "length"


def _stream(state: State, batcher: Any, work: Callable[..., list[_Row]], chunk: Callable[..., dict[str, Any]],
            stops: list[str], per_row: int, first: dict[str, Any] | None = None) -> StreamingResponse:
    """Server-sent events of a streamed decoding: ``work(on_text, cancelled)`` runs in the model's
    thread, calling ``on_text`` with new text of choice 0; the other choices come whole at the end.
    ``chunk(index, text, finish)`` makes one event. The client leaving (or a stop string) stops the
    decoding at its next token."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    cancelled = threading.Event()
    done = object()

    def on_text(piece: str) -> None:
        if cancelled.is_set():
            raise _Aborted
        loop.call_soon_threadsafe(queue.put_nowait, piece)

    def run() -> list[_Row] | None:
        if cancelled.is_set():
            return None
        try:
            return work(on_text)
        except _Aborted:
            return None

    future = asyncio.ensure_future(batcher.call(run))
    future.add_done_callback(lambda _: queue.put_nowait(done))

    async def events() -> AsyncIterator[str]:
        streamed = _ChoiceText(stops)
        deadline = loop.time() + state.settings.timeout
        try:
            if first is not None:
                yield f"data: {dumps(first)}\n\n"
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), max(0.0, deadline - loop.time()))
                except asyncio.TimeoutError:
                    yield f"data: {dumps(error_body(504, 'the request took longer than the server --timeout', 'timeout'))}\n\n"
                    return
                if item is done:
                    break
                piece = streamed.add(item)
                if piece:
                    yield f"data: {dumps(chunk(0, piece, None))}\n\n"
                if streamed.stopped:
                    cancelled.set()
            try:
                rows = future.result()
            except Exception as exc:  # noqa: BLE001 -- said in the stream: the headers are sent
                yield f"data: {dumps(error_body(500, f'{type(exc).__name__}: {exc}'))}\n\n"
                return
            if rows is None:  # stopped by a stop string
                yield f"data: {dumps(chunk(0, '', 'stop'))}\n\n"
            else:
                bad = next((r.error for r in rows if r.error is not None), None)
                if bad is not None:
                    yield f"data: {dumps(error_body(500, bad))}\n\n"
                    return
                for r, row in enumerate(rows):
                    for c, choice in enumerate(row.choices):
                        index = r * per_row + c
                        if index == 0:
                            rest = streamed.finish(choice.text)
                            if rest:
                                yield f"data: {dumps(chunk(0, rest, None))}\n\n"
                            yield f"data: {dumps(chunk(0, '', _finish(choice, streamed.stopped)))}\n\n"
                        else:
                            text, stopped = _cut(choice.text, stops)
                            yield f"data: {dumps(chunk(index, text, None))}\n\n"
                            yield f"data: {dumps(chunk(index, '', _finish(choice, stopped)))}\n\n"
            yield "data: [DONE]\n\n"
        finally:
            cancelled.set()  # the client is gone (or done): a decoding still running stops

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def add_openai_routes(app: FastAPI, state: State) -> None:
    served = state.served

    @app.post("/v1/completions", responses=ERRORS, summary="OpenAI completions: the continue task on the prompt")
    async def completions(req: CompletionRequest) -> Any:
        _check_extras(req)
        stops = _stops(req.stop)
        model = state.lookup(served.model, req.model, "continue")
        options = _decoding(req, req.max_tokens)
        if req.heal is not None:
            options["heal"] = req.heal
        sj = await state.job(model, "continue", options)
        prompts = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
        if not prompts:
            raise ApiError(400, "prompt: give a text (or a list of texts)")
        records = [make_record(i, p) for i, p in enumerate(prompts)]
        for rec in records:
            if rec.error is not None:
                raise ApiError(400, f"prompt {rec.id}: {rec.error}" if len(records) > 1 else f"prompt: {rec.error}")
        created, rid, n = int(time.time()), _ids("cmpl"), sj.job.config.num_return_sequences

        def chunk(index: int, text: str, finish: str | None) -> dict[str, Any]:
            return {"id": rid, "object": "text_completion", "created": created, "model": model.name,
                    "choices": [{"index": index, "text": text, "logprobs": None, "finish_reason": finish}]}

        if req.stream:
            return _stream(state, model.batcher, lambda on_text: _completion_rows(sj.job, records, on_text), chunk, stops, n)
        seeded = sj.job.config.do_sample and sj.job.config.seed is not None
        key = ("completions", sj.key, id(records) if seeded else None)
        rows = await state.timed(model.batcher.submit(key, lambda recs: _completion_rows(sj.job, recs), records))
        _check_rows(rows, "prompt")
        choices = []
        for r, row in enumerate(rows):
            for c, choice in enumerate(row.choices):
                text, stopped = _cut(choice.text, stops)
                choices.append({"index": r * n + c, "text": text, "logprobs": None, "finish_reason": _finish(choice, stopped)})
        return JSON({"id": rid, "object": "text_completion", "created": created, "model": model.name,
                             "choices": choices, "usage": _usage(rows)})

    @app.post("/v1/chat/completions", responses=ERRORS, summary="OpenAI chat completions with the model's chat template")
    async def chat_completions(req: ChatRequest) -> Any:
        from textgen.decoding.config import build_config

        _check_extras(req)
        stops = _stops(req.stop)
        model = state.lookup(served.chat_model, req.model)
        if not model.chat:
            raise ApiError(400, f"model {model.name!r} has no chat template: use /v1/completions or /v1/tasks")
        messages = []
        for i, m in enumerate(req.messages):
            role = _ROLES.get(m.role)
            if role is None:
                raise ApiError(400, f"messages.{i}.role: {m.role!r} is not supported (system, user, assistant)")
            messages.append({"role": role, "content": _content(m.content, i)})
        copy = req.copy_mode or "off"
        if copy not in ("off", "text", "span"):
            raise ApiError(400, f"copy must be off, text or span, not {copy!r}")
        if copy != "off" and not req.source:
            raise ApiError(400, f"copy={copy} needs a \"source\" text to copy from")
        asked = req.max_completion_tokens or req.max_tokens
        adapter = model.adapter
        try:
            config = build_config({"do_sample": True, "max_new_tokens": _fit(adapter, DEFAULT_CHAT_TOKENS)}, _decoding(req, asked))
            adapter.input_limit(config.max_new_tokens)
        except (ValueError, TypeError) as exc:
            raise ApiError(400, f"decoding settings: {exc}" if asked is None else f"{exc}; lower max_tokens") from None
        created, rid, n = int(time.time()), _ids("chatcmpl"), config.num_return_sequences
        rows_in = [(messages, req.source)]

        def chunk(index: int, text: str, finish: str | None) -> dict[str, Any]:
            delta = {"content": text} if text or finish is None else {}
            return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model.name,
                    "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}

        if req.stream:
            from textgen.tasks.streaming import TextStream

            first = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model.name,
                     "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                                  "finish_reason": None}]}
            return _stream(state, model.batcher,
                           lambda on_text: _chat_rows(adapter, config, copy, rows_in, TextStream(adapter.decode, on_text)),
                           chunk, stops, n, first)
        seeded = config.do_sample and config.seed is not None
        key = ("chat", str(model.info.path), canonical(asdict(config)), copy, id(rows_in) if seeded else None)
        rows = await state.timed(model.batcher.submit(key, lambda rs: _chat_rows(adapter, config, copy, rs), rows_in))
        _check_rows(rows, "messages")
        choices = []
        for c, choice in enumerate(rows[0].choices):
            text, stopped = _cut(choice.text, stops)
            choices.append({"index": c, "message": {"role": "assistant", "content": text}, "logprobs": None,
                            "finish_reason": _finish(choice, stopped)})
        return JSON({"id": rid, "object": "chat.completion", "created": created, "model": model.name,
                             "choices": choices, "usage": _usage(rows)})


def _content(content: Any, i: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for part in content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise ApiError(400, f"messages.{i}.content: only text parts are supported")
        texts.append(part["text"])
    return "".join(texts)


def _fit(adapter: Any, tokens: int) -> int:
    """``tokens``, halved until it leaves the prompt room in the model's window."""
    while tokens > 1:
        try:
            room = adapter.input_limit(tokens)
        except ValueError:
            room = 0
        if room is None or room >= tokens:
            return tokens
        tokens //= 2
    return tokens
