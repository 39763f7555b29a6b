"""Decoding settings from the command line: bad values are usage errors before any record,
settings the strategy ignores are warned about, and ``--max-new-tokens`` is fitted to the model's
window (a default shortened with a warning, an explicit value that leaves no room refused). Through
the real command line with tiny random models (issue 10).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import jsonl, one_line_error, run, save_tiny_model

ARTICLE = "今天上午，市图书馆新馆正式向读者开放，馆内藏书超过一百万册。"


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_temperature_is_a_usage_error(value: str, tiny_model: Path):
    result = run("continue", "-m", tiny_model, "--temperature", value, "今天")
    assert result.exit_code == 2 and "temperature must be a finite number" in result.stderr


def test_sampling_flags_with_beam_search_are_warned_about(tiny_model: Path):
    result = run("title", "-m", tiny_model, "--top-p", 0.5, "--temperature", 0.7, ARTICLE)
    assert result.exit_code == 0, result.output
    assert "--top-p is ignored" in result.stderr and "--temperature is ignored" in result.stderr


# ---------------------------------------------------------------------- lengths and the model's window
def test_a_default_length_that_does_not_fit_a_short_window_is_shortened(tmp_path: Path):
    model = save_tiny_model(tmp_path / "short", max_positions=40)  # continue's default: 64 new tokens
    result = run("continue", "-m", model, "-f", "jsonl", "今天上午")
    assert result.exit_code == 0, result.output
    assert "generating at most" in result.stderr and jsonl(result.stdout)[0]["outputs"]
    refused = run("continue", "-m", model, "--max-new-tokens", 60, "今天上午")
    assert refused.exit_code == 2 and "lower --max-new-tokens" in refused.stderr


def test_a_max_new_tokens_that_leaves_no_room_is_refused_before_the_run(tiny_model: Path, tmp_path: Path):
    out = tmp_path / "out.jsonl"
    result = run("title", "-m", tiny_model, "--max-new-tokens", 127, "-f", "jsonl", "-o", out, ARTICLE)
    line = one_line_error(result, 2)
    assert "max_new_tokens=127 leaves no room" in line and "--max-new-tokens" in line
    assert not out.exists()
