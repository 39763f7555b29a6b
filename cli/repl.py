"""``textgen repl``: type a text, get the task's output; change task, model and settings as you go.

On a terminal, prompt_toolkit gives line editing and a history kept in
``$XDG_STATE_HOME/textgen/history`` (``~/.local/state/textgen/history``). With stdin not a terminal
the same commands are read line by line without prompts, so a REPL session can be scripted.
Ctrl-C cancels a running generation (or clears the line) and returns to the prompt; Ctrl-D or
``:quit`` leaves with status 0.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any

import typer

from textgen.config import Settings
from textgen.io import format_text, make_record
from textgen.models.registry import ModelInfo
from textgen.tasks import PLANNED, TASKS

from .console import error, fail, say, warn
from .engine import Engine, EngineError, check_task, decoding_config, pick_device, resolve_model, settings
from .options import DECODING_FLAGS, Device

HELP = """\
Type a text and press Enter to run the task on it. Commands:
  :task NAME         switch task ({tasks})
  :model NAME        switch model (embedded name, directory or cached hub id)
  :set KEY=VALUE ... set decoding options (beam=4, sample=true, top_p=0.9, max_new_tokens=64, ...)
                     or task options (heal=false); :set alone shows the settings in force
  :paste             enter a multi-line text, ended by an empty line
  :help              this help
  :quit              leave (Ctrl-D too); Ctrl-C cancels a running generation"""


@dataclass
class Repl:
    """The REPL's state: what the user chose, and the engine that loads models on first use."""

    task: str
    model: str | None  # None: the task's default model
    user: Settings
    info: ModelInfo
    device: str
    threads: int | None
    allow_pickle: bool
    overrides: dict[str, Any] = field(default_factory=dict)  # DecodingConfig fields set by flags or :set
    options: dict[str, Any] = field(default_factory=dict)  # task options set by flags or :set
    engine: Engine | None = None

    # ------------------------------------------------------------------ commands
    def command(self, line: str, read: Callable[[str], str]) -> bool:
        """Run a ``:command`` line; False when the REPL should end."""
        name, _, arg = line.strip()[1:].partition(" ")
        arg = arg.strip()
        if name in ("quit", "q", "exit"):
            return False
        if name == "help":
            say(HELP.format(tasks=", ".join(TASKS)))
        elif name == "task":
            self.switch_task(arg)
        elif name == "model":
            self.switch_model(arg)
        elif name == "set":
            self.set(arg)
        elif name == "paste":
            self.paste(read)
        else:
            error(f"unknown command :{name} (:help lists them)")
        return True

    def switch_task(self, name: str) -> None:
        if name in PLANNED:
            error(f"task {name!r} is not available yet: it lands in a later issue")
            return
        try:
            check_task(name)
            try:
                info = resolve_model(name, self.model, self.user)
            except EngineError as exc:
                if self.model is None:
                    raise
                info = resolve_model(name, None, self.user)
                warn(f"{exc}; using {info.name!r}")
                self.model = None
        except EngineError as exc:
            error(str(exc))
            return
        self.task, self.info = name, info
        self.options = {k: v for k, v in self.options.items() if k in TASKS[name].options}
        say(f"task {name}, model {info.name}")

    def switch_model(self, spec: str) -> None:
        try:
            self.info = resolve_model(self.task, spec or None, self.user)
        except EngineError as exc:
            error(str(exc))
            return
        self.model = spec or None
        say(f"model {self.info.name} ({self.info.source}: {self.info.path})")

    def set(self, arg: str) -> None:
        if not arg:
            self.show_settings()
            return
        overrides, options = dict(self.overrides), dict(self.options)
        for item in arg.split():
            key, eq, raw = item.partition("=")
            key = key.replace("-", "_")
            if not eq:
                error(f"write :set {key}=VALUE")
                return
            # A string option (a choice such as copy=off) takes the word as written.
            value = raw if isinstance(TASKS[self.task].options.get(key), str) else parse_value(raw)
            if key in TASKS[self.task].options:
                try:
                    options[key] = TASKS[self.task].check_option(key, value)
                except ValueError as exc:
                    error(str(exc))
                    return
            else:
                overrides[DECODING_FLAGS.get(key, key)] = value
        try:
            self.config(overrides)
        except EngineError as exc:
            error(str(exc))
            return
        self.overrides, self.options = overrides, options

    def show_settings(self) -> None:
        config = self.config(self.overrides)
        values = " ".join(f"{f.name}={getattr(config, f.name)}" for f in fields(config))
        opts = " ".join(f"{k}={v}" for k, v in {**TASKS[self.task].options, **self.info.options.get(self.task, {}), **self.options}.items())
        say(f"task {self.task}, model {self.info.name}\n{values}" + (f"\n{opts}" if opts else ""))

    def paste(self, read: Callable[[str], str]) -> None:
        say("paste the text; end it with an empty line")
        lines = []
        while line := read("... "):
            lines.append(line)
        if lines:
            self.generate("\n".join(lines))

    # ------------------------------------------------------------------ generation
    def config(self, overrides: dict[str, Any]) -> Any:
        return decoding_config(self.task, self.info, self.user, overrides)

    def generate(self, text: str) -> None:
        try:
            config = self.config(self.overrides)
            if self.engine is None:
                self.engine = Engine(self.user, pick_device(self.device, self.threads), allow_pickle=self.allow_pickle)
            task = self.engine.task(self.task, self.info)
            task.configure(**{**task.preset, **self.options})
            out = task.run([make_record("repl", text)], config)[0]
        except EngineError as exc:
            error(str(exc))
            return
        except KeyboardInterrupt:
            say("cancelled")
            return
        for message in out.get("warnings", ()):
            warn(message)
        if "error" in out:
            error(out["error"])
        else:
            sys.stdout.write(format_text(out))
            sys.stdout.flush()


