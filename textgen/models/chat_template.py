"""Render a model's chat template (Jinja) safely: GGUF files carry theirs as untrusted metadata.

A chat template is code written by whoever made the model file. It is rendered only in Jinja's
``ImmutableSandboxedEnvironment`` (no attribute access to Python internals, no mutation of the
messages), configured as transformers' ``apply_chat_template`` configures it, so templates written
for Hugging Face tokenizers render the same: ``trim_blocks`` and ``lstrip_blocks``, the
``loopcontrols`` extension, a ``tojson`` filter that keeps non-ASCII text as it is, and the globals
``raise_exception``, ``strftime_now``, ``namespace`` (no underscore-prefixed names) and ``dict``.
(llama-cpp-python once rendered GGUF templates in an unsandboxed environment: CVE-2024-34359.)

Unlike Jinja's default sandbox, an unsafe attribute access fails at once instead of rendering as
an empty string, and repeating a string or list beyond a million items, or raising a number to a
power above 4096, fails too. A template can still spend CPU time (nested loops): render templates
from files you chose.

Any failure, a parse error, an unsafe access, ``raise_exception`` or any other exception while
rendering, raises ``ChatTemplateError`` (a ValueError) with a one-line message.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.ext
from jinja2.exceptions import SecurityError, TemplateError, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

_MAX_ITEMS = 1_000_000  # longest string or list a template may build with `*`
_MAX_EXPONENT = 4096


class ChatTemplateError(ValueError):
    """A chat template that does not parse, fails, or tries something unsafe."""


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(f"access to attribute {attribute!r} of a {type(obj).__name__!r} object is unsafe")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > _MAX_ITEMS:
                    raise SecurityError(f"repeating a sequence {n} times builds more than {_MAX_ITEMS} items")
        elif operator == "**" and isinstance(right, int) and abs(right) > _MAX_EXPONENT:
            raise SecurityError(f"exponent {right} is larger than {_MAX_EXPONENT}")
        return super().call_binop(context, operator, left, right)


def _raise_exception(message: Any) -> None:
    raise TemplateError(str(message))


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class _Namespace(jinja2.utils.Namespace):
    """``namespace(...)`` whose attribute names may not start with an underscore."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # noqa: N805 -- Jinja's own signature trick
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise SecurityError(f"a template namespace cannot hold the underscore name {name!r}")


class _Dict:
    """``dict(...)`` for templates, without the class object itself."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict:
        return dict.fromkeys(*args, **kwargs)


@lru_cache(maxsize=1)
def _environment() -> _Sandbox:
    env = _Sandbox(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.globals.pop("lipsum", None)  # generates text of any requested size
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["namespace"] = _Namespace
    env.globals["dict"] = _Dict()
    return env


@lru_cache(maxsize=16)
def _compile(template: str) -> jinja2.Template:
    return _environment().from_string(template)


def _one_line(text: str, limit: int = 300) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render_chat_template(
    template: str,
    messages: list[dict[str, str]],
    *,
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
    **extra: Any,
) -> str:
    """``template`` rendered over ``messages`` (``[{"role": ..., "content": ...}, ...]``), with
    ``add_generation_prompt``, ``bos_token``, ``eos_token`` and any ``extra`` variables (``tools``,
    ``enable_thinking`` ...) as transformers passes them. Raises ChatTemplateError."""
    if not isinstance(template, str):
        raise ChatTemplateError(f"a chat template must be a string, not {type(template).__name__}")
    if not isinstance(messages, list):
        raise ChatTemplateError(f"messages must be a list, not {type(messages).__name__}")
    try:
        compiled = _compile(template)
    except TemplateSyntaxError as e:
        raise ChatTemplateError(f"the chat template does not parse: {_one_line(e.message or str(e))} (line {e.lineno})") from None
    except Exception as e:  # noqa: BLE001 -- anything else the compiler raises on hostile input
        raise ChatTemplateError(f"the chat template does not compile: {_one_line(str(e)) or type(e).__name__}") from None
    try:
        return compiled.render(
            messages=messages, add_generation_prompt=add_generation_prompt, bos_token=bos_token,
            eos_token=eos_token, **extra,
        )
    except SecurityError as e:
        raise ChatTemplateError(f"the chat template tried something unsafe: {_one_line(str(e))}") from None
    except TemplateError as e:
        raise ChatTemplateError(f"the chat template failed: {_one_line(str(e)) or type(e).__name__}") from None
    except Exception as e:  # noqa: BLE001 -- a template can raise anything Python can
        raise ChatTemplateError(f"the chat template failed ({type(e).__name__}: {_one_line(str(e))})") from None
