"""A summary never states a number or a web address its document lacks, whatever the method.

A newcomer's default summaries turned 十八万元 into 十八大, 12.6 km into 1.2公里 and made up a URL.
The generator is a tiny random model here, so what it writes is replaced by scripted texts
(``SummarizeTask.decode``), and the task's guard is what is tested.
"""

from __future__ import annotations

import pytest

from conftest import load_task, task_config
from test_summarize import summarize_model  # noqa: F401 -- the fixture
from textgen.io import Record
from textgen.output import Candidate
from textgen.summarize.faithful import invented
from textgen.tasks.summarize import SummarizeTask

DOC = ("原告与被告签订买卖合同，约定货款十八万元。被告收货后未付款。本院认为，被告应当支付货款十八万元。"
       "涉案道路全长12.6公里。")


def test_invented_finds_numbers_chinese_numerals_and_addresses():
    assert invented("被告赔偿十八大，全长1.2公里，见www.court.example.com", DOC) == ["1.2", "十八", "www.court.example.com"]
    assert invented("被告应支付货款十八万元，道路全长12.6公里。", DOC) == []
    assert invented("一些人认为", DOC) == []  # single numerals are words, not numbers


def scripted(texts: dict[str, str], calls: list[str]):
    def decode(self, records, config, on_text=None):
        calls.append(self.settings["copy"])
        return [self.output(rec, [Candidate(texts[self.settings["copy"]], -1.0)]) for rec in records]

    return decode


def test_an_invented_number_is_written_again_under_the_copy_constraint(summarize_model, monkeypatch):  # noqa: F811
    calls: list[str] = []
    monkeypatch.setattr(SummarizeTask, "decode", scripted({"off": "被告赔偿十八大。", "text": "被告应当支付货款十八万元。"}, calls))
    task = load_task("summarize", summarize_model, copy="off")
    out = task.run([Record(1, DOC)], task_config("summarize", {"max_new_tokens": 8}))[0]
    assert calls == ["off", "text"]
    assert out.text == "被告应当支付货款十八万元。" and not invented(out.text, DOC)
    assert any("十八" in w and "copy text" in w for w in out.warnings)


def test_when_copying_invents_too_the_summary_is_the_extraction(summarize_model, monkeypatch):  # noqa: F811
    calls: list[str] = []
    monkeypatch.setattr(SummarizeTask, "decode", scripted({"text": "详见www.made-up.example.com"}, calls))
    task = load_task("summarize", summarize_model, copy="text")
    out = task.run([Record(1, DOC)], task_config("summarize", {"max_new_tokens": 8}))[0]
    assert calls == ["text"]  # already copying: nothing to write again
    extraction = out.extras["extraction"]
    assert out.text == "".join(extraction["texts"]) and all(t in DOC for t in extraction["texts"])
    assert not invented(out.text, DOC)
    assert any("key clauses themselves" in w for w in out.warnings)


@pytest.mark.parametrize("n", [1, 3])
def test_faithful_candidates_are_kept_and_the_others_dropped(summarize_model, monkeypatch, n):  # noqa: F811
    def decode(self, records, config, on_text=None):
        texts = ["道路全长1.2公里。", "道路全长12.6公里。", "货款十八万元。"][:n] if n > 1 else ["道路全长12.6公里。"]
        return [self.output(rec, [Candidate(t, -1.0) for t in texts]) for rec in records]

    monkeypatch.setattr(SummarizeTask, "decode", decode)
    task = load_task("summarize", summarize_model, copy="off")
    out = task.run([Record(1, DOC)], task_config("summarize", {"num_beams": 3, "num_return_sequences": n, "max_new_tokens": 8}))[0]
    assert [c.text for c in out.candidates] == (["道路全长12.6公里。", "货款十八万元。"] if n > 1 else ["道路全长12.6公里。"])
