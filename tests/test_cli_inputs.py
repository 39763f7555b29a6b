"""Inputs the command line meets (docs/cli.md): an unreadable file or folder in a directory run,
legacy Chinese encodings, binary and compressed files, JSON arrays, blank lines, flags that do not
apply to the input, and records too large to tokenize whole. Each bad input is an error record or
a one-line message, never a stopped run. Through the real command line with tiny random models
(issue 10).
"""

from __future__ import annotations

import errno
import gzip
import json
import os
from pathlib import Path

import pytest
from conftest import SENTENCES, jsonl, one_line_error, run

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

ARTICLES = [
    "今天上午，市图书馆新馆正式向读者开放，馆内藏书超过一百万册。",
    "春天到了，公园里的花都开了，很多市民带着孩子去散步。",
    "学生们在实验室里认真地做化学实验。",
    "新的地铁线路明年通车，将方便城市东部居民出行。",
]
ARTICLE = ARTICLES[0]


# ---------------------------------------------------------------------- unreadable inputs in a directory
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


# ---------------------------------------------------------------------- encodings and binary data
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


# ---------------------------------------------------------------------- input formats and flags
def test_json_input_and_flags_that_do_not_apply(tiny_model: Path, tmp_path: Path):
    data = tmp_path / "batch.json"
    data.write_text(json.dumps([{"id": "x", "text": ARTICLE}, {"text": SENTENCES[1]}], ensure_ascii=False), encoding="utf-8")
    result = run("title", "-m", tiny_model, "-i", data, "--lines", "-f", "jsonl")
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in jsonl(result.stdout)] == ["x", 2]
    assert "--lines has no effect on .json input" in result.stderr
    piped = run("title", "-m", tiny_model, "--field", "body", input=ARTICLE)
    assert piped.exit_code == 0 and "--field has no effect here" in piped.stderr


def test_blank_lines_are_not_records(tiny_model: Path):
    result = run("title", "-m", tiny_model, "--lines", "-f", "jsonl", input=f"{ARTICLE}\n\n   \n{SENTENCES[1]}\n")
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in jsonl(result.stdout)] == [1, 4]


def test_a_huge_record_is_cut_before_it_is_tokenized(tiny_model: Path, monkeypatch: pytest.MonkeyPatch):
    from textgen.models.adapters import BackboneCausal, BackboneSeq2Seq

    seen: list[int] = []
    real = BackboneSeq2Seq.encode

    def encode(self, text):
        seen.append(len(text))
        return real(self, text)

    monkeypatch.setattr(BackboneSeq2Seq, "encode", encode)
    monkeypatch.setattr(BackboneCausal, "encode", encode)
    result = run("title", "-m", tiny_model, "-f", "jsonl", input="春天到了。" * 2_000_000)
    assert result.exit_code == 0, result.output
    assert max(seen) <= 100_000  # Task.max_chars
    assert jsonl(result.stdout)[0]["warnings"][0] == "the input is 10,000,000 characters long; only its first 100,000 are used"
    seen.clear()
    direct = run("continue", "-m", tiny_model, "-f", "jsonl", "--max-new-tokens", 8, input="春" * 5000)
    assert direct.exit_code == 0 and 0 < max(seen) <= (128 - 8 - 1) * 16  # cut to what 119 tokens can hold
