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
# Byte-order marks, UTF-32's first: its little-endian mark starts with UTF-16's.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_CHINESE = ("gb18030", "big5hkscs")  # tried on all input that is not UTF-8; on a tie, the first wins
_CLEAN = 0.5  # a Chinese reading scoring this (``_chinese_score``) is taken whatever else is guessed
_SCORED = 1 << 20  # characters of a reading that are scored (the start of a larger input)
SNIFF_BYTES = 4096  # streamed --lines input that is not UTF-8 is held until this much is read, then decided
_PLAIN = re.compile(r"[\t\n\r\f\v\x20-\x7e]")  # ASCII text: the same in every candidate, not scored
_HANZI = re.compile("[\u4e00-\u9fff]")  # CJK Unified Ideographs (common and rare)
# CJK and full-width punctuation, ideographic space, and the punctuation GB2312 and Big5 share.
_PUNCT = re.compile("[\u3000-\u303f\uff01-\uff5e\uffe0-\uffe5\u00b7\u2014\u2018\u2019\u201c\u201d\u2026\u2027]")
_common: re.Pattern[str] | None = None


def _common_hanzi() -> re.Pattern[str]:
    """The characters common in Chinese text: GB2312's level 1 (the 3,755 most used simplified
    characters) and Big5's frequent block A440-C67E (the 5,401 most used traditional ones)."""
    global _common
    if _common is None:
        chars = {bytes((lead, trail)).decode("gb2312", "ignore") for lead in range(0xB0, 0xD8) for trail in range(0xA1, 0xFF)}
        chars |= {bytes((lead, trail)).decode("big5", "ignore") for lead in range(0xA4, 0xC7)
                  for trail in (*range(0x40, 0x7F), *range(0xA1, 0xFF)) if (lead, trail) < (0xC6, 0x7F)}
        _common = re.compile("[" + "".join(sorted(chars - {""})) + "]")
    return _common


def _count(pattern: re.Pattern[str], text: str) -> int:
    return pattern.subn("", text)[1]


def _chinese_score(text: str) -> float:
    """How much a decoded text looks like Chinese, from -1 to 1, over its characters that are not
    plain ASCII: common hanzi and CJK punctuation count +1, rare hanzi 0, anything else -1
    (Hangul, kana, Latin letters, symbols, private use, control characters, undecodable bytes)
    -- what a Chinese text read in another encoding, or another text read as Chinese, turns into."""
    sample = text[:_SCORED]
    counted = len(sample) - _count(_PLAIN, sample)
    if not counted:
        return 0.0
    common, hanzi, punct = _count(_common_hanzi(), sample), _count(_HANZI, sample), _count(_PUNCT, sample)
    return (common + punct - (counted - hanzi - punct)) / counted


