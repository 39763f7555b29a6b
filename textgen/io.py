"""Records in, records out: the only place that knows input and output formats.

Every input becomes a stream of ``Record`` objects. A record that cannot be used (malformed JSON,
a missing field, blank text) is still a record, carrying ``error``: one input record always yields
exactly one output record, so a batch never stops at a bad line and outputs stay aligned.

Inputs: a text (one document), a byte stream (stdin), or a file by extension -- ``.jsonl``
(records; text from ``field``, id from ``id`` or the line number), ``.tsv`` (``field`` is a column
index, or a column name from a header row), anything else plain text (one document, or one record
per line with ``lines``) -- or a directory of files (id = relative path). Bytes that are not UTF-8
are replaced (U+FFFD) and the record gets a warning instead of the run getting a traceback.

Outputs: ``format_text`` (the texts, for people and pipes) and ``format_jsonl`` (one JSON object per
record). ``resume_ids`` reads back what a previous run wrote.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

RecordId = int | str
INVALID_UTF8 = "input is not valid UTF-8; undecodable bytes were replaced with U+FFFD"


@dataclass
class Record:
    """One unit of work: ``text`` to process, or ``error`` saying why there is none."""

    id: RecordId
    text: str | None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    source: str | None = None  # the input file, relative to the input directory (for --output-dir)
    fields: dict[str, Any] = field(default_factory=dict)  # a JSONL record's other fields


def make_record(
    id: RecordId,
    text: str,
    *,
    warnings: list[str] | None = None,
    source: str | None = None,
    fields: dict[str, Any] | None = None,
) -> Record:
    """A record for ``text``, turned into an error record when the text is empty or blank."""
    rec = Record(id, text, warnings=list(warnings or ()), source=source, fields=dict(fields or {}))
    if not text.strip():
        rec.text, rec.error = None, "empty text" if not text else "blank text (only whitespace)"
    return rec


def error_record(id: RecordId, error: str, *, source: str | None = None) -> Record:
    return Record(id, None, error=error, source=source)


def decode(data: bytes) -> tuple[str, list[str]]:
    """UTF-8 text (a leading BOM dropped) and the warnings decoding raised."""
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError:
        return data.decode("utf-8-sig", errors="replace"), [INVALID_UTF8]


# ---------------------------------------------------------------------- readers
def read_text(text: str, *, lines: bool = False) -> Iterator[Record]:
    """One document (id 1), or with ``lines`` one record per line (id = line number).

    A command-line argument that held bytes which are not UTF-8 reaches Python as surrogate
    escapes; they get the same replacement and warning as bytes read from a file."""
    yield from _read_plain(text.encode("utf-8", "surrogateescape"), lines, None)


def read_stream(stream: BinaryIO, *, lines: bool = False) -> Iterator[Record]:
    """Records from a byte stream (stdin). With ``lines`` each line is read and yielded as it
    arrives, so ``tail -f log | textgen title --lines --batch-size 1`` answers line by line;
    otherwise the whole stream is one document."""
    if not lines:
        text, warnings = decode(stream.read())
        yield make_record(1, _strip_newline(text), warnings=warnings)
        return
    for n, raw in enumerate(stream, 1):
        text, warnings = decode(raw)
        yield make_record(n, _strip_newline(text), warnings=warnings)


def read_path(path: Path, *, lines: bool = False, field: str | None = None, glob: str = "*.txt") -> Iterator[Record]:
    """Records of a file, or of every file under a directory matching ``glob`` (sorted)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob(glob) if p.is_file())
        for file in files:
            rel = file.relative_to(path).as_posix()
            yield from _prefixed(
                read_file(file, lines=lines, field=field, source=rel), rel, multi=lines or _is_table(file)
            )
    else:
        yield from read_file(path, lines=lines, field=field, source=path.name)


def read_file(
    path: Path, *, lines: bool = False, field: str | None = None, source: str | None = None
) -> Iterator[Record]:
    """Records of one file, by extension: ``.jsonl``, ``.tsv``, else plain text."""
    data = path.read_bytes()
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from _read_jsonl(data, field or "text", source)
    elif suffix == ".tsv":
        yield from _read_tsv(data, field, source)
    else:
        yield from _read_plain(data, lines, source)


