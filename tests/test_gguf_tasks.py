"""Every task on a GGUF chat model: a tiny random Qwen2 file (tests/tiny_gguf.py, the real Qwen2
byte-level vocabulary) through the runner and the command line, as a user runs a llama.cpp model.

The outputs of random weights are gibberish, so the tests check what textgen adds and guarantees:
copy constraints (a title made of pieces of the article), answer spans, healing, the search scorer,
the borrowed extractor of summaries, one loaded file serving every task, and the model's resolution
(a file, a folder holding one).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="the gguf extra (llama-cpp-python) is not installed")

from conftest import jsonl, run  # noqa: E402
from test_gguf import QWEN_TOKENIZER  # noqa: E402
from tiny_gguf import write_tiny_qwen2  # noqa: E402

from textgen.config import Settings  # noqa: E402
from textgen.io import Record  # noqa: E402
from textgen.runner import Runner  # noqa: E402

ARTICLE = "今天上午，市图书馆新馆正式向读者开放，馆内藏书超过一百万册。新馆位于城市东部，共有五层。"


@pytest.fixture(scope="module")
def chat_gguf(tmp_path_factory) -> Path:
    if not (QWEN_TOKENIZER / "vocab.json").is_file():
        pytest.skip(f"the Qwen2 tokenizer files are not in {QWEN_TOKENIZER}")
    folder = tmp_path_factory.mktemp("gguf-model")
    write_tiny_qwen2(folder / "tiny-chat.gguf", QWEN_TOKENIZER, context_length=512, eos_bias=2.0)
    return folder / "tiny-chat.gguf"


def _runner() -> Runner:
    return Runner(Settings(), device="cpu", threads=1)


def test_a_gguf_file_and_its_folder_resolve_to_the_gguf_family(chat_gguf: Path):
    runner = _runner()
    for spec in (str(chat_gguf), str(chat_gguf.parent)):
        info = runner.resolve("title", spec)
        assert info.family == "gguf" and info.path == chat_gguf.resolve() and info.serves("qa")


def test_one_loaded_file_serves_every_task(chat_gguf: Path, monkeypatch: pytest.MonkeyPatch):
    """The chat prompt belongs to the task: switching tasks (the REPL's :task) reuses the weights."""
    import textgen.models.gguf as gguf

    loads = []
    real = gguf.load_gguf
    monkeypatch.setattr(gguf, "load_gguf", lambda *a, **kw: loads.append(a) or real(*a, **kw))
    runner = _runner()
    adapters = {runner.job(task, str(chat_gguf)).task.adapter for task in ("title", "continue", "qa", "search", "title")}
    assert len(adapters) == 1 and len(loads) == 1


def test_title_with_the_text_copy_constraint_is_made_of_the_article(chat_gguf: Path):
    job = _runner().job("title", str(chat_gguf), options={"copy": "text"},
                        decoding={"num_beams": 2, "max_new_tokens": 12, "min_new_tokens": 3})
    assert job.task.settings["copy"] == "text"
    out = job.task.run([Record(1, ARTICLE)], job.config)[0]
    assert out.error is None and out.text
    # every character of the title is text of the article (pieces of it, joined)
    assert all(ch in ARTICLE for ch in out.text), out.text


def test_a_chat_model_defaults_to_copying_titles():
    from textgen.tasks import TASKS

    assert TASKS["title"].chat_defaults == {"copy": "text"} and TASKS["qa"].chat_defaults["question_beams"] > 1
    assert TASKS["summarize"].chat_defaults == {"extract_only": True}


def test_qa_answers_are_spans_of_the_passage(chat_gguf: Path):
    job = _runner().job("qa", str(chat_gguf), options={"check": False},
                        decoding={"num_return_sequences": 2, "seed": 0, "max_new_tokens": 8})
    out = job.task.run([Record(1, ARTICLE)], job.config)[0]
    assert out.error is None and out.pairs
    for pair in out.pairs:
        assert ARTICLE[pair.start : pair.start + len(pair.answer)] == pair.answer
        assert pair.question.endswith("？")


def test_continue_heals_a_prompt_that_ends_inside_a_token(chat_gguf: Path):
    """With the real 151k vocabulary, 图书 ends a prompt inside 图书馆: healing backs it off and the
    output re-spells it; only the new text is returned."""
    runner = _runner()
    config = {"do_sample": False, "repetition_penalty": 1.0, "max_new_tokens": 4}
    on = runner.job("continue", str(chat_gguf), options={"heal": True}, decoding=config)
    prepared = on.task.prepare(["市图书"], on.config)
    assert prepared.hidden_lead[0], "nothing was backed off"
    out = on.task.run([Record(1, "市图书")], on.config)[0]
    assert out.error is None


def test_search_scores_sentences_with_the_gguf_model(chat_gguf: Path):
    from textgen.search.lm import StepScorer

    job = _runner().job("search", str(chat_gguf), options={"steps": 4, "chains": 1}, decoding={"seed": 0})
    scorer = job.task.searcher().scorer
    assert isinstance(scorer, StepScorer)
    a, b = scorer.sentence_logp(["春天到了。", "春天到了，公园里的花都开了。"]).tolist()
    assert a < 0 and b < a  # a longer sentence is less likely
    out = job.task.run([Record(1, "春天 公园")], job.config)[0]
    assert out.error is None and "春天" in out.text and "公园" in out.text


def test_summarize_borrows_the_default_models_extractor(chat_gguf: Path):
    job = _runner().job("summarize", str(chat_gguf), options={"extract_only": True})
    pipeline = job.task.pipeline()
    assert type(pipeline.extractor).__name__ == "Extractor"  # mini-zh's, not the lead rule
    out = job.task.run([Record(1, ARTICLE * 3)], job.config)[0]
    assert out.error is None and out.extras["extraction"]["method"] != "lead rule"


def test_the_command_line_runs_tasks_on_a_gguf_file(chat_gguf: Path, tmp_path: Path):
    article = tmp_path / "a.txt"
    article.write_text(ARTICLE, encoding="utf-8")
    done = run("title", "--model", str(chat_gguf), "-i", str(article), "--format", "jsonl", "--max-new-tokens", "8")
    assert done.exit_code == 0, done.output
    (out,) = jsonl(done.stdout)
    assert out["task"] == "title" and out["outputs"] and all(ch in ARTICLE for ch in out["outputs"][0]["text"])
    bad = run("title", "--model", str(tmp_path / "none.gguf"), "今天天气很好")
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def test_a_hostile_template_in_a_gguf_file_is_a_one_line_error(tmp_path: Path):
    if not (QWEN_TOKENIZER / "vocab.json").is_file():
        pytest.skip(f"the Qwen2 tokenizer files are not in {QWEN_TOKENIZER}")
    hostile = "{{ cycler.__init__.__globals__.os.popen('touch " + str(tmp_path / "pwned") + "').read() }}"
    path = write_tiny_qwen2(tmp_path / "hostile.gguf", QWEN_TOKENIZER, chat_template=hostile)
    done = run("title", "--model", str(path), ARTICLE)
    assert done.exit_code != 0 and "Traceback" not in done.output
    assert not (tmp_path / "pwned").exists()
    assert any("template" in line for line in done.output.splitlines() if "error" in line), done.output
