"""The guarantees of docs/cli.md, for every task: nothing lost, every bad input a clear error.

Each test reproduces a problem an adversarial pass found (issue 10) through the real command line:
typer's CliRunner in-process, a subprocess where a signal, a shell redirection or a second process
is the point. Tiny random models; the outputs are gibberish, so the tests check ids, counts, files,
messages and exit codes.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import subprocess_env
from textgen.cli.app import app
from typer.testing import CliRunner

import textgen.cli.engine as engine
import textgen.decoding

TEXTGEN = shutil.which("textgen", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
needs_script = pytest.mark.skipif(TEXTGEN is None, reason="the textgen console script is not installed (pip install -e .)")
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

ARTICLES = [
    "今天上午，市图书馆新馆正式向读者开放，馆内藏书超过一百万册。",
    "春天到了，公园里的花都开了，很多市民带着孩子去散步。",
    "学生们在实验室里认真地做化学实验。",
    "新的地铁线路明年通车，将方便城市东部居民出行。",
]


def run(*args: object, input: str | bytes | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def one_line_error(result, code: int = 2) -> str:
    """The run ended with ``code`` and one line on stderr besides the records' warnings (a tiny
    random model's outputs are often cut at max_new_tokens), no traceback; that line."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and (result.exception is None or isinstance(result.exception, SystemExit))
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("textgen: warning: [")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The models a run loaded (still loading them for real)."""
    calls: list[str] = []
    real = engine.load_task

    def load_task(name, path, **kw):
        calls.append(str(path))
        return real(name, path, **kw)

    monkeypatch.setattr(engine, "load_task", load_task)
    return calls


# ---------------------------------------------------------------------- 1. duplicate ids
def test_duplicate_ids_are_made_unique_and_survive_stop_and_resume(tiny_model: Path, tmp_path: Path):
    batch = write_jsonl(tmp_path / "dup.jsonl", [{"id": i, "text": t} for i, t in zip(["a", "dup", "dup", "z"], ARTICLES)])
    out = tmp_path / "out.jsonl"
    first = run("title", "-m", tiny_model, "-i", batch, "-f", "jsonl", "-o", out, "--batch-size", 1)
    assert first.exit_code == 0, first.output
    assert [r["id"] for r in jsonl(out.read_text(encoding="utf-8"))] == ["a", "dup", "dup#2", "z"]
    assert "'dup' repeats" in first.stderr and "dup#2" in first.stderr
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text("".join(lines[:2]), encoding="utf-8")  # stopped after two records
    resumed = run("title", "-m", tiny_model, "-i", batch, "-f", "jsonl", "-o", out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    records = jsonl(out.read_text(encoding="utf-8"))
    assert [r["id"] for r in records] == ["a", "dup", "dup#2", "z"]
    assert records[:2] == [json.loads(line) for line in lines[:2]]  # what was written stays as it was


def test_a_line_number_id_next_to_the_same_explicit_id(tiny_model: Path, tmp_path: Path):
    batch = write_jsonl(tmp_path / "b.jsonl", [{"id": 2, "text": ARTICLES[0]}, {"text": ARTICLES[1]}, {"text": ARTICLES[2]}])
    result = run("title", "-m", tiny_model, "-i", batch, "-f", "jsonl")
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in jsonl(result.stdout)] == [2, "2#2", 3]


# ---------------------------------------------------------------------- 2. output paths
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


def test_a_write_error_mid_run_keeps_what_was_written_and_resumes(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import textgen.cli.output as output

    batch = write_jsonl(tmp_path / "b.jsonl", [{"id": f"r{i}", "text": t} for i, t in enumerate(ARTICLES)])
    out = tmp_path / "out.jsonl"
    real_write, writes = os.write, []

    def write(fd: int, data: bytes) -> int:
        """The disk fills up during the second record: half of it lands, then ENOSPC."""
        writes.append(data)
        if len(writes) == 1:
            return real_write(fd, data)
        if len(writes) == 2:
            return real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(output.os, "write", write)
    result = run("title", "-m", tiny_model, "-i", batch, "-f", "jsonl", "-o", out, "--batch-size", 1)
    line = one_line_error(result, 1)
    assert str(out) in line and "No space left" in line and "--resume" in line
    assert [r["id"] for r in jsonl(out.read_text(encoding="utf-8"))] == ["r0"]  # whole lines only
    monkeypatch.setattr(output.os, "write", real_write)
    resumed = run("title", "-m", tiny_model, "-i", batch, "-f", "jsonl", "-o", out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert [r["id"] for r in jsonl(out.read_text(encoding="utf-8"))] == ["r0", "r1", "r2", "r3"]


# ---------------------------------------------------------------------- 3. unreadable inputs in a directory
def test_an_unreadable_file_or_folder_does_not_stop_a_directory_run(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import textgen.io as tio

    src = tmp_path / "in"
    (src / "locked").mkdir(parents=True)
    (src / "a.txt").write_text(ARTICLES[0], encoding="utf-8")
    (src / "c.txt").write_text(ARTICLES[1], encoding="utf-8")
    (src / "locked" / "d.txt").write_text(ARTICLES[2], encoding="utf-8")
    if ROOT:  # root reads anything chmod forbids: a file whose read fails, a folder whose listing does
        (src / "b.txt").symlink_to("/proc/self/mem")  # reading from offset 0 is an I/O error
        real_scandir = os.scandir

        def scandir(path):
            if Path(path) == src / "locked":
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return real_scandir(path)

        monkeypatch.setattr(tio.os, "scandir", scandir)
    else:
        (src / "b.txt").write_text(ARTICLES[3], encoding="utf-8")
        (src / "b.txt").chmod(0)
        (src / "locked").chmod(0)
    try:
        result = run("title", "-m", tiny_model, "-i", src, "-f", "jsonl")
    finally:
        (src / "locked").chmod(0o755)
    assert result.exit_code == 1, result.output
    records = jsonl(result.stdout)
    assert [(r["id"], "error" in r) for r in records] == [("a.txt", False), ("b.txt", True), ("c.txt", False)]
    assert "cannot read" in records[1]["error"]
    assert "locked" in result.stderr and "cannot read" in result.stderr


# ---------------------------------------------------------------------- 4. reading its own output
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


# ---------------------------------------------------------------------- 5. encodings
@pytest.mark.parametrize("encoding", ["gbk", "gb18030"])
def test_chinese_legacy_encodings_are_detected(encoding: str, tiny_model: Path, tmp_path: Path):
    from textgen.io import read_path

    text = "\n".join(ARTICLES)
    src = tmp_path / "legacy.txt"
    src.write_bytes(text.encode(encoding))
    (rec,) = read_path(src)
    assert rec.text == text and rec.error is None
    result = run("title", "-m", tiny_model, "-i", src, "-f", "jsonl")
    assert result.exit_code == 0, result.output
    assert "gb18030" in result.stderr.lower() and "not valid UTF-8" not in result.stderr


def test_encoding_flag_and_undecodable_input(tiny_model: Path, tmp_path: Path):
    big5 = tmp_path / "big5.txt"
    big5.write_bytes("學生們在實驗室裡認真地做化學實驗，老師在旁邊指導。".encode("big5"))
    named = run("title", "-m", tiny_model, "-i", big5, "--encoding", "big5", "-f", "jsonl")
    assert named.exit_code == 0 and "detected" not in named.stderr and "UTF-8" not in named.stderr
    wrong = run("title", "-m", tiny_model, "-i", big5, "--encoding", "ascii", "-f", "jsonl")
    assert wrong.exit_code == 1 and "not valid ascii" in jsonl(wrong.stdout)[0]["error"]
    assert "unknown encoding" in one_line_error(run("title", "-m", tiny_model, "--encoding", "klingon", "文本"), 2)


@pytest.mark.parametrize(
    "name, data, words",
    [
        ("news.txt.gz", gzip.compress("\n".join(ARTICLES).encode("utf-8")), "gzip"),
        ("photo.txt", bytes(range(256)) * 8, "binary"),
    ],
    ids=["gzip", "binary"],
)
def test_binary_and_compressed_input_are_error_records(name: str, data: bytes, words: str, tiny_model: Path, tmp_path: Path):
    src = tmp_path / name
    src.write_bytes(data)
    result = run("title", "-m", tiny_model, "-i", src, "-f", "jsonl")
    assert result.exit_code == 1, result.output
    (record,) = jsonl(result.stdout)
    assert words in record["error"] and record["outputs"] == []


# ---------------------------------------------------------------------- 6. resume retries failures
def test_resume_retries_the_records_that_failed(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    batch = write_jsonl(tmp_path / "b.jsonl", [{"id": f"r{i}", "text": t} for i, t in enumerate(ARTICLES)])
    out = tmp_path / "out.jsonl"
    real = textgen.decoding.generate

    def flaky(adapter, inputs, config, **kw):
        if any(len(ids) > 12 for ids in inputs):
            raise RuntimeError("out of memory")
        return real(adapter, inputs, config, **kw)

    monkeypatch.setattr(textgen.decoding, "generate", flaky)
    first = run("title", "-m", tiny_model, "-i", batch, "-f", "jsonl", "-o", out)
    failed = [r["id"] for r in jsonl(out.read_text(encoding="utf-8")) if "error" in r]
    assert first.exit_code == 1 and failed
    monkeypatch.setattr(textgen.decoding, "generate", real)
    resumed = run("title", "-m", tiny_model, "-i", batch, "-f", "jsonl", "-o", out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert f"retrying {len(failed)} that failed" in resumed.stderr
    records = jsonl(out.read_text(encoding="utf-8"))
    assert sorted(r["id"] for r in records) == ["r0", "r1", "r2", "r3"] and not any("error" in r for r in records)


def test_a_max_new_tokens_that_leaves_no_room_is_refused_before_the_run(tiny_model: Path, tmp_path: Path):
    out = tmp_path / "out.jsonl"
    result = run("title", "-m", tiny_model, "--max-new-tokens", 127, "-f", "jsonl", "-o", out, ARTICLES[0])
    line = one_line_error(result, 2)
    assert "max_new_tokens=127 leaves no room" in line and "--max-new-tokens" in line
    assert not out.exists()
