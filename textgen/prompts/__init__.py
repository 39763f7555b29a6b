"""Chat prompts: data the tasks own and users override.

A chat model (``textgen.models.chat``) serves the seq2seq-style tasks by rendering a prompt around
the input with the model's own chat template. Each task ships its prompts (``Task.prompts``;
``textgen.tasks.PROMPTS`` gathers them); a user overrides them, strongest first, with
``--prompt-file FILE`` and with ``[prompts.<key>]`` tables in the config file. Both are TOML files
of the shape ``to_toml`` writes (``textgen models prompts`` prints the prompts in force) and may
give only some keys: a table that sets only ``user`` keeps the shipped ``system`` message. A
replacement must keep the placeholders of the shipped prompt (``{text}`` is where the input goes).

No torch here: the command line reads and checks prompts before any model loads.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

_PLACEHOLDER = re.compile(r"\{(text|answer|question)\}")


class PromptError(ValueError):
    """A prompt file or table is unusable; the message is one line naming where and why."""


@dataclass(frozen=True)
class Prompt:
    """One task's prompt: the user message (with placeholders), an optional system message, and
    an optional ``answer_start`` the assistant's answer begins with (a forced prefix)."""

    user: str
    system: str = ""
    answer_start: str = ""

    def messages(self, **values: str) -> list[dict[str, str]]:
        """Chat messages with the placeholders replaced (only ``{text}``, ``{answer}``,
        ``{question}``; other braces stay as written)."""
        missing = sorted(set(placeholders(self.user + self.system)) - set(values))
        if missing:
            raise ValueError(f"the prompt needs {', '.join(missing)}")
        fill = lambda s: _PLACEHOLDER.sub(lambda m: values[m.group(1)], s)  # noqa: E731
        user = {"role": "user", "content": fill(self.user)}
        return [{"role": "system", "content": fill(self.system)}, user] if self.system else [user]


def placeholders(template: str) -> list[str]:
    return _PLACEHOLDER.findall(template)


def read_prompt_file(path: str | Path, shipped: Mapping[str, Prompt]) -> dict[str, Any]:
    """The tables of a user's prompt file (TOML), checked against the known keys."""
    path = Path(path).expanduser()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PromptError(f"cannot read prompt file {path}: {exc}") from None
    merge(shipped, data, str(path))  # check it now, with the file named in the message
    return data


def load_prompts(shipped: Mapping[str, Prompt], *layers: Mapping[str, Any]) -> dict[str, Prompt]:
    """The shipped prompts, then each layer of ``{key: {user, system, answer_start}}`` tables
    (the config file's ``[prompts]``, then a ``--prompt-file``) over them."""
    prompts = dict(shipped)
    for layer in layers:
        prompts = merge(prompts, layer, "prompts")
    return prompts


def merge(base: Mapping[str, Prompt], tables: Mapping[str, Any], where: str) -> dict[str, Prompt]:
    """``base`` with ``tables`` applied key by key; a bad key, field or template is a
    ``PromptError`` naming ``where``. Only keys of ``base`` exist, and each keeps the
    placeholders of its ``base`` prompt."""
    out = dict(base)
    names = {f.name for f in fields(Prompt)}
    for key, table in tables.items():
        if key not in base:
            raise PromptError(f"{where}: unknown prompt {key!r} (known: {', '.join(base)})")
        if not isinstance(table, Mapping):
            raise PromptError(f"{where}: [{key}] must be a table with user, system, answer_start")
        unknown = sorted(set(table) - names)
        if unknown:
            raise PromptError(f"{where}: [{key}] has unknown field(s) {unknown} (known: {', '.join(sorted(names))})")
        for name, value in table.items():
            if not isinstance(value, str):
                raise PromptError(f"{where}: [{key}] {name} must be a string, not {value!r}")
        prompt = replace(out[key], **table)
        have = set(placeholders(prompt.user + prompt.system))
        missing = [p for p in dict.fromkeys(placeholders(base[key].user + base[key].system)) if p not in have]
        if missing:
            holes = ", ".join("{" + p + "}" for p in missing)
            raise PromptError(f"{where}: [{key}] user must contain {holes} (where the input goes)")
        out[key] = prompt
    return out


def to_toml(prompts: Mapping[str, Prompt]) -> str:
    """``prompts`` as a TOML file a user can edit and pass back with ``--prompt-file``."""
    blocks = []
    for key, prompt in prompts.items():
        lines = [f"[{key}]"]
        for f in fields(Prompt):
            value = getattr(prompt, f.name)
            if value or f.name == "user":
                lines.append(f"{f.name} = {_toml_string(value)}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _toml_string(value: str) -> str:
    """A TOML basic string (escapes make any text round-trip, newlines included)."""
    named = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t"}
    escaped = "".join(
        named.get(ch) or (f"\\u{ord(ch):04x}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch) for ch in value
    )
    return f'"{escaped}"'
