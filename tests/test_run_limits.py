"""Sizes a run cannot serve are refused before any work; large legal ones keep memory bounded.

A newcomer's `textgen continue -n 100000 "今天天气"` filled 23 GB, and `textgen title --method
write -n 100000` 22.7 GB: the beam was widened to 100,000 rows, the samples decoded in one pass.
"""

from __future__ import annotations

import pytest

import textgen.decoding.search as search
from conftest import run
from test_decoding import ScriptedAdapter, markov
from textgen.decoding import generate
from textgen.decoding.config import MAX_BEAMS, DecodingConfig, build_config


def test_an_impossible_beam_is_refused_in_one_line(tiny_model):
    done = run("title", "--model", str(tiny_model), "--method", "write", "-n", "100000", "今天天气很好，我们去公园散步。")
    assert done.exit_code == 2 and "Traceback" not in done.output
    assert f"more than beam search keeps ({MAX_BEAMS})" in done.output
    with pytest.raises(ValueError, match="more than a run returns"):
        DecodingConfig(do_sample=True, num_return_sequences=10_000_000)


def test_many_samples_are_drawn_in_passes_of_bounded_size(monkeypatch):
    monkeypatch.setattr(search, "SAMPLE_ROWS", 8)
    adapter = ScriptedAdapter(6, markov(6, seed=1, eos_bias=1.0))
    widths = []
    real_start = adapter.start
    adapter.start = lambda inputs, n: widths.append(len(inputs)) or real_start(inputs, n)
    config = build_config({"do_sample": True, "num_return_sequences": 20, "max_new_tokens": 5, "seed": 0})
    (hyps,) = generate(adapter, [[1, 2]], config)
    assert len(hyps) == 20  # every sample asked for
    assert widths == [1, 1, 1]  # three passes (8 + 8 + 4 samples), each over the one input
    assert max(len(r) for r in adapter.reorders) <= 8  # never more than SAMPLE_ROWS rows at once
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
    again = generate(adapter, [[1, 2]], config)[0]
    assert [h.token_ids for h in again] == [h.token_ids for h in hyps]  # the seed still decides


def test_a_large_legal_n_of_continuations_runs(tiny_model, monkeypatch):
    monkeypatch.setattr(search, "SAMPLE_ROWS", 16)
    done = run("continue", "--model", str(tiny_model), "-n", "40", "--max-new-tokens", "3", "--format", "jsonl", "今天天气")
    assert done.exit_code == 0, done.output
    assert done.stdout.count('"text"') == 40
