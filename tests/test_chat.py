"""Chat models (textgen/models/chat.py): prompts rendered with a chat template, parity with
``generate()``, copy constraints and token healing on the real Qwen2 tokenizer, streaming.

Two tiny random models built here: a Llama over a trained byte-level BPE with Llama 3's chat tokens
(always runs) and a Qwen2 over the real Qwen2 tokenizer in ``../shared`` (skips without it). Both
get their chat template in the test; no weights of a real instruct model exist here.
"""

from __future__ import annotations

import json
import math
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from conftest import load_task, run, task_config
from tiny_models import save_gpt2, save_llama, save_qwen2, save_t5
from typer.testing import CliRunner

from textgen.cli.app import app
from textgen.decoding import DecodingConfig, generate
from textgen.decoding.healing import heal
from textgen.io import Record
from textgen.models.adapters import pad_rows
from textgen.models.chat import ChatAdapter, is_chat
from textgen.models.families import EVERY_TASK, LoadOptions, load_adapter
from textgen.models.loaded import Model
from textgen.models.model_dir import ModelDir
from textgen.models.registry import list_models, resolve
from textgen.prompts import Prompt, PromptError, load_prompts, read_prompt_file
from textgen.tasks import PROMPTS, TASK_NAMES
from textgen.tasks.streaming import TextStream
from textgen.training.corpus import default_shared_dir

QWEN_TOKENIZER = default_shared_dir() / "tokenizers" / "qwen2-bpe151k"
ARTICLE = "今天上午，市图书馆新馆正式向读者开放，馆内藏书超过一百万册。"
SHORT = {"title": {"system": "编辑", "user": "标题：{text}"}}  # short prompts keep byte-level prompts small
SHORT_PROMPTS = load_prompts(PROMPTS, SHORT)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "llama-chat"
    save_llama(path, eos_factor=1.5)
    return path


@pytest.fixture(scope="module")
def llama(llama_dir) -> ChatAdapter:
    return load_adapter(llama_dir, "seq2seq")  # a chat model serves every kind


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory) -> Path:
    if not (QWEN_TOKENIZER / "vocab.json").is_file():
        pytest.skip(f"the real Qwen2 tokenizer is not at {QWEN_TOKENIZER} (../shared absent)")
    path = tmp_path_factory.mktemp("models") / "qwen2-chat"
    save_qwen2(path, QWEN_TOKENIZER, eos_factor=8.0)
    return path


@pytest.fixture(scope="module")
def qwen(qwen_dir) -> ChatAdapter:
    return load_adapter(qwen_dir, "causal")


@pytest.fixture(scope="module")
def qwen_model(qwen_dir, qwen) -> Model:
    """The loaded Qwen2 model as tasks get it: every task runs on it, rendering its own prompt
    (loading a 150k vocabulary twice is slow), and its caches (the healing vocabulary) are shared."""
    return Model("qwen2", ModelDir.read(qwen_dir), qwen, "hf-chat")


# ---------------------------------------------------------------------- finding and loading chat models
def test_a_causal_model_with_a_chat_template_serves_every_task(llama_dir, tmp_path):
    plain = tmp_path / "gpt2"
    save_gpt2(plain)
    assert is_chat(load_adapter(llama_dir, "causal")) and not is_chat(load_adapter(plain, "causal"))
    chat = resolve(str(llama_dir))
    assert chat.tasks == EVERY_TASK and all(chat.serves(task) for task in TASK_NAMES)
    plain_tasks = resolve(str(plain)).tasks
    assert "continue" in plain_tasks and "title" not in plain_tasks  # no template: a plain language model
    assert not resolve(str(plain)).serves("title")
    listed = {m.path.name: m.tasks for m in list_models(dirs=[llama_dir.parent, plain])}
    assert listed["llama-chat"] == EVERY_TASK and listed["gpt2"] == plain_tasks
    table = run("models", "list", "--dir", llama_dir.parent)
    row = next(line for line in table.stdout.splitlines() if "llama-chat" in line)
    assert table.exit_code == 0 and "chat" in row and "*" in row.split()
    rows = json.loads(run("models", "list", "--dir", llama_dir.parent, "--format", "json").stdout)
    assert [(r["chat"], r["tasks"]) for r in rows if r["name"].endswith("llama-chat")] == [(True, ["*"])]