def parse_value(raw: str) -> Any:
    """``:set`` values: true/false, none, integers, floats, else the string itself."""
    lowered = raw.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered == "none":
        return None
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def history_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "textgen" / "history"


def line_reader() -> Callable[[str], str]:
    """``read(prompt) -> line``, raising EOFError at the end and KeyboardInterrupt on Ctrl-C."""
    if not sys.stdin.isatty():

        def read_plain(prompt: str) -> str:
            line = sys.stdin.readline()
            if not line:
                raise EOFError
            return line.rstrip("\r\n")

        return read_plain
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    path = history_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        history: Any = FileHistory(str(path))
    except OSError:
        history = InMemoryHistory()
    return PromptSession(history=history).prompt


def run_repl(
    task: str,
    *,
    model: str | None = None,
    overrides: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    device: Device | None = None,
    threads: int | None = None,
    allow_pickle: bool = False,
) -> int:
    """Run the REPL until :quit or end of input; returns the exit status."""
    try:
        user = settings()
        check_task(task)
        info = resolve_model(task, model, user)
    except EngineError as exc:
        fail(str(exc))
    repl = Repl(
        task,
        model,
        user,
        info,
        device=device.value if device else user.device,
        threads=threads or user.threads,
        allow_pickle=allow_pickle,
        overrides=dict(overrides or {}),
        options=dict(options or {}),
    )
    read = line_reader()
    say(f"textgen {task} with model {info.name}; :help for commands, Ctrl-D to quit")
    while True:
        try:
            line = read(f"{repl.task}> ")
        except KeyboardInterrupt:
            continue
        except EOFError:
            return 0
        # Only the command test strips: a prompt's trailing space matters to a continuation.
        if line.strip().startswith(":"):
            if not repl.command(line, read):
                return 0
        elif line.strip():
            repl.generate(line)


def repl_command(
    task: Annotated[str, typer.Option("--task", help=f"Task to start with: {', '.join(TASKS)}.")] = "title",
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model to start with (default: the task's).")
    ] = None,
    device: Annotated[Device | None, typer.Option("--device", help="auto, cpu or cuda.")] = None,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads for torch.")] = None,
    allow_pickle: Annotated[
        bool, typer.Option("--allow-pickle", help="Load pickled weights; pickles can run code.")
    ] = False,
) -> None:
    """Interactive session: line editing, history, :task, :set, :model, :paste, :help, :quit."""
    raise typer.Exit(run_repl(task, model=model, device=device, threads=threads, allow_pickle=allow_pickle))
