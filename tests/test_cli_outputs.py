"""Where a run writes (docs/cli.md): every output path checked before the model loads, a full
disk or a failed write reported in one line, the input never overwritten (not through a hard link,
not through standard input or output), one run at a time per output file, and a directory run that
never reads its own outputs.

Each test reproduces a problem an adversarial pass found (issue 10) through the real command line:
typer's CliRunner in-process, a subprocess where a shell redirection or a second process is the
point. Tiny random models; the outputs are gibberish, so the tests check files, messages and exit
codes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SENTENCES, jsonl, one_line_error, run, subprocess_env

TEXTGEN = shutil.which("textgen", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
needs_script = pytest.mark.skipif(TEXTGEN is None, reason="the textgen console script is not installed (pip install -e .)")
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

ARTICLES = [
    "今天上午，市图书馆新馆正式向读者开放，馆内藏书超过一百万册。",
    "春天到了，公园里的花都开了，很多市民带着孩子去散步。",
    "学生们在实验室里认真地做化学实验。",
    "新的地铁线路明年通车，将方便城市东部居民出行。",
]
ARTICLE = ARTICLES[0]


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The models a run loaded (still loading them for real)."""
    from textgen.runner import Runner

    calls: list[str] = []
    real = Runner.model

    def model(self, info, kind):
        calls.append(str(info.path))
        return real(self, info, kind)

    monkeypatch.setattr(Runner, "model", model)
    return calls


# ---------------------------------------------------------------------- output paths
def _not_a_directory(tmp_path: Path) -> list[str]:
    (tmp_path / "file").write_text("x", encoding="utf-8")
    return ["-o", str(tmp_path / "file" / "out.txt")]


def _read_only(tmp_path: Path) -> list[str]:
    if not ROOT:
        target = tmp_path / "ro.txt"
        target.write_text("", encoding="utf-8")
        target.chmod(0o444)
        return ["-o", str(target)]
    if not Path("/sys/kernel").is_dir():
        pytest.skip("running as root without /sys: no read-only place to write to")
    return ["-o", "/sys/kernel/textgen-test-output.txt"]  # sysfs refuses new files even to root


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda tmp: ["-o", str(tmp)], "is a directory"),
        (_not_a_directory, "not a directory"),
        (lambda tmp: ["--output-dir", str(tmp / "in.txt")], "not a directory"),
        (_read_only, "cannot write"),
    ],
    ids=["o-is-a-folder", "o-under-a-file", "output-dir-is-a-file", "o-read-only"],
)
def test_bad_output_paths_are_refused_before_the_model_loads(make, words: str, tiny_model: Path, tmp_path: Path, loads):
    (tmp_path / "in.txt").write_text(ARTICLES[0], encoding="utf-8")
    result = run("title", "-m", tiny_model, "-i", tmp_path / "in.txt", *make(tmp_path))
    assert words in one_line_error(result, 2)
    assert loads == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_a_full_disk_is_one_line(tiny_model: Path):
    result = run("title", "-m", tiny_model, "-o", "/dev/full", ARTICLES[0])
    line = one_line_error(result, 1)
    assert "/dev/full" in line and "No space left" in line


# ---------------------------------------------------------------------- the input is never overwritten
@needs_script
def test_standard_input_that_is_the_output_file_is_refused(tiny_model: Path, tmp_path: Path):
    lines = tmp_path / "p.txt"
    lines.write_text("\n".join(ARTICLES * 5) + "\n", encoding="utf-8")
    before = lines.read_bytes()
    with lines.open("rb") as stdin:
        proc = subprocess.run(
            [TEXTGEN, "title", "-m", str(tiny_model), "--lines", "-o", str(lines)],
            stdin=stdin, capture_output=True, env=subprocess_env(), timeout=60,
        )
    assert proc.returncode == 2, proc.stderr.decode()
    assert "standard input" in proc.stderr.decode() and len(proc.stderr.decode().strip().splitlines()) == 1
    assert lines.read_bytes() == before
    with lines.open("rb") as stdin, lines.open("ab") as stdout:  # `< p.txt >> p.txt`
        proc = subprocess.run(
            [TEXTGEN, "title", "-m", str(tiny_model), "--lines"], stdin=stdin, stdout=stdout,
            stderr=subprocess.PIPE, env=subprocess_env(), timeout=60,
        )
    assert proc.returncode == 2 and "standard output" in proc.stderr.decode()
    assert lines.read_bytes() == before