def _read_plain(data: bytes, lines: bool, source: str | None) -> Iterator[Record]:
    if not lines:
        text, warnings = decode(data)
        yield make_record(1, _strip_newline(text), warnings=warnings, source=source)
        return
    for n, raw in enumerate(data.splitlines(), 1):
        text, warnings = decode(raw)
        yield make_record(n, text, warnings=warnings, source=source)


def _read_jsonl(data: bytes, key: str, source: str | None) -> Iterator[Record]:
    for n, raw in enumerate(data.splitlines(), 1):
        line, warnings = decode(raw)
        if not line.strip():
            continue  # blank lines separate nothing in JSON Lines; they are not records
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield error_record(n, f"line {n}: malformed JSON ({exc.msg})", source=source)
            continue
        if not isinstance(obj, dict):
            yield error_record(n, f"line {n}: not a JSON object", source=source)
            continue
        rid = obj.get("id", n)
        if not isinstance(rid, (int, str)) or isinstance(rid, bool):
            rid = json.dumps(rid, ensure_ascii=False)
        text = obj.get(key)
        if not isinstance(text, str):
            problem = f"no {key!r} field" if text is None else f"field {key!r} is not a string"
            yield error_record(rid, f"line {n}: {problem}", source=source)
            continue
        yield make_record(rid, text, warnings=warnings, source=source, fields=obj)


def _read_tsv(data: bytes, column: str | None, source: str | None) -> Iterator[Record]:
    rows = data.splitlines()
    index = 0
    start = 1
    if column is not None and not column.isdigit():
        header, _ = decode(rows[0]) if rows else ("", [])
        names = header.split("\t")
        if column not in names:
            raise ValueError(f"{source}: no column named {column!r} in the header ({', '.join(names)})")
        index, start = names.index(column), 2
        rows = rows[1:]
    elif column is not None:
        index = int(column)
    for n, raw in enumerate(rows, start):
        line, warnings = decode(raw)
        cells = line.split("\t")
        if index >= len(cells):
            yield error_record(n, f"line {n}: has {len(cells)} columns, no column {index}", source=source)
            continue
        yield make_record(n, cells[index], warnings=warnings, source=source)


def _prefixed(records: Iterable[Record], rel: str, *, multi: bool) -> Iterator[Record]:
    """Ids unique across a directory: the relative path, plus ``:id`` when a file holds several."""
    for rec in records:
        rec.id = f"{rel}:{rec.id}" if multi else rel
        yield rec


def _is_table(path: Path) -> bool:
    return path.suffix.lower() in (".jsonl", ".tsv")


def _strip_newline(text: str) -> str:
    """A document's trailing line break is the file's, not the text's (``echo`` adds one)."""
    return text.rstrip("\r\n")


# ---------------------------------------------------------------------- writers
def format_jsonl(out: dict[str, Any]) -> str:
    """One output record as one JSON line (UTF-8 kept readable)."""
    return json.dumps(out, ensure_ascii=False) + "\n"


def format_text(out: dict[str, Any]) -> str:
    """The output texts for people and pipes: a single best output on one line; an n-best list
    numbered, one per line, closed by a blank line. A failed record prints an empty line so that
    line-per-record output stays aligned with its input (the reason goes to stderr)."""
    outputs = out.get("outputs") or []
    if len(outputs) <= 1:
        return (outputs[0]["text"] if outputs else "") + "\n"
    return "".join(f"{i}. {o['text']}\n" for i, o in enumerate(outputs, 1)) + "\n"


def id_key(rid: RecordId) -> str:
    """A hashable, type-faithful key for comparing ids across runs (1 and "1" differ)."""
    return json.dumps(rid, ensure_ascii=False)


def resume_ids(path: Path) -> set[str]:
    """Keys of the ids already written to the JSONL output ``path``; none when it does not exist.

    A last line without its newline (left by a hard kill) is cut off, so appending starts on a
    fresh line and the partial record is redone.
    """
    if not path.exists():
        return set()
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with open(path, "r+b") as f:
            f.truncate(len(complete))
            f.flush()
            os.fsync(f.fileno())
    done = set()
    for line in complete.decode("utf-8", errors="replace").splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and "id" in obj:
            done.add(id_key(obj["id"]))
    return done
