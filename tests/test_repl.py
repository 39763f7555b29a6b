"""The REPL: scripted through stdin (CliRunner) for its commands, and through a pseudo-terminal
(pexpect) for line editing, history, Ctrl-C and Ctrl-D as a person uses it."""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from pathlib import Path

import pexpect
import pytest
from conftest import save_tiny_model, subprocess_env
from textgen.cli.app import app
from typer.testing import CliRunner

TEXTGEN = shutil.which("textgen", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


def repl(tiny_model: Path, script: str, *args: str):
    return CliRunner().invoke(app, ["repl", "--model", str(tiny_model), *args], input=script)


def test_scripted_session_runs_commands_and_generates(tiny_model: Path):
    result = repl(tiny_model, ":help\n今天上午，新馆正式开放。\n:set beam=2 max_new_tokens=3\n:set\n:quit\n不会运行\n")
    assert result.exit_code == 0, result.output
    assert ":paste" in result.stderr  # the help
    assert len(result.stdout.splitlines()) == 1  # one title; nothing after :quit
    assert "num_beams=2" in result.stderr and "max_new_tokens=3" in result.stderr


def test_bad_commands_report_and_keep_going(tiny_model: Path):
    commands = [":set top_p=7", ":set nonsense=1", ":set beam", ":task nope", ":model no-such-model"]
    result = repl(tiny_model, "\n".join([*commands, ":frobnicate", "春天到了。"]) + "\n")
    assert result.exit_code == 0  # end of input leaves like Ctrl-D
    err = result.stderr
    assert "top_p must be in (0, 1]" in err and "unknown decoding option(s) ['nonsense']" in err
    assert ":set beam=VALUE" in err and "unknown task 'nope'" in err
    assert "model 'no-such-model' not found" in err and "unknown command :frobnicate" in err
    assert len(result.stdout.splitlines()) == 1  # the settings were left unchanged, so it still generates


def test_task_switch_paste_and_task_options(tiny_model: Path):
    script = ":task continue\n:set heal=false seed=3\n:set\n:paste\n第一行\n第二行\n\n"
    result = repl(tiny_model, script, "--task", "title")
    assert result.exit_code == 0, result.output
    assert "task continue" in result.stderr and "heal=False" in result.stderr and "seed=3" in result.stderr
    assert result.stdout.strip()


def test_unknown_start_model_is_a_usage_error(tmp_path: Path):
    result = CliRunner().invoke(app, ["repl", "--model", str(tmp_path / "none")])
    assert result.exit_code == 2 and "no such file or directory" in result.stderr


# ---------------------------------------------------------------------- settings, paste and messages (issue 10)
def test_repl_keeps_set_values_with_their_task(tiny_model: Path):
    result = repl(tiny_model, ":set beam=5\n:task continue\n:set\n:task title\n:set\n")
    assert result.exit_code == 0, result.output
    continued, title = result.stderr.split("task continue, model")[2], result.stderr.split("task title, model")[-1]
    assert "num_beams=1 do_sample=True" in continued  # continuation keeps sampling
    assert "num_beams=5" in title and "its own :set values are back" in result.stderr


def test_repl_takes_decoding_flags_and_rejects_bad_values(tiny_model: Path):
    result = repl(tiny_model, ":set\n:set copy=maybe\n:set temperature=nan\n:set top_p=0.5\n", "--beam", "2")
    assert result.exit_code == 0, result.output
    assert "num_beams=2" in result.stderr
    assert "copy must be one of" in result.stderr and "temperature must be a finite number" in result.stderr
    assert "top_p is ignored: it acts in sampling" in result.stderr


def test_repl_paste_ended_by_ctrl_d_is_answered(tiny_model: Path):
    result = repl(tiny_model, ":paste\n第一行\n第二行")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 1 and "Traceback" not in result.output


def test_repl_paste_cancelled_by_ctrl_c_stays_in_the_repl(
    tiny_model: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    """Ctrl-C arrives as KeyboardInterrupt from the line reader (prompt_toolkit's behaviour)."""
    import textgen.cli.repl as repl_module

    script = iter([":paste", "第一行", KeyboardInterrupt, "春天到了。", EOFError])

    def read(prompt: str) -> str:
        item = next(script)
        if isinstance(item, type):
            raise item
        return item

    monkeypatch.setattr(repl_module, "line_reader", lambda: read)
    assert repl_module.run_repl("title", model=str(tiny_model)) == 0
    out, err = capsys.readouterr()
    assert "paste cancelled (1 lines dropped)" in err
    assert len(out.splitlines()) == 1  # the REPL went on and answered the next line


def test_repl_messages_name_its_own_commands(tiny_model: Path, tmp_path: Path):
    lm = save_tiny_model(tmp_path / "lm", tasks=["continue"])
    result = repl(tiny_model, f":model {lm}\n")
    assert ":model" in result.stderr and "--model" not in result.stderr


# ---------------------------------------------------------------------- on a terminal (pexpect)
@pytest.fixture(scope="module")
def long_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Room for thousands of positions, so a generation runs long enough to be interrupted."""
    return save_tiny_model(tmp_path_factory.mktemp("long") / "long", max_positions=4096)


def prompt(task: str) -> str:
    """A fresh, empty prompt. prompt_toolkit draws the prompt's trailing space as a cursor move, so
    a fresh "title> " reads "title>" + escape, while a submitted line re-drawn reads "title> text"."""
    return re.escape(f"{task}>") + r"\x1b\["


def spawn(*args: str) -> pexpect.spawn:
    env = subprocess_env({"PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm"})
    # codec_errors: Ctrl-C can interrupt a streamed write in the middle of a character (docs/chat.md)
    return pexpect.spawn(TEXTGEN, list(args), env=env, encoding="utf-8", codec_errors="replace", timeout=60,
                         dimensions=(40, 200))


@pytest.mark.skipif(TEXTGEN is None, reason="the textgen console script is not installed")
def test_terminal_session_ctrl_c_cancels_and_ctrl_d_quits(long_model: Path, user_env: dict[str, str]):
    child = spawn("repl", "--task", "title", "--model", str(long_model))
    child.expect(prompt("title"))
    child.sendline("春天到了，公园里的花都开了。")  # loads torch and the model, answers
    child.expect(prompt("title"))
    child.sendline(":set beam=1 min_new_tokens=4000 max_new_tokens=4000")
    child.expect(prompt("title"))
    child.sendline("新的地铁线路明年通车。")
    child.expect("新的地铁线路明年通车。")  # the submitted line re-drawn: generating now
    time.sleep(1.0)
    started = time.monotonic()
    child.sendcontrol("c")
    child.expect("cancelled")
    child.expect(prompt("title"))
    assert time.monotonic() - started < 5  # the 4000-token generation was cut short
    child.sendline(":set min_new_tokens=1 max_new_tokens=2")
    child.expect(prompt("title"))
    child.send("\x1b[A")  # up arrow: the history brings back the last line
    child.expect(":set min_new_tokens=1 max_new_tokens=2")
    child.sendcontrol("u")  # clear the line
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    history = Path(user_env["XDG_STATE_HOME"]) / "textgen" / "history"
    assert "新的地铁线路明年通车。" in history.read_text(encoding="utf-8")


@pytest.mark.skipif(TEXTGEN is None, reason="the textgen console script is not installed")
def test_task_command_on_a_terminal_without_input_starts_the_repl(tiny_model: Path):
    child = spawn("continue", "--model", str(tiny_model), "--max-new-tokens", "3")
    child.expect(prompt("continue"))
    child.sendline("我们在山顶看到了")
    child.expect(prompt("continue"))
    child.sendline(":quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_bad_set_values_are_one_plain_line_at_set_and_keep_the_settings(tiny_model: Path):
    """Wrong types, a length the model has no room for and an option the model cannot serve are
    refused at :set, in plain words; the settings in force stay, so the next text still runs."""
    commands = [":set beam=x", ":set banned_token_ids=x", ":set max_new_tokens=1000", ":set method=clause",
                ":set beam=2", "春天到了。", ":set"]
    result = repl(tiny_model, "\n".join(commands) + "\n")
    assert result.exit_code == 0, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("textgen: error:")]
    assert len(errors) == 4, result.stderr
    for line in errors:
        assert "not supported between" not in line and "Error:" not in line and "invalid literal" not in line
    assert "num_beams must be an integer" in errors[0] and "banned_token_ids" in errors[1]
    assert "max_new_tokens=1000" in errors[2] and "clause" in errors[3]
    assert len(result.stdout.splitlines()) == 1  # the text was answered with the settings kept
    assert "num_beams=2" in result.stderr and "max_new_tokens=1000" not in result.stderr.split("task title, model")[-1]