def test_chat_models_in_the_hf_cache_are_listed_with_every_task(user_env):
    from test_registry import fake_hf_repo

    config = json.dumps({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"})
    cache = Path(user_env["HF_HUB_CACHE"])
    fake_hf_repo(cache, "someone/qwen-chat", {"config.json": config, "tokenizer_config.json": json.dumps({"chat_template": "{{ x }}"})})
    fake_hf_repo(cache, "someone/qwen-base", {"config.json": config, "tokenizer_config.json": "{}"})
    listed = {m.name: m.tasks for m in list_models() if m.source == "hf-cache"}
    assert listed["someone/qwen-chat"] == EVERY_TASK == resolve("someone/qwen-chat").tasks
    assert "title" not in listed["someone/qwen-base"]  # no chat template: no prompts to serve tasks with


def test_encode_renders_the_task_prompt_with_the_template(llama, llama_dir):
    ids = llama.encode_prompt(SHORT_PROMPTS["title"], text=ARTICLE)
    assert load_task("title", llama_dir, prompts=SHORT_PROMPTS).encode_input(ARTICLE) == ids  # the task's own prompt
    text = llama.tokenizer.decode(ids)
    expected = llama.tokenizer.apply_chat_template(
        [{"role": "system", "content": "编辑"}, {"role": "user", "content": "标题：" + ARTICLE}],
        add_generation_prompt=True, tokenize=False,
    )
    assert text == expected and ids[0] == llama.tokenizer.bos_token_id
    assert llama.tokenizer.decode(llama.source_ids(ARTICLE)) == ARTICLE  # the source alone, for copy rules
    # the turn-closing token ends outputs, though the generation config names only <|endoftext|>
    assert llama.tokenizer.convert_tokens_to_ids("<|eot_id|>") in llama.eos_token_ids
    # encode is the raw text, after BOS (continue and search read it so)
    assert llama.encode(ARTICLE) == [llama.tokenizer.bos_token_id, *llama.source_ids(ARTICLE)]
    assert load_task("continue", llama_dir).encode_input(ARTICLE) == llama.encode(ARTICLE)  # no prompt: raw


def test_another_prompt_of_the_same_model_and_the_shipped_prompts(llama):
    question = llama.tokenizer.decode(llama.encode_prompt(PROMPTS["qa_question"], text="段落正文", answer="一百万册"))
    assert "段落正文" in question and "答案：一百万册" in question and "<|start_header_id|>assistant" in question
    with pytest.raises(ValueError, match="answer"):
        llama.encode_prompt(PROMPTS["qa_question"], text="段落正文")
    shipped = load_prompts(PROMPTS)
    assert shipped == PROMPTS and set(shipped) == {"title", "summarize", "qa", "qa_question", "qa_check"}
    assert all("{text}" in p.user for p in shipped.values())


def test_prompts_are_overridden_by_a_file_and_bad_files_are_one_line_errors(llama_dir, tmp_path):
    good = tmp_path / "prompts.toml"
    good.write_text('[title]\nuser = "给这条新闻起个标题：{text}"\nanswer_start = "标题："\n', encoding="utf-8")
    prompts = load_prompts(PROMPTS, read_prompt_file(good, PROMPTS))
    assert prompts["title"].system == PROMPTS["title"].system  # fields not given are kept
    task = load_task("title", llama_dir, model="llama", prompts=prompts)
    rendered = task.adapter.tokenizer.decode(task.encode_input(ARTICLE))
    assert "给这条新闻起个标题：" + ARTICLE in rendered and rendered.endswith("<|end_header_id|>\n\n标题：")
    bad = tmp_path / "bad.toml"
    for content, message in (('[title]\nuser = "no placeholder"\n', "must contain {text}"),
                             ('[titel]\nuser = "{text}"\n', "unknown prompt 'titel'"),
                             ("[title\n", "cannot read prompt file")):
        bad.write_text(content, encoding="utf-8")
        with pytest.raises(PromptError, match=message):
            read_prompt_file(bad, PROMPTS)
        result = run("title", "--model", llama_dir, "--prompt-file", bad, ARTICLE)
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    shown = run("models", "prompts", "--prompt-file", good)
    assert shown.exit_code == 0 and load_prompts(PROMPTS, read_prompt_file_text(tmp_path, shown.stdout)) == prompts


def read_prompt_file_text(tmp_path: Path, text: str) -> dict:
    path = tmp_path / "shown.toml"
    path.write_text(text, encoding="utf-8")
    return read_prompt_file(path, PROMPTS)


def test_the_config_file_sets_prompts_and_dtype(llama_dir, tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    config.write_text('dtype = "bf16"\n[prompts.title]\nuser = "配置文件的标题提示：{text}"\n', encoding="utf-8")
    monkeypatch.setenv("TEXTGEN_CONFIG", str(config))
    shown = run("models", "prompts")
    assert shown.exit_code == 0 and "配置文件的标题提示：{text}" in shown.stdout
    result = run("title", "--model", llama_dir, "--format", "jsonl", "--max-new-tokens", "4", ARTICLE)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["outputs"]
    config.write_text('[prompts.title]\nuser = "没有占位符"\n', encoding="utf-8")
    result = run("title", "--model", llama_dir, ARTICLE)
    assert result.exit_code == 2 and "[prompts]" in result.output and "Traceback" not in result.output


# ---------------------------------------------------------------------- parity with generate()
def reference(adapter: ChatAdapter, inputs: list[list[int]], config: DecodingConfig) -> list[list[int]]:
    """``model.generate`` on the same ids, left padded, cut at the first end token."""
    ids, mask = pad_rows(inputs, adapter.pad_token_id, left=True, device="cpu")
    kw = dict(early_stopping=config.early_stopping, length_penalty=config.length_penalty) if config.num_beams > 1 else {}
    out = adapter.model.generate(
        input_ids=ids, attention_mask=mask.long(), max_new_tokens=config.max_new_tokens, num_beams=config.num_beams,
        do_sample=False, eos_token_id=adapter.eos_token_ids, pad_token_id=adapter.pad_token_id, **kw,
    )
    rows = out[:, ids.shape[1]:].tolist()
    return [next((r[:i] for i, t in enumerate(r) if t in adapter.eos_token_ids), r) for r in rows]


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_greedy_and_beam_outputs_equal_generate(family, request):
    adapter = request.getfixturevalue("llama" if family == "llama" else "qwen")
    texts = ["广州的白云机场很大", "蓝天", "我们去白云机场接人，今天天气很好"]
    # templated (llama) or raw (qwen) prompts
    inputs = [adapter.encode_prompt(SHORT_PROMPTS["title"], text=t) if family == "llama" else adapter.encode(t) for t in texts]
    assert len({len(x) for x in inputs}) == 3
    ended = set()
    for config in (DecodingConfig(max_new_tokens=12), DecodingConfig(num_beams=3, max_new_tokens=12),
                   DecodingConfig(num_beams=3, max_new_tokens=12, early_stopping=False, length_penalty=0.5)):
        ours = [hs[0].token_ids for hs in generate(adapter, inputs, config)]
        assert ours == reference(adapter, inputs, config), config
        ended |= {len(x) < 12 for x in ours}
    assert ended == {True, False}  # some outputs ended, others ran to the cap: both paths compared


def test_dtype_bf16_loads_and_decodes(llama_dir):
    adapter = load_adapter(llama_dir, "causal", LoadOptions(dtype="bf16"))
    assert adapter.model.dtype == torch.bfloat16
    logits, _ = adapter.start([adapter.encode("广州")], 4)
    assert logits.dtype == torch.float32
    with pytest.raises(ValueError, match="dtype must be one of bf16, fp16, fp32"):
        load_adapter(llama_dir, "causal", LoadOptions(dtype="int4"))


def test_loading_never_runs_remote_code(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "evil", "architectures": ["EvilForCausalLM"],
        "auto_map": {"AutoConfig": "modeling_evil.EvilConfig", "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"},
    }))
    with pytest.raises(ValueError):
        load_adapter(tmp_path, "causal")
    assert not marker.exists()


def test_a_long_input_is_cut_inside_the_text_not_the_instructions(tmp_path):
    path = tmp_path / "short-window"
    save_llama(path, max_positions=128)
    task = load_task("title", path, model="short", prompts=SHORT_PROMPTS)
    adapter = task.adapter
    long_article = ARTICLE * 6
    ids = task.encode_input(long_article)
    config = DecodingConfig(max_new_tokens=8)
    room = adapter.input_limit(config.max_new_tokens)
    assert len(ids) > room
    fitted = adapter.fit_prompt(ids, room)
    source = adapter.source_ids(long_article)
    head = ids.index(source[0])  # the template and instructions before the article
    tail = len(ids) - head - len(source)
    assert len(fitted) == room and fitted[:head] == ids[:head]
    assert fitted[head : room - tail] == source[: room - head - tail]  # the article's beginning is kept
    assert adapter.tokenizer.decode(fitted[room - tail :]).endswith("assistant<|end_header_id|>\n\n")
    assert generate(adapter, [ids], config) == generate(adapter, [fitted], config)  # start() cuts so


# ---------------------------------------------------------------------- token healing on the real Qwen2 vocabulary
# Prompts cut inside a multi-character Qwen2 token: the tokenizer spells them with shorter tokens
# (北京大 -> 北京 + 大; 人工智 -> 人工 + 智; 研究人 -> 研究 + 人), and the word they start is one token.
CUTS = {"今天我们去参观了北京大": "北京大学", "他的专业是人工智": "人工智能", "这个实验室有十位研究人": "研究人员"}


def biased(adapter: ChatAdapter, words: list[str], bias: float = 40.0):
    """Make the random model's next-token choice the whole-word tokens ``words`` (the way a
    trained model prefers 北京大学 after 参观了): a forward hook adds ``bias`` to their logits."""
    ids = [adapter.tokenizer.convert_tokens_to_ids(adapter.tokenizer.tokenize(w))[0] for w in words]
    assert all(adapter.token_texts()[i] == w for i, w in zip(ids, words))  # each word is one token
    boost = torch.zeros(adapter.vocab_size)
    boost[ids] = bias
    return adapter.model.get_output_embeddings().register_forward_hook(lambda m, args, out: out + boost)


def test_qwen2_prompts_ending_inside_a_token_continue_the_word_only_with_healing(qwen, qwen_model):
    prompts, words = list(CUTS), list(CUTS.values())
    for p, w in CUTS.items():  # the prompt ends inside the word, which is one token
        assert p.endswith(w[:-1]) and len(qwen.source_ids(w)) == 1 and len(qwen.source_ids(w[:-1])) > 1
    from textgen.tasks.continuation import ContinuationTask

    continuation = ContinuationTask(qwen_model)
    config = DecodingConfig(max_new_tokens=3)
    hook = biased(qwen, words)
    try:
        healed = continuation.run([Record(i, p) for i, p in enumerate(prompts)], config)
        plain = continuation.with_options(heal=False).run([Record(i, p) for i, p in enumerate(prompts)], config)
    finally:
        hook.remove()
    for prompt, word, on, off in zip(prompts, words, healed, plain):
        around_cut = slice(len(prompt) - len(word) + 1, len(prompt) + 1)  # the word, if it continues
        assert (prompt + on.candidates[0].text)[around_cut] == word, on  # 北京大 + 学...
        # without healing the model starts a new whole word after the partial one: 北京大 + 北京大学
        assert off.candidates[0].text.startswith(tuple(words)), off
        assert (prompt + off.candidates[0].text)[around_cut] != word


def test_qwen2_healing_constraint_allows_only_tokens_that_re_spell_the_cut(qwen, qwen_model):
    from textgen.tasks.continuation import ContinuationTask

    healed, constraint = heal(qwen, list(CUTS), vocab=ContinuationTask(qwen_model).vocabulary())
    texts = qwen.token_texts()
    for h, (prompt, word) in zip(healed, CUTS.items()):
        assert word.startswith(h.remainder) and prompt.endswith(h.remainder) and h.backed_off >= 1
        allowed = constraint._allowed(h.remainder.encode())
        spelled = {texts[i].encode("utf-8", "surrogateescape") for i in allowed.tolist()}
        rest = h.remainder.encode()
        assert word.encode() in spelled  # the whole word is reachable in one token
        assert all(t.startswith(rest) or rest.startswith(t) for t in spelled)  # bytes: BPE pieces may split a character


# ---------------------------------------------------------------------- copy constraints through the template
NUMBERS = "上月全市居民消费价格同比上涨0.7%，其中食品价格上涨7%，蔬菜价格下降3.2%。"  # numbers a model could mix up


def digit_tokens(adapter: ChatAdapter) -> list[str]:
    return [t for t in ("7", "2", "3", ".", "0", "%", "32", "70") if len(adapter.source_ids(t)) == 1]


def test_title_copy_builds_titles_from_the_article_not_the_prompt(qwen_model):
    """copy=text through the chat template: the instructions around the article (请, 标题, 文章 ...)
    may not be copied, and numbers stay whole although the model is pushed towards digits."""
    from textgen.evaluation.metrics import unfaithful_numbers
    from textgen.tasks.title import TitleTask

    task = TitleTask(qwen_model, options={"copy": "text"})
    assert "请为下面的文章" in task.adapter.tokenizer.decode(task.encode_input(NUMBERS))
    hook = biased(task.adapter, digit_tokens(task.adapter), bias=3.0)
    try:
        outs = task.run([Record("a", NUMBERS)], DecodingConfig(num_beams=3, num_return_sequences=3, max_new_tokens=10))
    finally:
        hook.remove()
    texts = [c.text for c in outs[0].candidates]
    assert any(any(c.isdigit() for c in t) for t in texts), texts  # the bias reached the numbers
    for text in texts:
        assert set(text) <= set(NUMBERS) and not unfaithful_numbers(text, NUMBERS), text


def test_qa_answers_are_spans_of_the_passage_through_the_template(qwen):
    from textgen.decoding.copy import TextCopy

    adapter = qwen
    span = TextCopy.for_adapter(adapter, [NUMBERS], max_pieces=1, max_new_tokens=8)
    hook = biased(adapter, digit_tokens(adapter), bias=3.0)
    try:
        hyps = generate(adapter, [adapter.encode_prompt(PROMPTS["qa"], text=NUMBERS)],
                        DecodingConfig(num_beams=4, num_return_sequences=4, max_new_tokens=8), processors=[span])
    finally:
        hook.remove()
    answers = [adapter.decode(h.token_ids) for h in hyps[0]]
    assert answers and all(a and a in NUMBERS for a in answers), answers


@contextmanager
def steered(adapter: ChatAdapter):
    """A random model writes byte soup that never ends. Pushed towards a few whole words (which the
    passage lacks, so answers cannot take them) and towards ending its turn once it has written a
    token, it answers with a piece of the passage and asks a one-word question."""
    words = biased(adapter, ["白云", "广州", "很好"], bias=3.0)
    ends = torch.tensor(adapter.turn_end_ids)
    end = adapter.model.get_output_embeddings().register_forward_hook(
        lambda m, args, out: out.index_add(-1, ends, torch.full((*out.shape[:-1], len(ends)), 6.0)))
    try:
        yield
    finally:
        words.remove()
        end.remove()


def test_qa_through_a_chat_model_gives_pairs_whose_answers_are_spans_of_the_passage(llama_dir):
    task = load_task("qa", str(llama_dir), model="llama")
    with steered(task.adapter):
        config = task_config("qa", {"num_return_sequences": 2, "seed": 0, "max_new_tokens": 8})
        record = task.run([Record("p", ARTICLE)], config)[0]
    assert 1 <= len(record.pairs) <= 2, record  # one per distinct place the answers came from
    for pair in record.pairs:
        assert pair.answer and ARTICLE[pair.start : pair.start + len(pair.answer)] == pair.answer
        assert pair.question[:-1] in ("白云", "广州", "很好") and pair.question.endswith("？")
        assert math.isfinite(pair.score) and pair.score < 0  # the round trip's mean log-probability
    result = run("qa", "--model", llama_dir, "-n", "2", "--max-new-tokens", "8", "--format", "jsonl", ARTICLE)
    assert result.exit_code in (0, 1) and json.loads(result.stdout)["task"] == "qa", result.output  # served, not refused


def test_chat_qa_asks_about_a_given_answer_with_the_question_prompt(llama_dir):
    from textgen.qa.drivers import ChatDriver

    task = load_task("qa", str(llama_dir), model="llama")
    assert isinstance(task.driver(), ChatDriver)
    decoder, inputs = task.driver().question_inputs([ARTICLE], ["一百万册"])
    prompt = decoder.tokenizer.decode(inputs[0])
    assert "针对给定的答案提出一个问题" in prompt and "答案：一百万册" in prompt and ARTICLE in prompt
    with steered(task.adapter):
        config = task_config("qa", {"max_new_tokens": 8})
        record = task.run([Record("p", ARTICLE, fields={"answer": "一百万册"})], config)[0]
    assert [(p.answer, p.start) for p in record.pairs] == [("一百万册", ARTICLE.index("一百万册"))], record


def test_chat_round_trip_is_the_answers_log_prob_right_after_the_check_prompt(llama):
    from textgen.qa.check import continuation_log_prob

    check = PROMPTS["qa_check"]
    prompts = [llama.encode_prompt(check, text=ARTICLE, question="藏书有多少？"), llama.encode_prompt(check, text="短文", question="问？")]
    targets = [llama.source_ids("一百万册") + llama.turn_end_ids, llama.source_ids("短") + llama.turn_end_ids]
    batched = continuation_log_prob(llama, prompts, targets)
    for prompt, target, score in zip(prompts, targets, batched):  # one row at a time, no padding
        ids = torch.tensor([prompt + target])
        with torch.inference_mode():
            logp = torch.log_softmax(llama.model(input_ids=ids).logits[0].float(), -1)
        expected = torch.stack([logp[len(prompt) - 1 + k, t] for k, t in enumerate(target)]).mean()
        assert score == pytest.approx(float(expected), abs=1e-4)
    assert batched[0] != pytest.approx(batched[1])


def test_qa_refuses_a_model_that_can_neither_read_nor_chat(tmp_path):
    plain = tmp_path / "gpt2"
    save_gpt2(plain)
    result = run("qa", "--model", plain, ARTICLE)
    assert result.exit_code == 2 and "not 'qa'" in result.output and "Traceback" not in result.output
    t5 = tmp_path / "t5"
    save_t5(t5)
    with pytest.raises(ValueError, match="or a chat model"):
        load_task("qa", str(t5), model="t5")


# ---------------------------------------------------------------------- streaming
def test_on_step_streams_settled_prefixes_of_the_final_output(llama_dir):
    raw = load_adapter(llama_dir, "causal")
    inputs = [raw.encode(t) for t in ("广州的白云", "蓝天")]
    for config in (DecodingConfig(max_new_tokens=10), DecodingConfig(num_beams=3, max_new_tokens=10)):
        seen: list[list[int]] = []
        (best, *_), _ = generate(raw, inputs, config, on_step=seen.append)
        final = best.token_ids
        assert seen and all(final[: len(s)] == s for s in seen)  # every streamed prefix is final
        assert all(len(a) < len(b) for a, b in zip(seen, seen[1:]))
        if config.num_beams == 1:
            assert seen[-1] == final[: len(seen[-1])] and len(seen[-1]) >= len(final) - 1


def test_text_stream_holds_back_partial_characters_and_the_healed_remainder():
    pieces: list[str] = []
    spelled = {1: "北", 2: "北京", 3: "北京大学\ufffd", 4: "北京大学很好"}
    stream = TextStream(lambda ids: spelled[len(ids)], pieces.append, lead="北京大")
    for n in range(1, 5):
        stream(list(range(n)))
    assert pieces == ["学", "很好"]


@pytest.fixture
def pieces(monkeypatch) -> list[str]:
    """What the command line's stream printed, piece by piece."""
    from textgen.cli import stream

    seen: list[str] = []
    write = stream.Stream.__call__
    monkeypatch.setattr(stream.Stream, "__call__", lambda self, piece: (seen.append(piece), write(self, piece))[1])
    return seen


def test_stream_flag_prints_the_same_output_as_without(llama_dir, pieces):
    args = ("continue", "--model", llama_dir, "--max-new-tokens", "12", "--no-sample", "广州的白云")
    whole = run(*args, "--no-stream")
    assert pieces == []
    streamed = run(*args, "--stream")
    assert whole.exit_code == streamed.exit_code == 0 and len(pieces) > 1
    assert streamed.stdout == whole.stdout and whole.stdout.strip()
    task = load_task("continue", llama_dir, model="llama")
    pieces: list[str] = []
    (out,) = task.run([Record("a", "广州的白云")], DecodingConfig(max_new_tokens=12), on_text=pieces.append)
    assert len(pieces) > 1 and "".join(pieces) == out.candidates[0].text


def test_repl_streams_with_the_flag_and_prints_the_same(llama_dir, pieces):
    script = ":set sample=false max_new_tokens=12\n广州的白云\n:quit\n"
    runs = [CliRunner().invoke(app, ["repl", "--task", "continue", "--model", str(llama_dir), flag], input=script)
            for flag in ("--stream", "--no-stream")]
    assert [r.exit_code for r in runs] == [0, 0] and runs[0].stdout == runs[1].stdout and runs[0].stdout.strip()
    assert "".join(pieces) == runs[0].stdout.rstrip("\n")  # the first run printed as it went


def test_chat_model_runs_the_tasks_from_the_command_line_quietly(llama_dir):
    for args in (("title", "--beam", "2"), ("continue", "--seed", "1"), ("summarize",)):
        result = run(*args, "--model", llama_dir, "--max-new-tokens", "6", "--format", "jsonl", ARTICLE)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["outputs"]
        assert "Loading weights" not in result.output and "deprecated" not in result.output
    result = run("search", "--model", llama_dir, "--format", "jsonl", "广州 机场")
    assert result.exit_code == 0 and json.loads(result.stdout)["outputs"], result.output


def test_prompt_dataclass_fills_only_known_placeholders():
    prompt = Prompt(user="读{text}，答{answer}，保留{braces}", system="系统")
    assert prompt.messages(text="文", answer="{text}") == [
        {"role": "system", "content": "系统"}, {"role": "user", "content": "读文，答{text}，保留{braces}"}]
