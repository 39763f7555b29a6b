"""Record ids and ``--resume`` (docs/cli.md): every output record keeps a unique id, so a run
stopped or cut short by a write error resumes where it stopped, keeps what was written, and retries
the records that failed. Through the real command line with tiny random models (issue 10).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from conftest import fail_long_inputs, jsonl, one_line_error, run, write_jsonl

import textgen.decoding

ARTICLES = [
    "今天上午，市图书馆新馆正式向读者开放，馆内藏书超过一百万册。",
    "春天到了，公园里的花都开了，很多市民带着孩子去散步。",
    "学生们在实验室里认真地做化学实验。",
    "新的地铁线路明年通车，将方便城市东部居民出行。",
]


# ---------------------------------------------------------------------- duplicate ids
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


# ---------------------------------------------------------------------- stopped runs resume
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


def test_resume_retries_the_records_that_failed(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    batch = write_jsonl(tmp_path / "b.jsonl", [{"id": f"r{i}", "text": t} for i, t in enumerate(ARTICLES)])
    out = tmp_path / "out.jsonl"
    real = fail_long_inputs(monkeypatch, RuntimeError("out of memory"))
    first = run("title", "-m", tiny_model, "-i", batch, "-f", "jsonl", "-o", out)
    failed = [r["id"] for r in jsonl(out.read_text(encoding="utf-8")) if "error" in r]
    assert first.exit_code == 1 and failed
    monkeypatch.setattr(textgen.decoding, "generate", real)
    resumed = run("title", "-m", tiny_model, "-i", batch, "-f", "jsonl", "-o", out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert f"retrying {len(failed)} that failed" in resumed.stderr
    records = jsonl(out.read_text(encoding="utf-8"))
    assert sorted(r["id"] for r in records) == ["r0", "r1", "r2", "r3"] and not any("error" in r for r in records)


# ---------------------------------------------------------------------- whose output a resumed file holds
def _loads_no_model(monkeypatch: pytest.MonkeyPatch) -> list:
    """Record any model load: a refused resume must stop before the model loads."""
    from textgen.runner import Runner

    loads: list = []
    real = Runner.model

    def model(self, info, kind):
        loads.append(info.name)
        return real(self, info, kind)

    monkeypatch.setattr(Runner, "model", model)
    return loads


def test_resume_refuses_another_tasks_output_before_any_work(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    batch = write_jsonl(tmp_path / "b.jsonl", [{"id": f"r{i}", "text": t} for i, t in enumerate(ARTICLES)])
    out = tmp_path / "out.jsonl"
    first = run("continue", "-m", tiny_model, "-i", batch, "-f", "jsonl", "-o", out, "--max-new-tokens", 4)
    assert first.exit_code == 0, first.output
    before = out.read_bytes()
    loads = _loads_no_model(monkeypatch)
    resumed = run("title", "-m", tiny_model, "-i", batch, "-f", "jsonl", "-o", out, "--resume")
    line = one_line_error(resumed, 2)
    assert "continue" in line and "title" in line and str(out) in line  # what the file holds, what this run is
    assert out.read_bytes() == before and loads == []


def test_resume_refuses_another_models_output(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from conftest import save_tiny_model

    other = save_tiny_model(tmp_path / "other", name="other")
    batch = write_jsonl(tmp_path / "b.jsonl", [{"id": f"r{i}", "text": t} for i, t in enumerate(ARTICLES)])
    out = tmp_path / "out.jsonl"
    first = run("title", "-m", tiny_model, "-i", batch, "-f", "jsonl", "-o", out)
    assert first.exit_code == 0, first.output
    out.write_text("".join(out.read_text(encoding="utf-8").splitlines(keepends=True)[:2]), encoding="utf-8")
    loads = _loads_no_model(monkeypatch)
    resumed = run("title", "-m", other, "-i", batch, "-f", "jsonl", "-o", out, "--resume")
    line = one_line_error(resumed, 2)
    assert f"model {str(tiny_model)!r}" in line and f"model {str(other)!r}" in line and loads == []
    monkeypatch.chdir(tiny_model.parent)  # the same model, named by another path
    same = run("title", "-m", "./tiny", "-i", batch, "-f", "jsonl", "-o", out, "--resume")
    assert same.exit_code == 0, same.output
    assert [r["id"] for r in jsonl(out.read_text(encoding="utf-8"))] == ["r0", "r1", "r2", "r3"]


def test_resume_refuses_another_tasks_output_in_an_output_dir(tiny_model: Path, tmp_path: Path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i, text in enumerate(ARTICLES[:2]):
        (docs / f"{i}.txt").write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    first = run("continue", "-m", tiny_model, "-i", docs, "-f", "jsonl", "--output-dir", out, "--max-new-tokens", 4)
    assert first.exit_code == 0, first.output
    (out / "1.jsonl").unlink()  # one file to do, one made by another task
    resumed = run("title", "-m", tiny_model, "-i", docs, "-f", "jsonl", "--output-dir", out, "--resume")
    line = one_line_error(resumed, 2)
    assert "0.jsonl" in line and "continue" in line
    assert not (out / "1.jsonl").exists()  # nothing was done


def test_resume_reads_outputs_with_and_without_the_settings_record(tiny_model: Path, tmp_path: Path):
    batch = write_jsonl(tmp_path / "b.jsonl", [{"id": f"r{i}", "text": t} for i, t in enumerate(ARTICLES)])
    out = tmp_path / "out.jsonl"
    first = run("title", "-m", tiny_model, "-i", batch, "-f", "jsonl", "-o", out)
    assert first.exit_code == 0, first.output
    records = jsonl(out.read_text(encoding="utf-8"))
    assert all("textgen" in r for r in records)
    old = [{k: v for k, v in r.items() if k != "textgen"} for r in records[:1]]  # an output of an older textgen
    write_jsonl(out, old + records[1:2])
    resumed = run("title", "-m", tiny_model, "-i", batch, "-f", "jsonl", "-o", out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "2 records already written" in resumed.stderr
    assert [r["id"] for r in jsonl(out.read_text(encoding="utf-8"))] == ["r0", "r1", "r2", "r3"]


def test_resume_with_other_settings_says_which_changed(tiny_model: Path, tmp_path: Path):
    batch = write_jsonl(tmp_path / "b.jsonl", [{"id": f"r{i}", "text": t} for i, t in enumerate(ARTICLES)])
    out = tmp_path / "out.jsonl"
    first = run("title", "-m", tiny_model, "-i", batch, "-f", "jsonl", "-o", out, "--beam", 2)
    assert first.exit_code == 0, first.output
    out.write_text(out.read_text(encoding="utf-8").splitlines(keepends=True)[0], encoding="utf-8")
    resumed = run("title", "-m", tiny_model, "-i", batch, "-f", "jsonl", "-o", out, "--resume", "--beam", 3)
    assert resumed.exit_code == 0, resumed.output
    assert "written with other settings: num_beams=2 there, 3 now" in resumed.stderr
    same = run("title", "-m", tiny_model, "-i", batch, "-f", "jsonl", "-o", out, "--resume", "--beam", 3)
    assert "other settings" not in same.stderr  # the last record's settings are this run's
