"""Records in, records out: the only place that knows input and output formats.

Every input becomes a stream of ``Record`` objects. A record that cannot be used (malformed JSON,
a missing field, blank text, bytes no encoding decodes, a file that cannot be read) is still a
record, carrying ``error``: one input record always yields exactly one output record, so a batch
never stops at a bad line and outputs stay aligned.

Inputs: a text (one document), a byte stream (stdin), or a file by extension -- ``.jsonl``
(records; text from ``field``, id from ``id`` or the line number), ``.json`` (an array of such
objects, or one object), ``.tsv`` (``field`` is a column index, or a column name from a header
row), anything else plain text (one document, or one record per non-blank line with ``lines``) --
or a directory of files (id = relative path). ``unique_ids`` makes repeated ids unique.

Bytes become text by ``decode_input``: UTF-8 when they are UTF-8; a few stray bytes in UTF-8 text
are replaced (U+FFFD) with a warning; otherwise charset-normalizer detects the encoding (GB18030,
Big5, UTF-16 ...) and the first record says which; binary and compressed data are error records.
``encoding`` (``--encoding``) names the encoding instead, and bytes it cannot decode fail.

Outputs: ``format_text`` (the texts, for people and pipes) and ``format_jsonl`` (one JSON object per
record). ``scan_output`` reads back what a previous run wrote, for ``--resume``.
"""

from __future__ import annotations

import codecs
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

RecordId = int | float | bool | str  # a JSONL id keeps its JSON type
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


def error_record(id: RecordId, error: str, *, source: str | None = None, warnings: list[str] | None = None) -> Record:
    return Record(id, None, error=error, source=source, warnings=list(warnings or ()))


# ---------------------------------------------------------------------- bytes -> text
# Compressed files are bytes, not text: saying so beats a title made up from their noise.
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"(\xb5/\xfd": "zstd",
               b"PK\x03\x04": "zip", b"7z\xbc\xaf\x27\x1c": "7z"}
# Legacy Chinese encodings are decoded by their superset, so no character GB2312/GBK lacks fails.
_SUPERSET = {"gb2312": "gb18030", "gbk": "gb18030", "big5": "big5hkscs"}
_ESCAPED = re.compile("[\udc80-\udcff]")  # bytes a codec could not decode, kept by surrogateescape


@dataclass(frozen=True)
class Decoded:
    """One input's bytes as text. Undecodable bytes stay in ``text`` as lone surrogates
    (``surrogateescape``) so each record can be judged on its own (``finish``)."""

    text: str = ""
    codec: str = "utf-8"
    strict: bool = False  # undecodable bytes fail their record (a named or detected encoding)
    notice: str | None = None  # said once, on the input's first record (the detected encoding)
    error: str | None = None  # the whole input is unusable (binary, compressed)

    def finish(self, piece: str) -> tuple[str | None, list[str], str | None]:
        """A record's text, warnings and error from its piece of ``text``."""
        if not _ESCAPED.search(piece):
            return piece, [], None
        if self.strict:
            return None, [], f"not valid {self.codec}: it holds bytes that encoding cannot decode (see --encoding)"
        return piece.encode("utf-8", "surrogateescape").decode("utf-8", "replace"), [INVALID_UTF8], None


def check_encoding(name: str) -> str:
    """The codec ``name`` names (``--encoding``); ``ValueError`` for unknown or non-text codecs."""
    try:
        info = codecs.lookup(name)
    except LookupError:
        raise ValueError(f"unknown encoding {name!r} (e.g. utf-8, gb18030, big5, utf-16)") from None
    if not getattr(info, "_is_text_encoding", True):
        raise ValueError(f"{name!r} is not a text encoding")
    return info.name


def decode_input(data: bytes, encoding: str | None = None) -> Decoded:
    """Text of one input (a file, stdin, one streamed line); see the module docstring.

    Detection is charset-normalizer's, not a list of encodings tried in turn: GB18030 decodes most
    Big5 or Shift-JIS byte pairs into confident nonsense, while charset-normalizer scores each
    candidate's decoded text (mess, language coherence) and rejects binary data outright."""
    if encoding is not None:
        codec = check_encoding(encoding)
        codec = "utf-8-sig" if codec == "utf-8" else codec
        return Decoded(data.decode(codec, "surrogateescape"), codec.removesuffix("-sig"), strict=True)
    for magic, kind in _COMPRESSED.items():
        if data.startswith(magic):
            return Decoded(error=f"{kind}-compressed data, not text: decompress it first")
    if b"\x00" not in data:  # NUL never occurs in UTF-8 text; binary data and UTF-16 hold it
        text = data.decode("utf-8-sig", "surrogateescape")
        stray = len(_ESCAPED.findall(text))
        if not stray or stray <= sum(ch >= "\x80" for ch in text) - stray:  # UTF-8, maybe a few stray bytes
            return Decoded(text)
    import charset_normalizer

    guess = charset_normalizer.from_bytes(data).best()
    if guess is None:
        return Decoded(error="binary data, not text (if it is text, name its encoding with --encoding)")
    codec = _SUPERSET.get(guess.encoding, guess.encoding)
    return Decoded(data.decode(codec, "surrogateescape"), codec, strict=True,
                   notice=f"input is not UTF-8: read as {codec} (detected; --encoding names another)")


