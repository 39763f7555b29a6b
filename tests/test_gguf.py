"""GGUF models through llama.cpp (textgen.models.gguf) and sandboxed chat templates
(textgen.models.chat_template), on a tiny random Qwen2 GGUF over the real Qwen2 tokenizer.

llama.cpp's own greedy completion is the reference for our decoder on the adapter; batched and
beam decoding are checked against the same inputs decoded one at a time, and beam scores against
an independent scoring of each hypothesis by llama-cpp-python. (On this f32/f16 model llama.cpp's
results do not depend on how tokens are batched; on quantized models they do, by up to a few
tenths of a logit, in llama.cpp itself: see benchmarks/gguf.py.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'textgen-zh[gguf]')")

import gguf  # noqa: E402 -- the test extra installs it with llama-cpp-python

sys.path.insert(0, str(Path(__file__).parent))

from tiny_gguf import CHATML, write_tiny_qwen2  # noqa: E402

from textgen.decoding import DecodingConfig, generate  # noqa: E402
from textgen.models.chat_template import ChatTemplateError, render_chat_template  # noqa: E402
from textgen.models.gguf import GGUFCausal, load_gguf, read_metadata  # noqa: E402
from textgen.training.corpus import default_shared_dir  # noqa: E402

QWEN_TOKENIZER = default_shared_dir() / "tokenizers" / "qwen2-bpe151k"
IM_END, ENDOFTEXT, IM_START = 151645, 151643, 151644
PROMPTS = [
    "今天上午，市图书馆新馆正式向读者开放，馆内藏书超过一百万册。",
    "研究人员提出了一种新的中文文本生成方法",
    "春天到了",
]


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> Path:
    if not (QWEN_TOKENIZER / "vocab.json").is_file():
        pytest.skip(f"the Qwen2 tokenizer files are not in {QWEN_TOKENIZER}")
    return write_tiny_qwen2(tmp_path_factory.mktemp("gguf") / "tiny-qwen2.gguf", QWEN_TOKENIZER)


@pytest.fixture(scope="module")
def adapter(tiny_gguf) -> GGUFCausal:
    a = load_gguf(tiny_gguf, n_threads=1)
    yield a
    a.close()


@pytest.fixture(scope="module")
def llama(tiny_gguf):
    from llama_cpp import Llama

    ref = Llama(str(tiny_gguf), n_ctx=256, n_threads=1, n_threads_batch=1, flash_attn=False, verbose=False)
    yield ref
    ref.close()


def llama_greedy(llama, ids: list[int], n: int, ends: set[int]) -> list[int]:
    """llama.cpp's own greedy completion (its greedy sampler), up to the first end token."""
    llama.reset()
    out: list[int] = []
    for token in llama.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0):
        if token in ends:
            break
        out.append(token)
        if len(out) == n:
            break
    return out


def tokens_of(hyps) -> list[list[int]]:
    return [h.token_ids for h in hyps]


# ---------------------------------------------------------------------- loading
def test_loads_tiny_model(adapter, tiny_gguf):
    assert adapter.vocab_size == 151669
    assert adapter.context_length == 256
    assert adapter.name == "tiny-qwen2"
    assert {IM_END, ENDOFTEXT} <= set(adapter.eos_token_ids)
    assert adapter.eos_token_ids[0] == adapter.eos_token_id == IM_END  # the model's own EOS first
    assert adapter.pad_token_id == ENDOFTEXT
    assert adapter.bos_token_id == ENDOFTEXT and adapter.add_bos is False
    assert adapter.device == torch.device("cpu")
    assert adapter.chat_template == CHATML
    assert adapter.metadata["general.name"] == "tiny-qwen2"
    assert adapter.input_limit(16) == 240
    with pytest.raises(ValueError, match="leaves no room"):
        adapter.input_limit(256)


