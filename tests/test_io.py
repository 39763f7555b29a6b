"""Records in and out: every input shape, bad records as error records, resume bookkeeping."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from textgen.io import (
    INVALID_UTF8,
    NotOurOutput,
    Scan,
    id_key,
    read_path,
    read_stream,
    read_text,
    scan_output,
    unique_ids,
)
from textgen.output import Candidate, Output, format_jsonl, format_text


def out(*texts: str, error: str | None = None, id=1) -> Output:
    """An output with one candidate per text (scores -1, -2, ...)."""
    return Output(id, "title", "m", [Candidate(t, -float(i)) for i, t in enumerate(texts, 1)], error=error)


def test_text_is_one_document_without_its_final_newline():
    (rec,) = read_text("春天到了，花都开了。\n")
    assert (rec.id, rec.text, rec.error) == (1, "春天到了，花都开了。", None)


def test_argument_bytes_that_are_not_utf8_are_replaced_with_a_warning():
    argv_text = b"\xff\xe5\xa5\xbd".decode("utf-8", "surrogateescape")  # how Python hands such argv over
    (rec,) = read_text(argv_text)
    assert rec.text == "\ufffd好" and rec.warnings == [INVALID_UTF8]


def test_lines_make_one_record_each_and_blank_lines_are_skipped():
    recs = list(read_text("第一行\n  \n第三行\n\n", lines=True))
    assert [(r.id, r.text) for r in recs] == [(1, "第一行"), (3, "第三行")]  # ids stay line numbers
    streamed = list(read_stream(io.BytesIO("甲\n\n \n乙\n".encode()), lines=True))
    assert [(r.id, r.text) for r in streamed] == [(1, "甲"), (4, "乙")]


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
    assert format_text(out("标题")) == "标题\n"
    nbest = format_text(out("甲", "乙"))
    assert nbest == "1. 甲\n2. 乙\n\n"
    assert format_text(out(error="empty text")) == "\n"


def test_format_jsonl_is_one_readable_line():
    line = format_jsonl(Output(1, "title", "m", [Candidate("标题", -0.5)]))
    assert line.endswith("\n") and line.count("\n") == 1 and "标题" in line
    assert json.loads(line)["outputs"][0]["text"] == "标题"


def test_scan_output_drops_a_partial_last_line_and_error_records():
    data = b'{"id": 1, "outputs": []}\n{"id": "2", "outputs": []}\n{"id": 4, "outputs": [], "error": "x"}\n{"id": 3, "outp'
    scan = scan_output(data)
    assert scan.done == {id_key(1), id_key("2")} and id_key(2) not in scan.done  # 2 and "2" are different ids
    assert scan.failed == {id_key(4)} and scan.changed
    assert scan.keep == b'{"id": 1, "outputs": []}\n{"id": "2", "outputs": []}\n'
    clean = scan_output(scan.keep)
    assert not clean.changed and clean.keep == scan.keep
    assert scan_output(b"") == Scan(set(), set(), b"", False)


def test_scan_output_refuses_a_file_that_is_not_ours():
    with pytest.raises(NotOurOutput, match="line 2"):
        scan_output('{"id": 1, "outputs": []}\n我的笔记，不是输出。\n'.encode(), "notes.jsonl")


def test_unique_ids_are_deterministic_and_say_so():
    recs = list(unique_ids(read_text("甲\n乙\n丙\n丁", lines=True)))
    assert [r.id for r in recs] == [1, 2, 3, 4]
    again = [make("dup"), make("dup"), make("dup#2"), make(1), make("1"), make(1)]
    renamed = list(unique_ids(again))
    # A rename never takes an id the input holds (the user's own "dup#2" keeps its name).
    assert [r.id for r in renamed] == ["dup", "dup#3", "dup#2", 1, "1", "1#2"]
    assert renamed[1].warnings == ["id 'dup' repeats an earlier record's id; this record's id is 'dup#3'"]
    assert renamed[0].warnings == [] and renamed[4].warnings == []  # "1" is not 1


def make(rid):
    from textgen.io import make_record

    return make_record(rid, "正文")


def test_json_file_is_an_array_of_records_or_one_record(tmp_path: Path):
    many = tmp_path / "many.json"
    many.write_text(json.dumps([{"id": "x", "text": "甲文"}, {"text": "乙文"}, "不是对象"], ensure_ascii=False), encoding="utf-8")
    recs = list(read_path(many))
    assert [(r.id, r.text) for r in recs[:2]] == [("x", "甲文"), (2, "乙文")] and "item 3: not a JSON object" in recs[2].error
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"body": "正文"}, ensure_ascii=False), encoding="utf-8")
    assert [(r.id, r.text) for r in read_path(one, field="body")] == [(1, "正文")]
    broken = tmp_path / "broken.json"
    broken.write_text('[{"text": "甲"', encoding="utf-8")
    (rec,) = read_path(broken)
    assert "malformed JSON" in rec.error


def test_jsonl_ids_keep_their_json_type_and_null_text_says_so(tmp_path: Path):
    f = tmp_path / "ids.jsonl"
    rows = [{"id": 1.5, "text": "甲"}, {"id": True, "text": "乙"}, {"id": None, "text": "丙"}, {"id": [1], "text": "丁"},
            {"id": "e", "text": None}]
    f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    recs = list(read_path(f))
    assert [r.id for r in recs] == [1.5, True, 3, 4, "e"]
    assert "the id must be a string or a number" in recs[3].error
    assert "field 'text' is null" in recs[4].error


def test_encodings_are_detected_per_file_and_remembered_in_a_stream(tmp_path: Path):
    text = "今天上午，市图书馆新馆正式向读者开放。\n春天到了，公园里的花都开了，很多市民带着孩子去散步。"
    f = tmp_path / "gbk.txt"
    f.write_bytes(text.encode("gbk"))
    recs = list(read_path(f, lines=True))
    assert [r.text for r in recs] == text.split("\n")
    assert "read as gb18030" in recs[0].warnings[0] and recs[1].warnings == []  # said once
    u16 = tmp_path / "u16.txt"
    u16.write_bytes(text.encode("utf-16"))
    assert [r.text for r in read_path(u16, lines=True)] == text.split("\n")  # split after decoding
    stream = io.BytesIO(text.encode("gb18030") + "\n好\n".encode("gb18030"))
    streamed = list(read_stream(stream, lines=True))
    assert [r.text for r in streamed] == [*text.split("\n"), "好"]  # one short line: the encoding found before


def test_named_encoding_fails_only_the_lines_it_cannot_decode(tmp_path: Path):
    f = tmp_path / "mixed.tsv"
    f.write_bytes("甲\t正文一\n".encode("gb18030") + b"\xff\xff\t\x81\n")
    recs = list(read_path(f, field="1", encoding="gb18030"))
    assert recs[0].text == "正文一" and "not valid gb18030" in recs[1].error


def test_directory_listing_skips_excluded_and_reports_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from textgen.io import list_files

    (tmp_path / "out").mkdir()
    (tmp_path / "a.txt").write_text("甲", encoding="utf-8")
    (tmp_path / "out" / "a.txt").write_text("旧输出", encoding="utf-8")
    (tmp_path / "loop").symlink_to(tmp_path)  # a link back up is walked once, not forever
    st = (tmp_path / "out").stat()
    assert [p.relative_to(tmp_path).as_posix() for p in list_files(tmp_path, "*.txt", exclude={(st.st_dev, st.st_ino)})] == ["a.txt"]
    assert len(list_files(tmp_path, "*.txt")) == 2


def test_format_text_label_names_each_line():
    assert format_text(out("标题"), "a.txt") == "a.txt\t标题\n"
    assert format_text(out(error="x"), "b.txt") == "b.txt\t\n"
    nbest = format_text(out("甲", "乙"), "c.txt")
    assert nbest == "c.txt\t1. 甲\nc.txt\t2. 乙\n\n"