def test_a_hard_link_to_the_input_is_refused_as_output(tiny_model: Path, tmp_path: Path, loads):
    src = tmp_path / "in.txt"
    src.write_text(ARTICLES[0], encoding="utf-8")
    os.link(src, tmp_path / "link.txt")
    result = run("title", "-m", tiny_model, "-i", src, "-o", tmp_path / "link.txt")
    assert "is the input file" in one_line_error(result, 2)
    assert src.read_text(encoding="utf-8") == ARTICLES[0] and loads == []


# ---------------------------------------------------------------------- two runs, one output file
@pytest.mark.skipif(sys.platform == "win32", reason="flock: Linux and other Unix systems")
def test_a_second_run_cannot_write_the_file_another_run_is_writing(tiny_model: Path, tmp_path: Path):
    import fcntl

    out = tmp_path / "out.jsonl"
    out.write_text('{"id": 1, "outputs": [], "task": "title"}\n', encoding="utf-8")
    with out.open("rb") as other:  # another run holds the file (flock locks belong to open files)
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        second = run("continue", "-m", tiny_model, "-f", "jsonl", "-o", out, "第二个进程")
        assert second.exit_code == 2 and "being written by another textgen run" in second.stderr
        assert out.read_text(encoding="utf-8") == '{"id": 1, "outputs": [], "task": "title"}\n'
    after = run("continue", "-m", tiny_model, "-f", "jsonl", "-o", out, "第二个进程")
    assert after.exit_code == 0 and [r["task"] for r in jsonl(out.read_text(encoding="utf-8"))] == ["continue"]


# ---------------------------------------------------------------------- directory runs
def test_a_second_directory_run_does_not_read_its_own_outputs(tiny_model: Path, tmp_path: Path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_text(ARTICLE, encoding="utf-8")
    (tree / "b.txt").write_text(SENTENCES[1], encoding="utf-8")
    for _ in range(2):
        result = run("title", "-m", tiny_model, "-i", tree, "--output-dir", tree / "out")
        assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*.txt")) == ["a.txt", "b.txt", "out/a.txt", "out/b.txt"]
    first = run("title", "-m", tiny_model, "-i", tree, "--glob", "?.txt", "-o", tree / "c.txt")
    assert first.exit_code == 0 and len(first.stdout) == 0
    ids = [line.split("\t")[0] for line in (tree / "c.txt").read_text(encoding="utf-8").splitlines()]
    assert ids == ["a.txt", "b.txt", "out/a.txt", "out/b.txt"]  # not c.txt, created for this run
    again = run("title", "-m", tiny_model, "-i", tree, "--glob", "?.txt", "-o", tree / "c.txt")
    assert again.exit_code == 2 and "is one of the input files" in again.stderr  # c.txt may be an input now


def test_two_inputs_that_would_share_an_output_file_are_refused(tiny_model: Path, tmp_path: Path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text(ARTICLE, encoding="utf-8")
    (tmp_path / "in" / "a.md").write_text(SENTENCES[1], encoding="utf-8")
    result = run("title", "-m", tiny_model, "-i", tmp_path / "in", "--glob", "a.*", "--output-dir", tmp_path / "out")
    assert result.exit_code == 2 and "would both write" in result.stderr and not (tmp_path / "out" / "a.txt").exists()


def test_text_output_of_a_directory_run_names_each_file(tiny_model: Path, tmp_path: Path):
    (tmp_path / "a.txt").write_text(ARTICLE, encoding="utf-8")
    (tmp_path / "b.txt").write_text(SENTENCES[1], encoding="utf-8")
    result = run("title", "-m", tiny_model, "-i", tmp_path)
    assert result.exit_code == 0, result.output
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["a.txt", "b.txt"]