def _mark(exc: UnicodeError) -> tuple[str, int]:
    """An error handler for codecs whose undecodable bytes ``surrogateescape`` refuses (an ASCII
    byte left over in UTF-16): each is marked as ``_ESCAPED`` finds it."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return "\udcff" * (exc.end - exc.start), exc.end


codecs.register_error("textgen-mark", _mark)


def _decode(data: bytes, codec: str) -> str:
    """``data`` in ``codec``, undecodable bytes kept as lone surrogates (see ``Decoded``)."""
    try:
        return data.decode(codec, "surrogateescape")
    except UnicodeDecodeError:
        return data.decode(codec, "textgen-mark")


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
    """Text of one input (a file, stdin, a stream's first few KB, one streamed line); see the
    module docstring.

    ``encoding`` decodes as named. Otherwise: compressed data is an error; UTF-8 (a few stray
    bytes replaced) is UTF-8; a UTF-16 or UTF-32 byte-order mark names its encoding; anything
    else is decided on all of ``data`` by ``_detect``, Chinese first."""
    if encoding is not None:
        codec = check_encoding(encoding)
        codec = "utf-8-sig" if codec == "utf-8" else codec
        return Decoded(_decode(data, codec), codec.removesuffix("-sig"), strict=True)
    for magic, kind in _COMPRESSED.items():
        if data.startswith(magic):
            return Decoded(error=f"{kind}-compressed data, not text: decompress it first")
    if b"\x00" not in data:  # NUL never occurs in UTF-8 text; binary data and UTF-16 hold it
        text = data.decode("utf-8-sig", "surrogateescape")
        stray = len(text) - len(text.encode("utf-8", "ignore").decode("utf-8"))  # the escapes: C speed
        non_ascii = len(text) - len(text.encode("ascii", "ignore"))
        if not stray or stray <= non_ascii - stray:  # UTF-8, maybe a few stray bytes
            return Decoded(text)
    for bom, codec in _BOMS:  # after UTF-8: UTF-8 text with two stray bytes first is still UTF-8
        if data.startswith(bom):
            return Decoded(_decode(data, codec), codec, strict=True,
                           notice=f"read as {codec} (not UTF-8; it starts with a {codec} byte-order mark)")
    return _detect(data)


@dataclass(frozen=True)
class _Reading:
    """``data`` read in one candidate encoding, scored by ``_chinese_score``."""

    codec: str
    text: str
    score: float

    @property
    def clean(self) -> bool:  # every byte decoded
        return not _ESCAPED.search(self.text)


def _read_as(data: bytes, codec: str) -> _Reading:
    text = _decode(data, codec)
    return _Reading(codec, text, _chinese_score(text))


def _detect(data: bytes) -> Decoded:
    """The encoding of bytes that are not UTF-8, decided on all of them, Chinese first.

    GB18030 (a superset of GBK and GB2312) and Big5-HKSCS read every input; each reading is
    scored by how much of it is common Chinese (``_chinese_score``), so GBK read as Big5 (or
    Big5 as GBK: kana, private-use and rare characters) loses to the right reading, and a short
    input whose two readings tie is GB18030. The best Chinese reading is taken when it scores at
    least ``_CLEAN``, whatever charset-normalizer guesses (it takes a line or two of GBK for Big5
    or cp949). Only when no Chinese reading is that good is charset-normalizer's guess taken
    (Shift-JIS, cp1252, UTF-16 without a byte-order mark ...); no guess means binary data. The
    price: Korean EUC-KR/cp949 text, whose Hangul bytes are GB2312's common hanzi, is read as
    GB18030. So the notice names the other encodings that decode every byte (charset-normalizer's
    guess among them): the ones to try with ``--encoding`` when the choice is wrong."""
    readings = [_read_as(data, codec) for codec in _CHINESE]
    best = max(readings, key=lambda r: r.score)  # the first of equals: the order of _CHINESE
    import charset_normalizer

    guess = charset_normalizer.from_bytes(data).best()
    other = None
    if guess is not None:
        codec = codecs.lookup(_SUPERSET.get(guess.encoding, guess.encoding)).name  # utf_16 -> utf-16
        other = next((r for r in readings if r.codec == codec), None) or _read_as(data, codec)
    chosen = best if best.score >= _CLEAN else other
    if chosen is None:
        return Decoded(error="binary data, not text (if it is text, name its encoding with --encoding)")
    if chosen.codec == "utf-8":  # UTF-8 with NUL characters: nothing to say
        return Decoded(chosen.text)
    possible = [r.codec for r in sorted(readings, key=lambda r: -r.score) if r is not chosen and r.clean and r.score > 0]
    if other is not None and other is not chosen and other.clean and other.codec not in possible:
        possible.append(other.codec)
    if possible:
        many = len(possible) > 1
        notice = (f"read as {chosen.codec} (not UTF-8); {' or '.join(possible)} {'were' if many else 'was'} also "
                  f"possible: name {'one' if many else 'it'} with --encoding")
    else:
        notice = f"read as {chosen.codec} (not UTF-8, detected): name another encoding with --encoding"
    return Decoded(chosen.text, chosen.codec, strict=True, notice=notice)


def _split_lines(text: str) -> list[str]:
    """Lines as ``bytes.splitlines`` cuts them (``\\n``, ``\\r\\n``, ``\\r``), on decoded text so
    that UTF-16 input splits right too."""
    lines = re.split(r"\r\n|\r|\n", text)
    return lines[:-1] if lines and lines[-1] == "" else lines


# ---------------------------------------------------------------------- readers
def read_text(text: str, *, lines: bool = False, encoding: str | None = None) -> list[Record]:
    """One document (id 1), or with ``lines`` one record per non-blank line (id = line number).

    A command-line argument that held bytes which are not UTF-8 reaches Python as surrogate
    escapes; its bytes are decoded as a file's are (``encoding`` applies too). A list, like
    ``read_path``'s: ``unique_ids`` sees every id before it renames one."""
    return list(_records(text.encode("utf-8", "surrogateescape"), "", lines, None, None, encoding))


def read_stream(stream: BinaryIO, *, lines: bool = False, encoding: str | None = None) -> Iterator[Record]:
    """Records from a byte stream (stdin). Without ``lines`` the whole stream is one document.

    With ``lines``, UTF-8 lines are yielded as they arrive, so ``tail -f log | textgen title
    --lines --batch-size 1`` answers line by line. From the first line that is not UTF-8 on,
    lines are held until ``SNIFF_BYTES`` have been read (or the stream ends) and the encoding is
    decided once, on all the held bytes (``decode_input``: a line or two of GBK can pass for
    Big5 or cp949, a few KB cannot); the held lines and every later line that is not UTF-8 are
    then read in it (UTF-8 lines stay UTF-8), and the first of them says which. UTF-16 and
    UTF-32 are read to the end and split after decoding (their line breaks are not 0x0A bytes).
    ``encoding`` (``--encoding``) decodes every line as named, without holding any."""
    if not lines:
        yield from _records(stream.read(), "", False, None, None, encoding)
        return
    numbered = enumerate(stream, 1)
    if encoding is not None:
        for n, raw in numbered:
            yield from _line_record(n, decode_input(raw, encoding))
        return
    held: list[tuple[int, bytes]] = []
    size = 0
    for n, raw in numbered:
        if not held and _is_utf8(raw):
            yield from _line_record(n, decode_input(raw))
            continue
        held.append((n, raw))
        size += len(raw)
        if size >= SNIFF_BYTES:
            break
    if not held:
        return
    decided = decode_input(b"".join(raw for _, raw in held))
    if not decided.error and codecs.lookup(decided.codec).name.startswith(("utf-16", "utf-32")):
        whole = decode_input(b"".join(raw for _, raw in held) + b"".join(raw for _, raw in numbered))
        if whole.error:
            yield error_record(held[0][0], whole.error)
            return
        for i, rec in enumerate(_plain_records(whole, True, None)):
            rec.id = int(rec.id) + held[0][0] - 1
            if i == 0 and whole.notice:
                rec.warnings.insert(0, whole.notice)
            yield rec
        return
    notice = decided.notice
    for n, raw in (line for part in (held, numbered) for line in part):
        if _is_utf8(raw):
            yield from _line_record(n, decode_input(raw))
        elif decided.error:
            yield error_record(n, decided.error)
        else:
            for rec in _line_record(n, Decoded(_decode(raw, decided.codec), decided.codec, strict=decided.strict)):
                if notice:
                    rec.warnings.insert(0, notice)
                    notice = None
                yield rec


def _line_record(n: int, decoded: Decoded) -> Iterator[Record]:
    """The record of one streamed line (none for a blank line)."""
    if decoded.error:
        yield error_record(n, decoded.error)
        return
    text, warnings, error = decoded.finish(_strip_newline(decoded.text))
    if error:
        yield error_record(n, error)
    elif text.strip():
        yield make_record(n, text, warnings=warnings)


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
) -> list[Record]:
    """Records of a file, or of every file under a directory matching ``glob`` (sorted).

    In a directory, a file that cannot be read is an error record and a folder that cannot be
    listed is reported to ``on_skip``; both leave the rest to run. Files and folders whose
    ``(st_dev, st_ino)`` is in ``exclude`` (the run's own outputs) are left out. A list, not a
    stream: ``unique_ids`` then knows every id before it renames one (so a rename never takes an
    id that comes later)."""
    if not path.is_dir():
        return list(read_file(path, lines=lines, field=field, source=path.name, encoding=encoding))
    records: list[Record] = []
    for file in list_files(path, glob, exclude=set(exclude), on_skip=on_skip):
        rel = file.relative_to(path).as_posix()
        try:
            data = file.read_bytes()
        except OSError as exc:
            records.append(error_record(rel, f"cannot read {rel}: {exc.strerror or exc}", source=rel))
            continue
        records += _prefixed(_records(data, file.suffix, lines, field, rel, encoding), rel, multi=_is_table(file) or lines)
    return records


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