def _split_lines(text: str) -> list[str]:
    """Lines as ``bytes.splitlines`` cuts them (``\\n``, ``\\r\\n``, ``\\r``), on decoded text so
    that UTF-16 input splits right too."""
    lines = re.split(r"\r\n|\r|\n", text)
    return lines[:-1] if lines and lines[-1] == "" else lines


# ---------------------------------------------------------------------- readers
def read_text(text: str, *, lines: bool = False, encoding: str | None = None) -> Iterator[Record]:
    """One document (id 1), or with ``lines`` one record per non-blank line (id = line number).

    A command-line argument that held bytes which are not UTF-8 reaches Python as surrogate
    escapes; its bytes are decoded as a file's are (``encoding`` applies too)."""
    yield from _records(text.encode("utf-8", "surrogateescape"), "", lines, None, None, encoding)


def read_stream(stream: BinaryIO, *, lines: bool = False, encoding: str | None = None) -> Iterator[Record]:
    """Records from a byte stream (stdin). With ``lines`` each line is read and yielded as it
    arrives, so ``tail -f log | textgen title --lines --batch-size 1`` answers line by line (an
    encoding detected on one line is tried first on the next lines that are not UTF-8); otherwise
    the whole stream is one document."""
    if not lines:
        yield from _records(stream.read(), "", False, None, None, encoding)
        return
    sticky = encoding
    for n, raw in enumerate(stream, 1):
        if sticky is not None and (encoding is not None or not _is_utf8(raw)):
            decoded = decode_input(raw, sticky)
        else:
            decoded = decode_input(raw)
            if decoded.notice:
                sticky = decoded.codec
        if decoded.error:
            yield error_record(n, decoded.error)
            continue
        text, warnings, error = decoded.finish(_strip_newline(decoded.text))
        if error:
            yield error_record(n, error)
        elif text.strip():
            yield make_record(n, text, warnings=[*([decoded.notice] if decoded.notice else []), *warnings])


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def read_path(
    path: Path,
    *,
    lines: bool = False,
    field: str | None = None,
    glob: str = "*.txt",
    encoding: str | None = None,
    exclude: Iterable[tuple[int, int]] = (),
    on_skip: Callable[[str], None] | None = None,
) -> Iterator[Record]:
    """Records of a file, or of every file under a directory matching ``glob`` (sorted).

    In a directory, a file that cannot be read is an error record and a folder that cannot be
    listed is reported to ``on_skip``; both leave the rest to run. Files and folders whose
    ``(st_dev, st_ino)`` is in ``exclude`` (the run's own outputs) are left out."""
    if not path.is_dir():
        yield from read_file(path, lines=lines, field=field, source=path.name, encoding=encoding)
        return
    for file in list_files(path, glob, exclude=set(exclude), on_skip=on_skip):
        rel = file.relative_to(path).as_posix()
        try:
            data = file.read_bytes()
        except OSError as exc:
            yield error_record(rel, f"cannot read {rel}: {exc.strerror or exc}", source=rel)
            continue
        yield from _prefixed(_records(data, file.suffix, lines, field, rel, encoding), rel, multi=_is_table(file) or lines)