def test_loading_is_quiet(tiny_gguf, capfd):
    a = load_gguf(tiny_gguf, n_threads=1)
    generate(a, [a.encode("春天")], DecodingConfig(max_new_tokens=2))
    a.close()
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_gguf(tmp_path / "missing.gguf")
    text = tmp_path / "notes.gguf"
    text.write_text("just some text\n", encoding="utf-8")
    for fn in (load_gguf, read_metadata):
        with pytest.raises(ValueError, match="is not a GGUF file") as e:
            fn(text)
        assert "\n" not in str(e.value)
    damaged = tmp_path / "damaged.gguf"
    damaged.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 20)
    for fn in (load_gguf, read_metadata):
        with pytest.raises(ValueError) as e:
            fn(damaged)
        assert "\n" not in str(e.value)


def test_read_metadata_matches_gguf_reader(tmp_path):
    """Our header reader against the gguf package's on a file of every value kind, with hostile
    strings: invalid UTF-8 comes back replaced, long arrays are left out."""
    path = tmp_path / "meta.gguf"
    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_name("名字 <script>")
    w.add_context_length(4096)
    w.add_float32("test.f32", 0.5)
    w.add_bool("test.bool", True)
    w.add_int64("test.i64", -7)
    w.add_array("test.short", [1, 2, 3])
    w.add_array("test.long", list(range(1000)))
    w.add_array("test.strings", ["a", "乙"])
    w.add_array("test.many_strings", [str(i) for i in range(500)])
    w.add_key_value("test.bad_utf8", b"ok\xff\xfe", gguf.GGUFValueType.STRING)
    w.add_chat_template("{{ messages }}")
    w.add_tensor("t", np.zeros(4, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    ours = read_metadata(path)
    reader = gguf.GGUFReader(str(path))
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in ("test.long", "test.many_strings", "test.bad_utf8"):
            continue
        value = field.contents()
        assert ours[key] == pytest.approx(value) if isinstance(value, float) else ours[key] == value, key
    assert "test.long" not in ours and "test.many_strings" not in ours
    assert ours["test.bad_utf8"] == "ok\ufffd\ufffd"
    assert ours["general.architecture"] == "qwen2" and ours["qwen2.context_length"] == 4096
    assert ours["tokenizer.chat_template"] == "{{ messages }}"


# ---------------------------------------------------------------------- tokens
def test_tokens_round_trip_chinese(adapter, llama):
    text = "今天上午，市图书馆新馆正式向读者开放。𠀀龘 Hello 世界！"
    ids = adapter.encode(text)
    assert ids == llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    assert adapter.decode(ids) == text
    texts = adapter.token_texts()
    assert len(texts) == adapter.vocab_size
    pieces = [texts[i] for i in ids]
    assert b"".join(p.encode("utf-8", "surrogateescape") for p in pieces) == text.encode("utf-8")
    assert any(any(0xDC80 <= ord(c) <= 0xDCFF for c in p) for p in pieces)  # a rare character split into bytes
    for special in (IM_END, ENDOFTEXT, IM_START):
        assert texts[special] == ""
    assert texts[151657] == "<tool_call>"  # a user-defined added token keeps its text, as in HF
    assert adapter.decode([*ids[:3], IM_END, *ids[3:]]) == text  # specials are skipped
    assert adapter.encode("<|im_end|>") != [IM_END]  # typed markers are text
    assert adapter.tokenize("<|im_end|>", special=True) == [IM_END]


# ---------------------------------------------------------------------- decoding
def test_greedy_matches_llama_cpp(adapter, llama):
    ends = set(adapter.eos_token_ids)
    for text in PROMPTS:
        ids = adapter.encode(text)
        [[hyp]] = generate(adapter, [ids], DecodingConfig(max_new_tokens=16))
        assert hyp.token_ids == llama_greedy(llama, ids, 16, ends)
        assert len(hyp.token_ids) == 16 or hyp.finished


def test_batch_equals_one_at_a_time(adapter):
    inputs = [adapter.encode(t) for t in PROMPTS]
    assert len({len(x) for x in inputs}) == 3
    config = DecodingConfig(max_new_tokens=16)
    batch = generate(adapter, inputs, config)
    alone = [generate(adapter, [x], config)[0] for x in inputs]
    assert [tokens_of(h) for h in batch] == [tokens_of(h) for h in alone]
    assert [h[0].score for h in batch] == pytest.approx([h[0].score for h in alone], rel=1e-4)


def sequence_log_prob(scorer, prompt: list[int], tokens: list[int]) -> float:
    """sum log p(tokens | prompt) from one full-sequence pass of llama-cpp-python (logits_all)."""
    scorer.reset()
    scorer.eval(prompt + tokens)
    logits = torch.from_numpy(np.array(scorer.scores[len(prompt) - 1 : len(prompt) + len(tokens) - 1]))
    logp = torch.log_softmax(logits.double(), dim=-1)
    return float(logp[torch.arange(len(tokens)), torch.tensor(tokens)].sum())


def test_beam_search(adapter, tiny_gguf):
    from llama_cpp import Llama

    inputs = [adapter.encode(t) for t in PROMPTS]
    config = DecodingConfig(max_new_tokens=12, num_beams=4, num_return_sequences=4)
    batch = generate(adapter, inputs, config)
    alone = [generate(adapter, [x], config)[0] for x in inputs]
    assert [tokens_of(h) for h in batch] == [tokens_of(h) for h in alone]
    # Every hypothesis' score is its own log-probability, recomputed independently: a beam that
    # had continued another beam's KV cache would not score as its tokens do.
    scorer = Llama(str(tiny_gguf), n_ctx=64, n_threads=1, n_threads_batch=1, logits_all=True, verbose=False)
    try:
        end = IM_END
        for prompt, hyps in zip(inputs, batch):
            assert len(hyps) == 4 and len({tuple(h.token_ids) for h in hyps}) == 4
            for h in hyps:
                tokens = h.token_ids + ([end] if h.finished else [])
                expected = sequence_log_prob(scorer, prompt, tokens) / len(tokens)  # length_penalty 1
                assert h.score == pytest.approx(expected, abs=1e-3)
            assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
    finally:
        scorer.close()


def test_reorder_moves_rows(adapter):
    inputs = [adapter.encode(t) for t in PROMPTS]
    logits, state = adapter.start(inputs, 8)
    first = logits.argmax(-1)
    _, state = adapter.step(state, first)
    index = torch.tensor([2, 0, 0, 1, 2])  # a permutation with copies
    state = adapter.reorder(state, index)
    nxt = torch.tensor([11, 22, 33, 44, 55])
    got, state = adapter.step(state, nxt)
    for row, src in enumerate(index.tolist()):
        alone, s = adapter.start([inputs[src] + [int(first[src])]], 8)
        want, _ = adapter.step(s, nxt[row : row + 1])
        torch.testing.assert_close(got[row], want[0], atol=1e-4, rtol=0)
    # dropping rows: the others carry on unchanged
    logits, state = adapter.start(inputs, 8)
    state = adapter.reorder(state, torch.tensor([2, 0]))
    got, _ = adapter.step(state, torch.tensor([7, 8]))
    for row, src in enumerate([2, 0]):
        _, s = adapter.start([inputs[src]], 8)
        want, _ = adapter.step(s, torch.tensor([7 + row]))
        torch.testing.assert_close(got[row], want[0], atol=1e-4, rtol=0)


def test_sampling_is_reproducible(adapter):
    inputs = [adapter.encode(t) for t in PROMPTS[:2]]
    config = DecodingConfig(do_sample=True, top_k=50, seed=3, max_new_tokens=10, num_return_sequences=3)
    a = generate(adapter, inputs, config)
    b = generate(adapter, inputs, config)
    assert [tokens_of(h) for h in a] == [tokens_of(h) for h in b]
    c = generate(adapter, inputs, config.replace(seed=4))
    assert [tokens_of(h) for h in a] != [tokens_of(h) for h in c]


def test_second_start_with_larger_batch(adapter):
    """A context made for one row serves a later, larger run (more cells, more sequences than it
    had: beam search over 5 inputs needs 20 rows), and a smaller run after it reuses it."""
    small = DecodingConfig(max_new_tokens=8)
    one = adapter.encode(PROMPTS[0])
    first = generate(adapter, [one], small)
    inputs = [adapter.encode(t) for t in [*PROMPTS, "白云机场的航班很多", "今天天气很好我们去白云山"]]
    beams = DecodingConfig(max_new_tokens=8, num_beams=4)
    alone = [generate(adapter, [x], beams)[0] for x in inputs]
    adapter.start([one], 8)  # back to a small run
    batch = generate(adapter, inputs, beams)
    assert adapter._seqs >= 20
    assert [tokens_of(h) for h in batch] == [tokens_of(h) for h in alone]
    ctx = adapter._ctx
    assert tokens_of(generate(adapter, [one], small)[0]) == tokens_of(first[0])
    assert adapter._ctx == ctx  # reused


def greedy_steps(adapter, inputs: list[list[int]], planned: int, steps: int) -> list[list[int]]:
    """Argmax tokens of ``steps`` adapter steps (no end tokens), ``start`` told ``planned``."""
    logits, state = adapter.start(inputs, planned)
    out = [logits.argmax(-1)]
    for _ in range(steps):
        logits, state = adapter.step(state, out[-1])
        out.append(logits.argmax(-1))
    return torch.stack(out, 1).tolist()


def test_context_grows_while_decoding(tiny_gguf):
    """Runs that outgrow their context move to a larger one and carry on unchanged: steps past
    what ``start`` was told (no free cell), and a reorder to more rows than the context has
    sequences (beams of 6 inputs: 18 rows, 16 sequences)."""
    a = load_gguf(tiny_gguf, n_threads=1)
    grows = []
    real_grow = a._grow
    a._grow = lambda cells, rows: (grows.append((cells, rows)), real_grow(cells, rows))[1]
    try:
        inputs = [a.encode(t) for t in PROMPTS]
        want = [greedy_steps(a, [x], 13, 12)[0] for x in inputs]
        assert not grows
        a._free_context()
        rows = inputs * 5 + [inputs[0]]  # 16 rows planned for 1 new token each: 256 cells
        got = greedy_steps(a, rows, 1, 12)
        assert grows and a._cells > 256
        assert got == want * 5 + [want[0]]

        config = DecodingConfig(max_new_tokens=10, num_beams=3)
        beams = [tokens_of(generate(a, [x], config)[0]) for x in inputs]
        a._free_context()
        grows.clear()
        real_prepare = a._prepare
        a._prepare = lambda cells, rows: real_prepare(1, 1)  # start() gets 256 cells, 16 sequences
        got = [tokens_of(h) for h in generate(a, inputs * 2, config)]
        assert grows and a._seqs >= 18
        assert got == beams * 2
    finally:
        a.close()


def test_long_and_empty_prompts(adapter):
    long = adapter.encode("今天上午，市图书馆新馆正式向读者开放。" * 30)
    assert len(long) > 240
    got, _ = adapter.start([long], 16)
    want, _ = adapter.start([long[-240:]], 16)  # a long prompt keeps its end
    torch.testing.assert_close(got, want, atol=0, rtol=0)
    got, _ = adapter.start([[]], 4)
    want, _ = adapter.start([[ENDOFTEXT]], 4)  # an empty prompt starts from BOS
    torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_model_without_bos_or_template(tmp_path, tiny_gguf):  # tiny_gguf: skipped without the tokenizer files
    path = write_tiny_qwen2(tmp_path / "no-bos.gguf", QWEN_TOKENIZER, layers=1, bos=False, chat_template=None)
    a = load_gguf(path, n_threads=1)
    try:
        assert a.bos_token_id is None and a.eos_token_id == IM_END
        got, _ = a.start([[]], 4)
        want, _ = a.start([[IM_END]], 4)  # an empty prompt starts from the EOS token
        torch.testing.assert_close(got, want, atol=0, rtol=0)
        assert a.chat_template is None
        with pytest.raises(ChatTemplateError, match="no chat template"):
            a.render_chat(MESSAGES)
    finally:
        a.close()


def test_stale_state_and_bad_tokens(adapter):
    _, old = adapter.start([adapter.encode("春天")], 4)
    _, new = adapter.start([adapter.encode("春天")], 4)
    with pytest.raises(RuntimeError, match="stale"):
        adapter.step(old, torch.tensor([1]))
    with pytest.raises(ValueError, match="out of range"):
        adapter.step(new, torch.tensor([adapter.vocab_size]))
    with pytest.raises(IndexError):
        adapter.reorder(new, torch.tensor([1]))


# ---------------------------------------------------------------------- chat templates
MESSAGES = [{"role": "system", "content": "你是编辑"}, {"role": "user", "content": "写一个标题"}]


def test_chat_template_renders(adapter):
    want = "<|im_start|>system\n你是编辑<|im_end|>\n<|im_start|>user\n写一个标题<|im_end|>\n<|im_start|>assistant\n"
    assert render_chat_template(CHATML, MESSAGES) == want
    assert render_chat_template(CHATML, MESSAGES, add_generation_prompt=False) == want.removesuffix("<|im_start|>assistant\n")
    assert adapter.render_chat(MESSAGES) == want
    ids = adapter.tokenize(adapter.render_chat(MESSAGES), special=True)
    assert ids[0] == IM_START and ids.count(IM_END) == 2
    template = ("{{ bos_token }}{% for m in messages %}{{ m.content | tojson }}"
                "{% if loop.first %}{% break %}{% endif %}{% endfor %}")
    assert render_chat_template(template, MESSAGES, bos_token="<s>") == '<s>"你是编辑"'


HOSTILE = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}",
    "{{ joiner.__init__.__globals__['os'].system('touch {marker}') }}",
    "{% set ns = namespace() %}{{ ns.__init__.__globals__ }}",
    "{{ messages.append('x') }}",
    "{{ 'x' * 100000000 }}",
]


