"""The title task's copy option: with copy=text every title is made of pieces of its article
(textgen.decoding.copy; tests/test_copy.py covers the modes in depth)."""

from __future__ import annotations

import pytest
from conftest import SENTENCES, load_task, task_config
from typer.testing import CliRunner

from textgen.cli.app import app
from textgen.io import Record


@pytest.mark.parametrize("beams", [1, 3])
def test_copy_keeps_every_title_token_inside_its_article(tiny_model, beams):
    task = load_task("title", tiny_model, model="tiny", copy=True)
    free = load_task("title", tiny_model, model="tiny")
    config = task_config("title", {"num_beams": beams, "max_new_tokens": 8, "min_new_tokens": 3})
    records = [Record(id=str(i), text=s) for i, s in enumerate(SENTENCES[:3])]
    strays = 0
    for rec, out, other in zip(records, task.run(records, config), free.run(records, config)):
        got = out.candidates[0].text.replace(" ", "")
        assert got and set(got) <= set(rec.text)
        strays += len(set(other.candidates[0].text) - set(rec.text))
    assert strays > 0  # the random model does stray from the article without the constraint


def test_copy_is_a_flag_of_the_title_command(tiny_model):
    r = CliRunner().invoke(app, ["title", "--model", str(tiny_model), "--copy", "text", "--min-new-tokens", "2", SENTENCES[0]])
    assert r.exit_code == 0, r.output
    assert set(r.stdout.strip()) <= set(SENTENCES[0])


@pytest.mark.parametrize("task_name,part", [("title", "first"), ("continue", "last")])
def test_a_long_input_is_reported_not_silently_cut(tiny_model, task_name, part):
    task = load_task(task_name, tiny_model, model="tiny", **({"heal": False} if task_name == "continue" else {}))
    config = task_config(task_name, {"max_new_tokens": 8, "do_sample": False, "num_beams": 1})
    limit = task.adapter.input_limit(8)
    long_text = "".join(SENTENCES) * 4
    assert len(task.adapter.encode(long_text)) > limit
    short, long = task.run([Record(id="s", text=SENTENCES[0]), Record(id="l", text=long_text)], config)
    assert not any("reads" in w for w in short.warnings)
    said = " ".join(long.warnings)
    if task_name == "title":  # a long article is shortened to clauses first, and the record says so
        assert f"the model reads {limit}" in said and "clauses" in said
    else:
        assert f"the model reads only its {part} {limit}" in said
    assert long.candidates and long.candidates[0].text  # still answered


def test_a_model_can_preset_copy_and_the_user_can_still_turn_it_off(tiny_model, tmp_path):
    import json
    import shutil

    model = tmp_path / "copying"
    shutil.copytree(tiny_model, model)
    meta = json.loads((model / "textgen.json").read_text(encoding="utf-8"))
    meta["options"] = {"title": {"copy": True}}
    (model / "textgen.json").write_text(json.dumps(meta), encoding="utf-8")
    assert load_task("title", model, model="m").settings["copy"] == "text"  # the boolean of earlier models
    assert load_task("title", model, model="m", copy="off").settings["copy"] == "off"
    assert load_task("title", tiny_model, model="m").settings["copy"] == "off"

    def titles(*flags: str) -> str:
        r = CliRunner().invoke(app, ["title", "--model", str(model), "--format", "jsonl", "--min-new-tokens", "3",
                                     "-n", "3", *flags, SENTENCES[1]])
        assert r.exit_code == 0, r.output
        return "".join(o["text"] for o in json.loads(r.stdout)["outputs"])

    assert set(titles()) <= set(SENTENCES[1])
    assert not set(titles("--copy", "off")) <= set(SENTENCES[1])  # the random model strays when free
