"""Input reading as users met it: legacy encodings detected on enough bytes and Chinese first,
``-i -`` as stdin, TSV header rows, and renamed ids that never take a user's id.

All sentences here are made up for these tests."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from textgen.io import decode_input, id_key, make_record, read_path, read_stream, read_text, unique_ids

# Made-up sentences (simplified), and traditional ones for Big5.
SIMPLIFIED = ["今天天气很好", "明天要下雨了", "地铁五号线开通试运营"]
TRADITIONAL = ["臺北的捷運系統非常方便，每天都有許多乘客搭乘。", "這家書店週末會舉辦讀書會，歡迎大家參加。"]
HANGUL = range(0xAC00, 0xD7B0)
KANA = range(0x3040, 0x3100)


def run(*args: object, input: str | bytes | None = None):
    from textgen.cli.app import app  # here, so that the reading tests need no CLI

    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def lines_of(*texts: str, encoding: str) -> bytes:
    return "".join(t + "\n" for t in texts).encode(encoding)


def foreign(text: str) -> bool:
    """Hangul or kana: what a Chinese text read in the wrong encoding turns into."""
    return any(ord(ch) in HANGUL or ord(ch) in KANA for ch in text)


# ---------------------------------------------------------------------- 1. encodings
def test_gbk_piped_with_lines_is_read_as_gb18030_not_korean():
    recs = list(read_stream(io.BytesIO(lines_of(*SIMPLIFIED, encoding="gbk")), lines=True))
    assert [(r.id, r.text, r.error) for r in recs] == [(1, SIMPLIFIED[0], None), (2, SIMPLIFIED[1], None), (3, SIMPLIFIED[2], None)]
    notice = recs[0].warnings[0]
    assert "read as gb18030" in notice and "not UTF-8" in notice and "--encoding" in notice
    assert "cp949" not in notice.split(";")[0]  # what was chosen comes first
    assert [r.warnings for r in recs[1:]] == [[], []]  # said once


def test_the_notice_names_what_else_was_possible():
    notice = decode_input(lines_of(*SIMPLIFIED, encoding="gbk")).notice
    assert notice.startswith("read as gb18030 (not UTF-8); ")
    assert "big5hkscs" in notice and "also possible" in notice and "name it with --encoding" in notice


@pytest.mark.parametrize("text", ["北京欢迎你", "我爱中国", "好"])
def test_short_gbk_is_read_as_gb18030(text: str, tmp_path: Path):
    data = text.encode("gbk")
    decoded = decode_input(data)
    assert (decoded.codec, decoded.text) == ("gb18030", text)
    f = tmp_path / "short.txt"
    f.write_bytes(data)
    (rec,) = read_path(f)
    assert rec.text == text and "read as gb18030" in rec.warnings[0]
    (piped,) = read_stream(io.BytesIO(data + b"\n"), lines=True)
    assert piped.text == text


def test_big5_text_is_still_detected(tmp_path: Path):
    f = tmp_path / "big5.txt"
    f.write_bytes(lines_of(*TRADITIONAL, encoding="big5"))
    recs = list(read_path(f, lines=True))
    assert [r.text for r in recs] == TRADITIONAL and "read as big5hkscs" in recs[0].warnings[0]
    piped = list(read_stream(io.BytesIO(lines_of(*TRADITIONAL, encoding="big5")), lines=True))
    assert [r.text for r in piped] == TRADITIONAL and not any(foreign(r.text) for r in piped)
    (whole,) = read_stream(io.BytesIO("".join(TRADITIONAL).encode("big5")))
    assert whole.text == "".join(TRADITIONAL)


def test_utf16_with_a_bom_is_detected_in_files_and_streams(tmp_path: Path):
    data = "\n".join(SIMPLIFIED + TRADITIONAL).encode("utf-16")
    f = tmp_path / "u16.txt"
    f.write_bytes(data)
    recs = list(read_path(f, lines=True))
    assert [r.text for r in recs] == SIMPLIFIED + TRADITIONAL and "utf-16" in recs[0].warnings[0]
    piped = list(read_stream(io.BytesIO(data), lines=True))  # split after decoding, not on 0x0A bytes
    assert [(r.id, r.text) for r in piped] == list(enumerate(SIMPLIFIED + TRADITIONAL, 1))
    (whole,) = read_stream(io.BytesIO(b"\xfe\xff" + "今天天气很好".encode("utf-16-be")))
    assert whole.text == "今天天气很好"


def test_the_encoding_is_decided_on_the_whole_file_not_its_first_line(tmp_path: Path):
    # The first line alone is too short to tell; the file as a whole is clearly GBK.
    text = ["北京欢迎你", "市图书馆新馆今天上午正式向读者开放，馆内藏书超过一百万册。", "春天到了，公园里的花都开了。"]
    f = tmp_path / "gbk.txt"
    f.write_bytes(lines_of(*text, encoding="gbk"))
    assert [r.text for r in read_path(f, lines=True)] == text
    assert [r.text for r in read_stream(io.BytesIO(lines_of(*text, encoding="gbk")), lines=True)] == text


def test_a_stream_buffers_a_few_kb_before_deciding_and_utf8_lines_are_not_held():
    consumed = []

    def stream(lines: list[bytes]) -> Iterator[bytes]:
        for line in lines:
            consumed.append(line)
            yield line

    utf8 = list(read_stream(stream([l.encode() for l in ("第一行\n", "第二行\n")] * 3), lines=True))
    assert [r.text for r in utf8] == ["第一行", "第二行"] * 3
    consumed.clear()
    it = read_stream(stream(["第一行\n".encode()] * 10), lines=True)
    assert next(it).text == "第一行" and len(consumed) == 1  # UTF-8 lines are answered as they arrive

    many = [f"第{n}条：{SIMPLIFIED[n % 3]}" for n in range(1, 2001)]
    consumed.clear()
    it = read_stream(stream([line.encode("gbk") + b"\n" for line in many]), lines=True)
    first = next(it)
    assert first.text == many[0] and "gb18030" in first.warnings[0]
    assert 1 < len(consumed) < len(many)  # buffered enough to decide, not the whole stream
    assert [r.text for r in it] == many[1:]


def test_encoding_flag_still_overrides_detection():
    data = lines_of(*SIMPLIFIED, encoding="gbk")
    recs = list(read_stream(io.BytesIO(data), lines=True, encoding="gbk"))
    assert [r.text for r in recs] == SIMPLIFIED and all(r.warnings == [] for r in recs)
    forced = list(read_stream(io.BytesIO(data), lines=True, encoding="big5hkscs"))
    assert forced[0].text != SIMPLIFIED[0] and forced[0].warnings == []  # as named, even if wrong


def test_binary_and_compressed_input_are_still_errors():
    assert "gzip" in decode_input(b"\x1f\x8b\x08\x00" + bytes(range(256))).error
    assert "binary data" in decode_input(bytes(range(256)) * 8).error


def test_gbk_piped_to_the_cli_with_lines(tiny_model: Path):
    result = run("title", "-m", tiny_model, "-f", "jsonl", "--lines", input=lines_of(*SIMPLIFIED, encoding="gbk"))
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in jsonl(result.stdout)] == [1, 2, 3]
    assert "read as gb18030" in result.stderr and "cp949" not in result.stderr.split("also possible")[0]


# ---------------------------------------------------------------------- 2. "-" is stdin
def test_dash_as_input_reads_stdin(tiny_model: Path):
    result = run("title", "-m", tiny_model, "-i", "-", "-f", "jsonl", "--lines", input="甲文。\n乙文。\n")
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in jsonl(result.stdout)] == [1, 2]
    whole = run("title", "-m", tiny_model, "--input", "-", "-f", "jsonl", input="甲文。\n乙文。\n")
    assert whole.exit_code == 0, whole.output
    assert [r["id"] for r in jsonl(whole.stdout)] == [1]


def test_dash_as_input_keeps_the_usage_checks(tiny_model: Path, tmp_path: Path):
    both = run("title", "-m", tiny_model, "-i", "-", "一段文字。", input="甲文。\n")
    assert both.exit_code == 2 and "not both" in both.stderr
    mirror = run("title", "-m", tiny_model, "-i", "-", "--output-dir", tmp_path / "out", input="甲文。\n")
    assert mirror.exit_code == 2 and "--output-dir" in mirror.stderr


# ---------------------------------------------------------------------- 3. TSV header rows
@pytest.mark.parametrize("field", [None, "1", "text"])
def test_a_tsv_header_naming_its_columns_is_not_a_record(field: str | None, tmp_path: Path):
    f = tmp_path / "t.tsv"
    f.write_text("id\ttext\na\t第一篇正文\nb\t第二篇正文\n", encoding="utf-8")
    assert [(r.id, r.text) for r in read_path(f, field=field)] == [(2, "第一篇正文"), (3, "第二篇正文")]


def test_a_tsv_header_is_found_by_the_field_it_names(tmp_path: Path):
    f = tmp_path / "t.tsv"
    f.write_text("title\tcontent\n标题一\t正文一\n", encoding="utf-8")
    assert [(r.id, r.text) for r in read_path(f, field="content")] == [(2, "正文一")]
    assert [(r.id, r.text) for r in read_path(f, field="0")] == [(1, "title"), (2, "标题一")]  # no "text": data


def test_tsv_first_rows_that_are_data_stay_records(tmp_path: Path):
    chinese = tmp_path / "c.tsv"
    chinese.write_text("文本\t正文一\n标题\t正文二\n", encoding="utf-8")
    assert [r.text for r in read_path(chinese, field="1")] == ["正文一", "正文二"]
    sentence = tmp_path / "s.tsv"
    sentence.write_text("a text about tea\tsome more text\n", encoding="utf-8")  # not identifiers
    assert [r.text for r in read_path(sentence)] == ["a text about tea"]


def test_eval_style_reads_of_two_columns_skip_the_same_header(tmp_path: Path):
    f = tmp_path / "pairs.tsv"
    f.write_text("title\ttext\n标题一\t正文一\n标题二\t正文二\n", encoding="utf-8")
    refs, texts = list(read_path(f, field="0")), list(read_path(f, field="1"))
    assert [(r.id, r.text) for r in refs] == [(2, "标题一"), (3, "标题二")]
    assert [(r.id, r.text) for r in texts] == [(2, "正文一"), (3, "正文二")]


# ---------------------------------------------------------------------- 4. unique ids
def recs(*ids) -> list:
    return [make_record(rid, "正文") for rid in ids]


def test_a_rename_never_takes_an_id_that_comes_later_in_a_list():
    out = list(unique_ids(recs("dup", "dup", "dup#2", 1, "1", 1)))
    assert [r.id for r in out] == ["dup", "dup#3", "dup#2", 1, "1", "1#2"]
    assert out[1].warnings == ["id 'dup' repeats an earlier record's id; this record's id is 'dup#3'"]
    assert out[2].warnings == []  # the user's own dup#2 is kept
    assert [r.id for r in unique_ids(recs("a", "a", "a#2", "a#3", "a"))] == ["a", "a#4", "a#2", "a#3", "a#5"]


def test_files_read_by_path_are_renamed_seeing_every_id(tmp_path: Path):
    f = tmp_path / "ids.jsonl"
    f.write_text("".join(json.dumps({"id": i, "text": "正文"}) + "\n" for i in ["dup", "dup", "dup#2"]), encoding="utf-8")
    assert [r.id for r in unique_ids(read_path(f))] == ["dup", "dup#3", "dup#2"]


def test_a_stream_renames_in_turn_a_later_record_whose_id_a_rename_took():
    out = list(unique_ids(iter(recs("dup", "dup", "dup#2", "x", "x#2", "x", "x#2"))))
    assert [r.id for r in out] == ["dup", "dup#2", "dup#2#2", "x", "x#2", "x#3", "x#2#2"]
    assert "'dup#2'" in out[2].warnings[0] and "dup#2#2" in out[2].warnings[0]
    assert out[4].warnings == []  # x#2 came before any rename took it


def test_stdin_lines_and_text_ids_stay_line_numbers():
    assert [r.id for r in unique_ids(read_text("甲\n乙\n丙", lines=True))] == [1, 2, 3]
    assert [r.id for r in unique_ids(read_stream(io.BytesIO("甲\n乙\n".encode()), lines=True))] == [1, 2]


@pytest.mark.parametrize("seed", range(20))
def test_output_ids_are_always_unique(seed: int):
    rng = random.Random(seed)
    pool = ["a", "a#2", "a#3", "a#2#2", "b", 1, "1", "1#2", 2, "2#2", "a#4"]
    ids = [rng.choice(pool) for _ in range(rng.randint(1, 30))]
    for lazy in (False, True):
        given = recs(*ids)
        out = list(unique_ids(iter(given) if lazy else given))
        keys = [id_key(r.id) for r in out]
        assert len(set(keys)) == len(keys), (lazy, ids, [r.id for r in out])
        earlier: set[str] = set()
        for i, (rid, key) in enumerate(zip(ids, keys)):
            if lazy:  # a stream keeps an id unless an earlier output took it
                assert (key == id_key(rid)) == (id_key(rid) not in earlier)
            else:  # a list keeps every first occurrence
                assert (key == id_key(rid)) == (id_key(rid) not in {id_key(j) for j in ids[:i]})
            earlier.add(key)


def test_duplicate_ids_in_a_cli_run_leave_the_users_ids_alone(tiny_model: Path, tmp_path: Path):
    f = tmp_path / "dup.jsonl"
    f.write_text("".join(json.dumps({"id": i, "text": "甲文。"}) + "\n" for i in ["dup", "dup", "dup#2"]), encoding="utf-8")
    result = run("title", "-m", tiny_model, "-i", f, "-f", "jsonl")
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in jsonl(result.stdout)] == ["dup", "dup#3", "dup#2"]