def test_hostile_templates_fail_and_run_nothing(adapter, tmp_path):
    marker = tmp_path / "pwned"
    for template in HOSTILE:
        with pytest.raises(ChatTemplateError) as e:
            render_chat_template(template.replace("{marker}", str(marker)), MESSAGES)
        assert "\n" not in str(e.value) and isinstance(e.value, ValueError)
    assert not marker.exists()
    with pytest.raises(ChatTemplateError, match="no system"):
        render_chat_template("{{ raise_exception('no system role') }}", MESSAGES)
    with pytest.raises(ChatTemplateError, match="does not parse"):
        render_chat_template("{% for %}", MESSAGES)
    with pytest.raises(ChatTemplateError):
        render_chat_template("{{ messages[5]['content'] | upper }}{{ 1 / 0 }}", MESSAGES)
    # a model file's own template is untrusted too
    adapter.__dict__["chat_template"] = HOSTILE[1].replace("{marker}", str(marker))
    try:
        with pytest.raises(ChatTemplateError):
            adapter.render_chat(MESSAGES)
    finally:
        adapter.__dict__["chat_template"] = CHATML
    assert not marker.exists()


def test_no_unsandboxed_environment():
    import inspect

    import textgen.models.chat_template as module

    source = inspect.getsource(module)
    assert "jinja2.Environment(" not in source and "from jinja2 import Environment" not in source
    assert issubclass(module._Sandbox, module.ImmutableSandboxedEnvironment)
