"""The title task's copy constraint: every generated token comes from the article."""

from __future__ import annotations

import pytest
from conftest import SENTENCES
from typer.testing import CliRunner

from textgen.cli.app import app
from textgen.io import Record
from textgen.tasks import TASKS, build_config, load_task


@pytest.mark.parametrize("beams", [1, 3])
def test_copy_keeps_every_title_token_inside_its_article(tiny_model, beams):
    task = load_task("title", tiny_model, model="tiny", copy=True)
    free = load_task("title", tiny_model, model="tiny")
    config = build_config(TASKS["title"].defaults, {"num_beams": beams, "max_new_tokens": 8, "min_new_tokens": 3})
    records = [Record(id=str(i), text=s) for i, s in enumerate(SENTENCES[:3])]
    tokenizer = task.adapter.tokenizer
    strays = 0
    for rec, out, other in zip(records, task.run(records, config), free.run(records, config)):
        source = set(tokenizer.encode(rec.text))
        got = tokenizer.encode(out["outputs"][0]["text"])
        assert got and set(got) <= source
        strays += len(set(tokenizer.encode(other["outputs"][0]["text"])) - source)
    assert strays > 0  # the random model does stray from the article without the constraint


def test_copy_is_a_flag_of_the_title_command(tiny_model):
    r = CliRunner().invoke(app, ["title", "--model", str(tiny_model), "--copy", "--min-new-tokens", "2", SENTENCES[0]])
    assert r.exit_code == 0, r.output
    assert set(r.stdout.strip()) <= set(SENTENCES[0])
