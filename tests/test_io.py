"""Records in and out: every input shape, bad records as error records, resume bookkeeping."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from textgen.io import (
    INVALID_UTF8,
    format_jsonl,
    format_text,
    id_key,
    read_path,
    read_stream,
    read_text,
    resume_ids,
)


def test_text_is_one_document_without_its_final_newline():
    (rec,) = read_text("春天到了，花都开了。\n")
    assert (rec.id, rec.text, rec.error) == (1, "春天到了，花都开了。", None)


def test_argument_bytes_that_are_not_utf8_are_replaced_with_a_warning():
    argv_text = b"\xff\xe5\xa5\xbd".decode("utf-8", "surrogateescape")  # how Python hands such argv over
    (rec,) = read_text(argv_text)
    assert rec.text == "\ufffd好" and rec.warnings == [INVALID_UTF8]


def test_lines_make_one_record_each_and_blank_lines_are_error_records():
    recs = list(read_text("第一行\n  \n第三行", lines=True))
    assert [r.id for r in recs] == [1, 2, 3]
    assert [r.text for r in recs] == ["第一行", None, "第三行"]
    assert "blank" in recs[1].error


def test_stream_whole_and_by_line():
    (doc,) = read_stream(io.BytesIO("甲\n乙\n".encode()))
    assert doc.text == "甲\n乙"
    lines = list(read_stream(io.BytesIO("甲\n乙\n".encode()), lines=True))
    assert [(r.id, r.text) for r in lines] == [(1, "甲"), (2, "乙")]


def test_invalid_utf8_is_replaced_with_a_warning_on_that_record_only():
    recs = list(read_stream(io.BytesIO(b"\xff\xfe\xe4\xbb\x8a\xe5\xa4\xa9\n\xe5\xa5\xbd\n"), lines=True))
    assert recs[0].text == "\ufffd\ufffd今天" and recs[0].warnings == [INVALID_UTF8]
    assert recs[1].text == "好" and recs[1].warnings == []


def test_utf8_bom_is_dropped(tmp_path: Path):
    f = tmp_path / "a.txt"
    f.write_bytes(b"\xef\xbb\xbf" + "标题".encode())
    (rec,) = read_path(f)
    assert rec.text == "标题" and rec.warnings == []


def test_jsonl_records_ids_fields_and_bad_lines(tmp_path: Path):
    f = tmp_path / "batch.jsonl"
    f.write_text(
        "\n".join(
            [
                json.dumps({"id": "a", "text": "第一篇", "lang": "zh"}, ensure_ascii=False),
                json.dumps({"content": "没有文本字段"}, ensure_ascii=False),
                "{not json",
                "",
                json.dumps({"text": "   "}),
                json.dumps(["a list"]),
                json.dumps({"text": 5}),
                json.dumps({"text": "第七行"}, ensure_ascii=False),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    recs = list(read_path(f))
    assert [r.id for r in recs] == ["a", 2, 3, 5, 6, 7, 8]  # the blank line 4 is no record
    assert recs[0].text == "第一篇" and recs[0].fields["lang"] == "zh"
    assert "no 'text' field" in recs[1].error
    assert "malformed JSON" in recs[2].error
    assert "blank" in recs[3].error
    assert "not a JSON object" in recs[4].error
    assert "not a string" in recs[5].error
    assert recs[6].text == "第七行" and recs[6].error is None


def test_jsonl_other_field(tmp_path: Path):
    f = tmp_path / "b.jsonl"
    f.write_text(json.dumps({"content": "正文"}, ensure_ascii=False) + "\n", encoding="utf-8")
    (rec,) = read_path(f, field="content")
    assert rec.text == "正文"


def test_tsv_by_index_and_by_header_name(tmp_path: Path):
    f = tmp_path / "t.tsv"
    f.write_text("id\tbody\n1\t正文一\n2\n", encoding="utf-8")
    by_index = list(read_path(f, field="1"))
    assert [r.text for r in by_index] == ["body", "正文一", None]
    assert "no column 1" in by_index[2].error
    by_name = list(read_path(f, field="body"))
    assert [(r.id, r.text) for r in by_name] == [(2, "正文一"), (3, None)]
    with pytest.raises(ValueError, match="no column named 'missing'"):
        list(read_path(f, field="missing"))


def test_directory_ids_are_relative_paths(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("甲文", encoding="utf-8")
    (tmp_path / "sub" / "b.txt").write_text("乙文\n丙文\n", encoding="utf-8")
    (tmp_path / "skip.md").write_text("不读", encoding="utf-8")
    assert [(r.id, r.source) for r in read_path(tmp_path)] == [("a.txt", "a.txt"), ("sub/b.txt", "sub/b.txt")]
    assert [r.id for r in read_path(tmp_path, lines=True)] == ["a.txt:1", "sub/b.txt:1", "sub/b.txt:2"]


def test_format_text_single_nbest_and_error():
    assert format_text({"outputs": [{"text": "标题", "score": -1.0}]}) == "标题\n"
    nbest = format_text({"outputs": [{"text": "甲", "score": -1.0}, {"text": "乙", "score": -2.0}]})
    assert nbest == "1. 甲\n2. 乙\n\n"
    assert format_text({"outputs": [], "error": "empty text"}) == "\n"


def test_format_jsonl_is_one_readable_line():
    line = format_jsonl({"id": 1, "outputs": [{"text": "标题", "score": -0.5}], "model": "m"})
    assert line.endswith("\n") and line.count("\n") == 1 and "标题" in line
    assert json.loads(line)["outputs"][0]["text"] == "标题"


def test_resume_ids_cut_a_partial_last_line(tmp_path: Path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": 1, "outputs": []}\n{"id": "2", "outputs": []}\n{"id": 3, "outp', encoding="utf-8")
    assert resume_ids(out) == {id_key(1), id_key("2")}
    assert out.read_text(encoding="utf-8").endswith('"outputs": []}\n')
    assert id_key(2) not in resume_ids(out)  # 2 and "2" are different ids
    assert resume_ids(tmp_path / "missing.jsonl") == set()