def list_files(
    root: Path, glob: str, *, exclude: set[tuple[int, int]] = frozenset(), on_skip: Callable[[str], None] | None = None
) -> list[Path]:
    """Files under ``root`` whose relative path matches ``glob`` (as ``Path.rglob`` matches), in
    sorted order. Symbolic links to folders are followed once (a loop is not walked twice)."""
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()

    def visit(folder: Path) -> None:
        try:
            st = folder.stat()
            key = (st.st_dev, st.st_ino)
            if key in seen or key in exclude:
                return
            seen.add(key)
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if on_skip is not None:
                on_skip(f"cannot read folder {folder.relative_to(root).as_posix()}: {exc.strerror or exc}; skipped it")
            return
        for entry in entries:
            try:
                if entry.is_dir():
                    visit(Path(entry.path))
                elif entry.is_file() and PurePosixPath(Path(entry.path).relative_to(root).as_posix()).match(glob):
                    st = entry.stat()
                    if (st.st_dev, st.st_ino) not in exclude:
                        found.append(Path(entry.path))
            except OSError:  # a broken link, or a file gone since the listing: not an input
                continue

    visit(root)
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def read_file(
    path: Path, *, lines: bool = False, field: str | None = None, source: str | None = None, encoding: str | None = None
) -> Iterator[Record]:
    """Records of one file, by extension: ``.jsonl``, ``.json``, ``.tsv``, else plain text."""
    yield from _records(path.read_bytes(), path.suffix, lines, field, source, encoding)


def _records(
    data: bytes, suffix: str, lines: bool, field: str | None, source: str | None, encoding: str | None
) -> Iterator[Record]:
    """The records of one input's bytes, by its file's extension (``suffix``; "" for plain text):
    decoded once, the whole input an error record when it is not text, the detected encoding
    noted on the first record."""
    decoded = decode_input(data, encoding)
    if decoded.error:
        yield error_record(1, decoded.error, source=source)
        return
    suffix = suffix.lower()
    if suffix == ".jsonl":
        records = _jsonl_records(decoded, field or "text", source)
    elif suffix == ".json":
        records = _json_records(decoded, field or "text", source)
    elif suffix == ".tsv":
        records = _tsv_records(decoded, field, source)
    else:
        records = _plain_records(decoded, lines, source)
    for rec in records:
        if decoded.notice:
            rec.warnings.insert(0, decoded.notice)
            decoded = Decoded()
        yield rec


def _plain_records(decoded: Decoded, lines: bool, source: str | None) -> Iterator[Record]:
    if not lines:
        text, warnings, error = decoded.finish(_strip_newline(decoded.text))
        yield error_record(1, error, source=source) if error else make_record(1, text, warnings=warnings, source=source)
        return
    for n, piece in enumerate(_split_lines(decoded.text), 1):
        if not piece.strip():
            continue  # blank lines separate records; they are not records
        text, warnings, error = decoded.finish(piece)
        yield error_record(n, error, source=source) if error else make_record(n, text, warnings=warnings, source=source)


def _jsonl_records(decoded: Decoded, key: str, source: str | None) -> Iterator[Record]:
    for n, piece in enumerate(_split_lines(decoded.text), 1):
        if not piece.strip():
            continue  # blank lines separate nothing in JSON Lines; they are not records
        line, warnings, error = decoded.finish(piece)
        if error:
            yield error_record(n, f"line {n}: {error}", source=source)
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield error_record(n, f"line {n}: malformed JSON ({exc.msg})", source=source)
            continue
        yield _object_record(obj, n, f"line {n}", key, source, warnings)


def _json_records(decoded: Decoded, key: str, source: str | None) -> Iterator[Record]:
    """A ``.json`` file: an array of record objects (id: ``id`` or the position from 1), or one."""
    text, warnings, error = decoded.finish(decoded.text)
    if error:
        yield error_record(1, error, source=source)
        return
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        yield error_record(1, f"malformed JSON at line {exc.lineno} ({exc.msg})", source=source)
        return
    items = doc if isinstance(doc, list) else [doc]
    yield from (_object_record(obj, n, f"item {n}", key, source, warnings) for n, obj in enumerate(items, 1))


def _object_record(obj: Any, n: int, where: str, key: str, source: str | None, warnings: list[str]) -> Record:
    """A record of one JSON object; ``n`` is its id when it has none. The id keeps its JSON type."""
    if not isinstance(obj, dict):
        return error_record(n, f"{where}: not a JSON object", source=source)
    rid = obj.get("id")
    if rid is None:
        rid = n
    elif not isinstance(rid, (str, int, float)) or (isinstance(rid, float) and not math.isfinite(rid)):
        return error_record(n, f"{where}: the id must be a string or a number, not {json.dumps(rid)}", source=source)
    text = obj.get(key)
    if not isinstance(text, str):
        problem = f"no {key!r} field" if key not in obj else f"field {key!r} is null" if text is None else f"field {key!r} is not a string"
        # The object stays on the record: a task may take its input from other fields (search: "keywords").
        return Record(rid, None, error=f"{where}: {problem}", warnings=list(warnings), source=source, fields=obj)
    return make_record(rid, text, warnings=warnings, source=source, fields=obj)


