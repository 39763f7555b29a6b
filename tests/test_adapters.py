"""Model adapters: loading real model directories, parity with Hugging Face ``generate()``, and
our backbone's cached decoding against a decoder that recomputes everything each step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import jsonl, run
from tiny_models import CHARS, save_bart, save_gpt2, save_t5

from textgen.decoding import DecodingConfig, generate
from textgen.models.adapters import (
    BackboneCausal,
    BackboneSeq2Seq,
    HFCausal,
    HFSeq2Seq,
)
from textgen.models.backbone import BertBackbone, BertConfig
from textgen.models.families import LoadOptions, load_adapter
from textgen.tokenizer import SPECIAL_TOKENS, ChineseTokenizer

TEXTS = ["广州的白云机场很大", "白云山", "我们去白云机场接人今天天气很好", "蓝天", "飞机从白云机场起飞"]
MAX_NEW = 10


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    dirs = {}
    for name, save in (("t5", save_t5), ("bart", save_bart), ("gpt2", save_gpt2)):
        path = tmp_path_factory.mktemp(name)
        save(path)
        dirs[name] = path
    return dirs


def save_backbone(path, *, seed=0, eos_bias=0.0):
    vocab = list(SPECIAL_TOKENS) + CHARS + ["白云", "白云机场", "广州", "天气"]
    ChineseTokenizer(vocab, mode="word").save(path)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=48, initializer_range=0.3)
    model = BertBackbone(cfg)
    with torch.no_grad():
        model.head_bias[SPECIAL_TOKENS.index("[SEP]")] = eos_bias  # so outputs end at varied lengths
    model.save(path)
    return path


def hf_reference(adapter, kind, config: DecodingConfig):
    """``model.generate`` on the same texts, cut at the first end token (and its score)."""
    tok, model = adapter.tokenizer, adapter.model
    if kind == "causal":
        tok.padding_side = "left"
        enc = tok(TEXTS, padding=True, return_tensors="pt", add_special_tokens=False)
        skip = enc["input_ids"].shape[1]
    else:
        enc = tok(TEXTS, padding=True, return_tensors="pt")
        skip = 1  # the decoder start token
    kw = dict(early_stopping=config.early_stopping, length_penalty=config.length_penalty) if config.num_beams > 1 else {}
    out = model.generate(
        **enc, max_new_tokens=config.max_new_tokens, num_beams=config.num_beams, do_sample=False,
        num_return_sequences=config.num_return_sequences, output_scores=True, return_dict_in_generate=True, **kw,
    )
    eos = adapter.eos_token_ids[0]
    seqs = [s[:s.index(eos)] if eos in s else s for s in out.sequences[:, skip:].tolist()]
    return seqs, (out.sequences_scores.tolist() if config.num_beams > 1 else None)


SETTINGS = [
    DecodingConfig(max_new_tokens=MAX_NEW),
    DecodingConfig(num_beams=3, num_return_sequences=3, max_new_tokens=MAX_NEW),
    DecodingConfig(num_beams=4, num_return_sequences=2, max_new_tokens=MAX_NEW),
    DecodingConfig(num_beams=4, num_return_sequences=4, max_new_tokens=MAX_NEW, early_stopping=False),
    DecodingConfig(num_beams=3, num_return_sequences=3, max_new_tokens=MAX_NEW, length_penalty=2.0),
]


@pytest.mark.parametrize("family,kind", [("t5", "seq2seq"), ("bart", "seq2seq"), ("gpt2", "causal")])
def test_parity_with_hf_generate(hf_dirs, family, kind):
    """Greedy and beam search give token-identical outputs (and equal beam scores) to
    ``generate()`` on a batch of inputs of different lengths."""
    adapter = load_adapter(hf_dirs[family], kind)
    assert isinstance(adapter, HFSeq2Seq if kind == "seq2seq" else HFCausal)
    inputs = [adapter.encode(t) for t in TEXTS]
    assert len({len(x) for x in inputs}) > 1
    finished_flags = set()
    for config in SETTINGS:
        ours = generate(adapter, inputs, config)
        ref_ids, ref_scores = hf_reference(adapter, kind, config)
        assert [h.token_ids for hyps in ours for h in hyps] == ref_ids, config
        if ref_scores is not None:
            assert [h.score for hyps in ours for h in hyps] == pytest.approx(ref_scores, abs=1e-4)
        finished_flags |= {h.finished for hyps in ours for h in hyps}
        # a hypothesis is "finished" exactly when it stopped before the cap
        assert all(h.finished == (len(h.token_ids) < MAX_NEW) for hyps in ours for h in hyps)
    # the models end at varied lengths, so the finished-hypothesis logic was really compared
    assert finished_flags == {True, False}


def naive_greedy(model: BertBackbone, tokenizer, source, *, unilm: bool, steps: int):
    """Greedy decoding that re-runs the whole sequence each step (bert4keras' way, no cache)."""
    ids = [tokenizer.cls_id, *source] + ([tokenizer.sep_id] if unilm else [])
    segments = [0] * len(ids)
    out = []
    for _ in range(steps):
        x = torch.tensor([ids])
        logits = model(x, mode="unilm" if unilm else "causal", token_type_ids=torch.tensor([segments]))[0, -1]
        nxt = int(logits.argmax())
        if nxt == tokenizer.sep_id:
            return out, True
        out.append(nxt)
        ids.append(nxt)
        segments.append(1 if unilm else 0)
    return out, False


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_backbone_cached_decoding_matches_full_recomputation(tmp_path, kind):
    path = save_backbone(tmp_path, eos_bias=3.0)
    adapter = load_adapter(path, kind)
    assert isinstance(adapter, BackboneSeq2Seq if kind == "seq2seq" else BackboneCausal)
    inputs = [adapter.encode(t) for t in TEXTS]
    with torch.inference_mode():
        ours = generate(adapter, inputs, DecodingConfig(max_new_tokens=12))
        naive = [naive_greedy(adapter.model, adapter.tokenizer, x, unilm=kind == "seq2seq", steps=12) for x in inputs]
    assert [(h[0].token_ids, h[0].finished) for h in ours] == naive
    assert {f for _, f in naive} == {True, False}


class RecomputingBackbone(BackboneSeq2Seq):
    """The same adapter without a cache: its state is the list of full sequences, so reordering
    is list indexing and every step re-runs the model -- the reference for beam search."""

    def start(self, inputs, max_new_tokens):
        cls, sep = self.tokenizer.cls_id, self.tokenizer.sep_id
        rows = [([cls, *x, sep], [0] * (len(x) + 2)) for x in inputs]
        return self._run(rows), rows

    def step(self, state, tokens):
        rows = [(ids + [int(t)], seg + [1]) for (ids, seg), t in zip(state, tokens)]
        return self._run(rows), rows

    def reorder(self, state, index):
        return [state[i] for i in index.tolist()]

    def _run(self, rows):
        return torch.cat([
            self.model(torch.tensor([ids]), mode="unilm", token_type_ids=torch.tensor([seg]))[:, -1] for ids, seg in rows
        ])


def test_backbone_beam_search_through_the_cache_matches_recomputation(tmp_path):
    path = save_backbone(tmp_path, seed=1, eos_bias=1.0)
    cached = load_adapter(path, "seq2seq")
    naive = RecomputingBackbone(cached.model, cached.tokenizer, "naive", "cpu")
    inputs = [cached.encode(t) for t in TEXTS]
    config = DecodingConfig(num_beams=3, num_return_sequences=3, max_new_tokens=8)
    ours, ref = generate(cached, inputs, config), generate(naive, inputs, config)
    assert [[h.token_ids for h in hs] for hs in ours] == [[h.token_ids for h in hs] for hs in ref]
    assert [h.score for hs in ours for h in hs] == pytest.approx([h.score for hs in ref for h in hs], abs=1e-4)


def test_backbone_truncates_the_source_to_leave_room_for_the_output(tmp_path):
    adapter = load_adapter(save_backbone(tmp_path), "seq2seq")
    long_source = adapter.encode("广州的白云机场很大" * 10)
    assert len(long_source) + 2 > 48 - 16
    (hyp,), = generate(adapter, [long_source], DecodingConfig(max_new_tokens=16))
    assert len(hyp.token_ids) <= 16
    # the kept source is the beginning: decoding the truncated source alone gives the same output
    room = 48 - 16 - 2
    assert generate(adapter, [long_source[:room]], DecodingConfig(max_new_tokens=16))[0][0] == hyp
    with pytest.raises(ValueError, match="no room"):
        generate(adapter, [long_source], DecodingConfig(max_new_tokens=47))


def test_backbone_seq2seq_cuts_the_source_to_the_length_it_was_trained_on(tmp_path):
    # Regression: textgen.json's max_source_tokens (written by seq2seq fine-tuning) was ignored, so
    # long articles were fed whole and the title decoded at positions training never reached.
    path = save_backbone(tmp_path)
    plain = load_adapter(path, "seq2seq")
    (path / "textgen.json").write_text(json.dumps({"max_source_tokens": 6}), encoding="utf-8")
    cut = load_adapter(path, "seq2seq")
    assert plain.max_source_tokens is None and cut.max_source_tokens == 6
    source = cut.encode("广州的白云机场很大我们去白云机场接人")
    assert len(source) > 6
    with torch.inference_mode():
        logits, _ = cut.start([source], MAX_NEW)
        first6, _ = plain.start([source[:6]], MAX_NEW)
        whole, _ = plain.start([source], MAX_NEW)
    assert torch.allclose(logits, first6, atol=1e-5) and not torch.allclose(logits, whole, atol=1e-3)
    assert generate(cut, [source], DecodingConfig(max_new_tokens=MAX_NEW)) == generate(
        plain, [source[:6]], DecodingConfig(max_new_tokens=MAX_NEW))


def test_adapter_texts_and_metadata(tmp_path, hf_dirs):
    (tmp_path / "bb").mkdir()
    path = save_backbone(tmp_path / "bb")
    (path / "textgen.json").write_text(json.dumps({"name": "zh-test"}), encoding="utf-8")
    adapter = load_adapter(path, "causal")
    assert adapter.name == "zh-test" and adapter.eos_token_ids == [adapter.tokenizer.sep_id]
    ids = adapter.encode("广州的白云机场")
    assert adapter.decode(ids) == "广州的白云机场"
    texts = adapter.token_texts()
    assert len(texts) == adapter.vocab_size and texts[adapter.tokenizer.cls_id] == ""
    assert "白云机场" in texts

    gpt2 = load_adapter(hf_dirs["gpt2"], "causal")
    texts = gpt2.token_texts()
    assert len(texts) == gpt2.vocab_size and texts[gpt2.eos_token_ids[0]] == ""
    # byte-level pieces concatenate (as bytes) to the encoded text exactly
    ids = gpt2.encode("广州的白云机场")
    raw = b"".join(texts[i].encode("utf-8", "surrogateescape") for i in ids)
    assert raw.decode("utf-8") == "广州的白云机场" == gpt2.decode(ids)


def test_load_adapter_errors_are_clear(tmp_path, hf_dirs):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_adapter(tmp_path / "missing", "seq2seq")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_adapter(tmp_path, "seq2seq")
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_adapter(tmp_path, "seq2seq")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-model"}), encoding="utf-8")
    with pytest.raises(ValueError, match="cannot read"):
        load_adapter(tmp_path, "causal")
    with pytest.raises(ValueError, match="decoder-only"):
        load_adapter(hf_dirs["gpt2"], "seq2seq")
    with pytest.raises(ValueError, match="encoder-decoder"):
        load_adapter(hf_dirs["t5"], "causal")
    with pytest.raises(ValueError, match="kind"):
        load_adapter(hf_dirs["t5"], "chat")


def test_a_directory_with_only_tokenizer_json_loads(tmp_path, hf_dirs):
    import shutil

    path = tmp_path / "bare"
    shutil.copytree(hf_dirs["gpt2"], path)
    for extra in path.iterdir():
        if extra.name.startswith(("tokenizer_config", "special_tokens")):
            extra.unlink()
    assert (path / "tokenizer.json").exists()
    bare, full = load_adapter(path, "causal"), load_adapter(hf_dirs["gpt2"], "causal")
    assert bare.eos_token_ids == full.eos_token_ids and bare.encode(TEXTS[0]) == full.encode(TEXTS[0])
    inputs = [full.encode(t) for t in TEXTS]
    cfg = DecodingConfig(max_new_tokens=6)
    assert generate(bare, inputs, cfg) == generate(full, inputs, cfg)


def test_pickled_weights_load_only_when_allowed(tmp_path, hf_dirs):
    import shutil

    from safetensors.torch import load_file

    path = tmp_path / "pickled"
    shutil.copytree(hf_dirs["gpt2"], path)
    state = load_file(str(path / "model.safetensors"))
    (path / "model.safetensors").unlink()
    torch.save(state, path / "pytorch_model.bin")
    with pytest.raises(PermissionError, match="allow-pickle"):
        load_adapter(path, "causal")
    pickled = load_adapter(path, "causal", LoadOptions(allow_pickle=True))
    safe = load_adapter(hf_dirs["gpt2"], "causal")
    inputs = [safe.encode(t) for t in TEXTS]
    cfg = DecodingConfig(max_new_tokens=6)
    assert generate(pickled, inputs, cfg) == generate(safe, inputs, cfg)


def test_hf_seq2seq_cuts_a_long_source_as_the_tokenizer_would(hf_dirs):
    # encode() keeps the whole text so that tasks can tell users how much was cut; start() then
    # cuts exactly as the tokenizer's own truncation: the beginning plus the closing </s>.
    adapter = load_adapter(hf_dirs["bart"], "seq2seq")
    text = "广州的白云机场很大我们去白云机场接人" * 6
    whole = adapter.encode(text)
    assert adapter.input_limit(8) == 64 < len(whole)
    cut = adapter.tokenizer(text, truncation=True, max_length=64)["input_ids"]
    assert len(cut) == 64 and cut[-1] == whole[-1] == adapter.tokenizer.eos_token_id
    config = DecodingConfig(num_beams=2, max_new_tokens=6)
    assert generate(adapter, [whole], config) == generate(adapter, [cut], config)


def test_backbone_stays_within_the_context_it_was_trained_on(tmp_path):
    # textgen.json's max_context_tokens: positions past it never trained, so a long prompt keeps
    # only its end within them (and a seq2seq source its beginning).
    path = save_backbone(tmp_path)
    plain = load_adapter(path, "causal")
    (path / "textgen.json").write_text(json.dumps({"max_context_tokens": 20}), encoding="utf-8")
    short = load_adapter(path, "causal")
    assert plain.input_limit(8) == 48 - 8 - 1 and short.input_limit(8) == 20 - 8 - 1
    assert load_adapter(path, "seq2seq").input_limit(8) == 20 - 8 - 2
    prompt = short.encode("广州的白云机场很大我们去白云机场接人" * 2)
    config = DecodingConfig(max_new_tokens=8)
    assert generate(short, [prompt], config) == generate(plain, [prompt[-11:]], config)


# ---------------------------------------------------------------------- through the command line (issue 10)
def test_nan_weights_are_refused_when_loading(tiny_model: Path, tmp_path: Path):
    import shutil

    from safetensors.torch import load_file, save_file

    model = tmp_path / "nan"
    shutil.copytree(tiny_model, model)
    state = load_file(str(model / "model.safetensors"))
    name = next(k for k in state if k.endswith("query.weight"))
    state[name][0, 0] = float("nan")
    save_file(state, str(model / "model.safetensors"))
    result = run("title", "-m", model, "今天上午，市图书馆新馆正式向读者开放。")
    assert result.exit_code == 2 and "NaN or infinite" in result.stderr and name in result.stderr
    assert torch.isnan(state[name]).any()


def test_bart_titles_have_no_spaces_between_chinese_characters(tmp_path: Path):
    save_bart(tmp_path / "bart")
    result = run("title", "-m", tmp_path / "bart", "--min-new-tokens", 3, "-f", "jsonl", "今天天气很好我们去白云山")
    assert result.exit_code == 0, result.output
    text = jsonl(result.stdout)[0]["outputs"][0]["text"]
    assert text and " " not in text
