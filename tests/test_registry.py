"""Model resolution: local directories, embedded names, the HF cache; never a download."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import save_tiny_model

from textgen.models import registry
from textgen.models.registry import ModelNotFound, list_models, resolve
from textgen.tasks import DEFAULT_MODELS


def fake_hf_repo(cache: Path, repo_id: str, files: dict[str, str]) -> Path:
    """The layout huggingface_hub writes: blobs, a snapshot of symlinks, refs/main."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for i, (name, content) in enumerate(files.items()):
        blob = repo / "blobs" / f"blob{i}"
        blob.write_text(content, encoding="utf-8")
        os.symlink(os.path.relpath(blob, snapshot), snapshot / name)
    return snapshot


@pytest.fixture
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "embedded"
    model = root / "mini-zh"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (model / "textgen.json").write_text(
        json.dumps(
            {
                "name": "mini-zh",
                "tasks": ["title", "continue"],
                "decoding": {"title": {"num_beams": 3}},
            }
        )
    )
    monkeypatch.setattr(registry, "EMBEDDED_DIR", root)
    return model


def test_local_directory(tiny_model: Path):
    info = resolve(str(tiny_model))
    assert (info.source, info.path, info.tasks) == ("local", tiny_model.resolve(), ("title", "continue"))
    assert info.size_bytes > 0
    assert info.decoding["title"]["max_new_tokens"] == 8


def test_directory_without_config_is_refused(tmp_path: Path):
    with pytest.raises(ModelNotFound, match="not a model directory"):
        resolve(str(tmp_path))
    with pytest.raises(ModelNotFound, match="no such file or directory"):
        resolve(str(tmp_path / "nothing"))


def test_embedded_name(embedded: Path):
    info = resolve("mini-zh")
    assert (info.name, info.source, info.path) == ("mini-zh", "embedded", embedded)
    assert info.decoding == {"title": {"num_beams": 3}}


def test_hf_cache_hit_and_tasks_inferred_from_config(user_env: dict[str, str]):
    cache = Path(user_env["HF_HUB_CACHE"])
    snapshot = fake_hf_repo(cache, "someone/t5-zh", {"config.json": json.dumps({"is_encoder_decoder": True})})
    info = resolve("someone/t5-zh")
    assert (info.source, info.path, info.tasks) == ("hf-cache", snapshot, ("title",))
    assert info.size_bytes == len(json.dumps({"is_encoder_decoder": True}))


def test_unknown_names_list_what_is_available(embedded: Path, user_env: dict[str, str]):
    fake_hf_repo(
        Path(user_env["HF_HUB_CACHE"]),
        "someone/gpt-zh",
        {"config.json": json.dumps({"architectures": ["GPT2LMHeadModel"]})},
    )
    with pytest.raises(ModelNotFound) as err:
        resolve("no-such-model")
    message = str(err.value)
    assert "'no-such-model'" in message and "mini-zh" in message and "someone/gpt-zh" in message
    assert "\n" not in message


def test_uncached_hub_id_says_how_to_fetch_and_downloads_nothing(
    monkeypatch: pytest.MonkeyPatch, user_env: dict[str, str]
):
    with pytest.raises(ModelNotFound, match="HF_HUB_OFFLINE is set"):
        resolve("org/absent")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(ModelNotFound, match="hf download org/absent"):
        resolve("org/absent")
    assert not any(Path(user_env["HF_HUB_CACHE"]).glob("models--org--absent*"))


def test_list_models_as_json(embedded: Path, user_env: dict[str, str]):
    fake_hf_repo(
        Path(user_env["HF_HUB_CACHE"]),
        "someone/gpt-zh",
        {"config.json": json.dumps({"architectures": ["GPT2LMHeadModel"]}), "model.safetensors": "x" * 10},
    )
    rows = [m.to_json() for m in list_models()]
    assert [(r["name"], r["source"], r["tasks"]) for r in rows] == [
        ("mini-zh", "embedded", ["title", "continue"]),
        ("someone/gpt-zh", "hf-cache", ["continue", "search"]),  # a causal LM also scores search
    ]
    assert set(rows[0]) == {"name", "source", "path", "size_bytes", "tasks", "family"}
    assert rows[1]["size_bytes"] > 10
    json.dumps(rows)  # serialisable


def test_a_model_that_is_a_file_and_an_embedded_name_shadowed_by_a_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    Path("notes.txt").write_text("不是模型", encoding="utf-8")
    with pytest.raises(ModelNotFound, match="is a file but not a GGUF model; a model is a .gguf file or a directory"):
        resolve("notes.txt")
    name = DEFAULT_MODELS["title"]
    save_tiny_model(tmp_path / name)
    info = resolve(name)
    assert info.source == "embedded" and "./" + name in info.note
    assert resolve("./" + name).source == "local"