def _tsv_records(decoded: Decoded, column: str | None, source: str | None) -> Iterator[Record]:
    rows = _split_lines(decoded.text)
    index = 0
    start = 1
    if column is not None and not column.isdigit():
        header = (decoded.finish(rows[0])[0] or "") if rows else ""
        names = header.split("\t")
        if column not in names:
            raise ValueError(f"{source}: no column named {column!r} in the header ({', '.join(names)})")
        index, start = names.index(column), 2
        rows = rows[1:]
    elif column is not None:
        index = int(column)
    for n, piece in enumerate(rows, start):
        line, warnings, error = decoded.finish(piece)
        if error:
            yield error_record(n, f"line {n}: {error}", source=source)
            continue
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
    return path.suffix.lower() in (".jsonl", ".json", ".tsv")


def _strip_newline(text: str) -> str:
    """A document's trailing line break is the file's, not the text's (``echo`` adds one)."""
    return text.rstrip("\r\n")


def unique_ids(records: Iterable[Record]) -> Iterator[Record]:
    """Records with unique ids: a repeated id gets ``#2``, ``#3`` ... (the first free one), with a
    warning. Deterministic, so a resumed run names every record as the first run did and
    ``--resume`` never mistakes one record for another."""
    seen: set[str] = set()
    for rec in records:
        key = id_key(rec.id)
        if key in seen:
            n = 2
            while id_key(new := f"{rec.id}#{n}") in seen:
                n += 1
            rec.warnings.append(f"id {rec.id!r} repeats an earlier record's id; this record's id is {new!r}")
            rec.id, key = new, id_key(new)
        seen.add(key)
        yield rec


# ---------------------------------------------------------------------- writers
def format_jsonl(out: dict[str, Any]) -> str:
    """One output record as one JSON line (UTF-8 kept readable)."""
    return json.dumps(out, ensure_ascii=False) + "\n"


def format_text(out: dict[str, Any], label: str | None = None) -> str:
    """The output texts for people and pipes: a single best output on one line; an n-best list
    numbered, one per line, closed by a blank line. A failed record prints an empty line so that
    line-per-record output stays aligned with its input (the reason goes to stderr).
    Question-answer pairs (``pairs``, textgen qa) print as ``问：`` / ``答：`` lines, the record's
    block closed by a blank line. ``label`` (the record's id, for a directory run) starts each
    line, followed by a tab, so every line says where it comes from."""
    if out.get("pairs"):
        lines, block = [line for p in out["pairs"] for line in (f"问：{p['question']}", f"答：{p['answer']}")], True
    elif len(outputs := out.get("outputs") or []) <= 1:
        lines, block = [outputs[0]["text"] if outputs else ""], False
    else:
        lines, block = [f"{i}. {o['text']}" for i, o in enumerate(outputs, 1)], True
    if label is not None:
        lines = [f"{label}\t{line}" for line in lines]
    return "".join(line + "\n" for line in lines) + ("\n" if block else "")


def id_key(rid: RecordId) -> str:
    """A hashable, type-faithful key for comparing ids across runs (1 and "1" differ)."""
    return json.dumps(rid, ensure_ascii=False)


class NotOurOutput(ValueError):
    """``--resume`` was pointed at a file that is not textgen JSONL output."""


@dataclass
class Scan:
    """What a previous run left in a JSONL output file, for ``--resume``."""

    done: set[str]  # id keys of the records that succeeded: skipped
    failed: set[str]  # id keys of error records: retried, their lines dropped from ``keep``
    keep: bytes  # the file's content to continue from: whole lines of successful records
    changed: bool  # ``keep`` differs from the file (error records or a partial last line dropped)


def scan_output(data: bytes, name: str = "the output") -> Scan:
    """Read back a JSONL output. A last line without its newline (left by a hard kill or a full
    disk) is dropped, so the record is redone; error records are dropped, so their records are
    retried. A line that is not a JSON record with an id raises ``NotOurOutput``: resuming would
    mix this run's records into someone else's file."""
    complete = data[: data.rfind(b"\n") + 1]
    done: set[str] = set()
    failed: set[str] = set()
    kept: list[bytes] = []
    for n, line in enumerate(complete.splitlines(keepends=True), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            obj = None
        if not isinstance(obj, dict) or "id" not in obj:
            raise NotOurOutput(f"{name} is not textgen JSONL output (line {n} is not a record with an id); "
                               "pick another file, or drop --resume to overwrite it")
        key = id_key(obj["id"])
        if "error" in obj:
            failed.add(key)
        else:
            done.add(key)
            kept.append(line)
    keep = b"".join(kept)
    return Scan(done, failed - done, keep, keep != data)