_HEADER_CELL = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,31}")  # a column name: a short ASCII identifier


def _tsv_records(decoded: Decoded, column: str | None, source: str | None) -> Iterator[Record]:
    """One record per row of a ``.tsv`` (id = line number); ``column`` (``--field``) is the
    text's column: an index from 0, or a name from the header row.

    The first row is a header, not a record, when
      * ``column`` is a name: the first row must then name it, else ``ValueError``; or
      * every cell of the first row is a short ASCII identifier (a letter or ``_``, then letters,
        digits, ``_`` or ``-``; 32 characters at most) and one of them contains "text" (any
        case): ``id<TAB>text``, ``title<TAB>fulltext``.
    Then the records start at id 2 and, with no ``column``, the text is the column named "text"
    (else the first whose name contains "text"). Any other first row is data: ``title<TAB>content``
    is a header only for ``--field content`` (or ``--field title``), and a row of Chinese cells
    or of words with spaces is always a record. The rule depends on the row alone for an index
    ``column``, so reading two columns of one file (``eval title``) skips the same header."""
    rows = _split_lines(decoded.text)
    first = (decoded.finish(rows[0])[0] or "") if rows else ""
    names = first.split("\t")
    named = column is not None and not column.isdigit()
    header = named or (bool(rows) and all(_HEADER_CELL.fullmatch(name) for name in names)
                       and any("text" in name.lower() for name in names))
    index = 0
    if named:
        if column not in names:
            raise ValueError(f"{source}: no column named {column!r} in the header ({', '.join(names)})")
        index = names.index(column)
    elif column is not None:
        index = int(column)
    elif header:
        lowered = [name.lower() for name in names]
        index = lowered.index("text") if "text" in lowered else next(i for i, name in enumerate(lowered) if "text" in name)
    start = 1
    if header:
        rows, start = rows[1:], 2
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
    """Records with unique ids: a record whose id an earlier record has is renamed ``ID#N``, with
    a warning, N the first number from 2 whose name is free. A record whose id no earlier record
    has keeps it. Deterministic, so a resumed run names every record as the first run did and
    ``--resume`` never mistakes one record for another.

    A list (or any collection that is not an iterator: ``read_path``, ``read_text``) is scanned
    first, and a name any of its records has is never free: ``dup, dup, dup#2`` become ``dup,
    dup#3, dup#2``. A stream (an iterator: ``read_stream``) cannot be scanned ahead, so a name is
    free when no earlier record has it, as given or as renamed; a later record that carries a
    name a rename took repeats an earlier record's id and is renamed in turn (``dup, dup, dup#2``
    become ``dup, dup#2, dup#2#2``). Either way no two output ids are equal."""
    reserved: set[str] = set()  # ids a rename must not take: all the ids of a list
    if not isinstance(records, Iterator):
        records = list(records)
        reserved = {id_key(rec.id) for rec in records}
    used: set[str] = set()  # the output ids so far
    renamed: dict[str, RecordId] = {}  # output id key -> the id a renamed record had
    for rec in records:
        key = id_key(rec.id)
        if key in used:
            n = 2
            while (new_key := id_key(new := f"{rec.id}#{n}")) in used or new_key in reserved:
                n += 1
            if key in renamed:
                rec.warnings.append(f"id {rec.id!r} was given to an earlier record (whose id was {renamed[key]!r}); "
                                    f"this record's id is {new!r}")
            else:
                rec.warnings.append(f"id {rec.id!r} repeats an earlier record's id; this record's id is {new!r}")
            renamed[new_key] = rec.id
            rec.id, key = new, new_key
        used.add(key)
        yield rec


# ---------------------------------------------------------------------- resuming
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
    # (task, model) -> how many records name them ("task" and "model" of each record): whose output it is
    made_by: dict[tuple[str, str], int] = field(default_factory=dict)
    made_with: dict[str, Any] | None = None  # the "textgen" record (version, settings) of the last record that has one


def scan_output(data: bytes, name: str = "the output") -> Scan:
    """Read back a JSONL output. A last line without its newline (left by a hard kill or a full
    disk) is dropped, so the record is redone; error records are dropped, so their records are
    retried. A line that is not a JSON record with an id raises ``NotOurOutput``: resuming would
    mix this run's records into someone else's file. ``made_by`` counts the (task, model) pairs
    the records name, so a caller can refuse another task's or model's output."""
    complete = data[: data.rfind(b"\n") + 1]
    done: set[str] = set()
    failed: set[str] = set()
    kept: list[bytes] = []
    made_by: dict[tuple[str, str], int] = {}
    made_with = None
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
        if isinstance(obj.get("task"), str) and isinstance(obj.get("model"), str):
            made_by[obj["task"], obj["model"]] = made_by.get((obj["task"], obj["model"]), 0) + 1
        if isinstance(obj.get("textgen"), dict):
            made_with = obj["textgen"]
        if "error" in obj:
            failed.add(key)
        else:
            done.add(key)
            kept.append(line)
    keep = b"".join(kept)
    return Scan(done, failed - done, keep, keep != data, made_by, made_with)
