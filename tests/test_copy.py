"""The copy mechanisms (textgen.decoding.copy): outputs made of source pieces, whole numbers, one-span
answers, the SPACES copy-head state machine, and the title task's ``copy`` option.

Constraints are driven two ways: by a random "model" (random logits, a bias towards digits, random
beam reordering) straight through the processor, which reaches odd states quickly, and end to end
through ``generate`` with tiny random models. Sources are our own sentences full of numbers that a
model could mix up (0.7 and 7, 2023 and 12, 3,200).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import torch
from conftest import load_task, task_config
from typer.testing import CliRunner

from textgen.decoding import DecodingConfig, generate
from textgen.decoding.copy import MODES, CopyHead, CopyVocabulary, SourceIndex, TextCopy, copy_processors
from textgen.evaluation.metrics import numbers, unfaithful_numbers, unfaithful_share
from textgen.io import Record
from textgen.models.adapters import hf_token_texts, join_cjk
from textgen.models.families import load_adapter
from textgen.tasks.title import COPY_MODES
from textgen.tokenizer import ChineseTokenizer, build_vocab

# Our own sentences, with numbers that differ by a cut (0.7 / 7, 2023 / 23), a join (20 + 23) or a space.
SOURCES = [
    "上月全市居民消费价格同比上涨0.7%，其中食品价格上涨7%，蔬菜价格下降3.2%。",
    "2023年共有12所学校开学，投资3,200万元，比2019年多了23所。",
    "研究团队在2022年发现了15种新材料，其中3种的强度提高了0.25倍。",
]
BAD_NUMBER_TEXT = "增长7%和3.2倍，2023年有20所，0.7元"  # fodder for vocabularies: numbers the sources mix up
QWEN = Path("/work/shared/data/tokenizers/qwen2-bpe151k")
EMBEDDED = Path(__file__).resolve().parents[1] / "textgen" / "models" / "embedded" / "mini-zh-title"


# ---------------------------------------------------------------------- vocabularies
def ours() -> tuple[CopyVocabulary, callable, callable]:
    """Our word-unit tokenizer as shipped (the embedded title model's vocabulary)."""
    tok = ChineseTokenizer.from_dir(EMBEDDED)
    texts = [tok.token_text(i) for i in range(len(tok))]
    return CopyVocabulary(texts, [tok.sep_id], tok.decode), tok.encode, tok.decode


def wordpiece() -> tuple[CopyVocabulary, callable, callable]:
    """A BERT WordPiece tokenizer (normalizer, pre-tokenizer and decoder of bert-base-chinese) with
    whole numbers and ## digit pieces."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set("".join(SOURCES) + BAD_NUMBER_TEXT) - set("0123456789"))
    digits = [str(d) for d in range(10)] + [f"##{d}" for d in range(10)] + ["20", "##23", "2023", "12", "##12"]
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *digits])}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(handle_chinese_chars=True, lowercase=False)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                                  cls_token="[CLS]", mask_token="[MASK]")

    def decode(ids):  # as textgen's HF adapters decode WordPiece
        return join_cjk(tok.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False))

    texts = hf_token_texts(tok, len(tok))
    return CopyVocabulary(texts, [tok.sep_token_id], decode), lambda s: tok(s, add_special_tokens=False)["input_ids"], decode


def qwen2() -> tuple[CopyVocabulary, callable, callable]:
    if not QWEN.is_dir():
        pytest.skip(f"the Qwen2 tokenizer is not at {QWEN} (shared data absent)")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(QWEN)
    decode = lambda ids: tok.decode(list(ids))  # noqa: E731
    texts = hf_token_texts(tok, len(tok))
    return CopyVocabulary(texts, [tok.eos_token_id], decode), lambda s: tok(s, add_special_tokens=False)["input_ids"], decode


@pytest.fixture(scope="module", params=["ours", "wordpiece", "qwen2"])
def vocabulary(request):
    if request.param == "ours":
        return ours()
    if request.param == "wordpiece":
        return wordpiece()
    return qwen2()


# ---------------------------------------------------------------------- the random driver
def drive(processor, vocab: CopyVocabulary, n_sources: int, *, beams: int, steps: int, seed: int, digit_bias: float = 15.0):
    """Decode ``steps`` tokens per row from random logits (digits favoured, end token banned so
    rows run long) through ``processor``, reordering rows among their input's beams at random after
    every step, as beam search does (rows that may only end are dropped). Returns (source of each row, generated ids [N, steps],
    outputs that could have ended: (row source, ids) wherever the end token was allowed)."""
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    bias = torch.tensor([digit_bias if re.search(rb"[0-9]", b) else 0.0 for b in vocab.vocab.token_bytes])
    owner = torch.arange(n_sources).repeat_interleave(beams)
    processor.reorder(owner)
    generated = torch.zeros(len(owner), 0, dtype=torch.long)
    endable = []
    for t in range(steps):
        logits = torch.randn(len(owner), vocab.size, generator=gen) * 3 + bias
        out = processor(generated, logits)
        assert torch.isfinite(out).any(dim=-1).all(), "a row was left with nothing to generate"
        for r in range(len(owner)):
            if any(torch.isfinite(out[r, e]) for e in vocab.eos):
                endable.append((int(owner[r]), generated[r].tolist()))
        out[:, vocab.eos] = float("-inf")
        choice = out.argmax(dim=-1)
        live = torch.isfinite(out).any(dim=-1).tolist()  # rows that may only end leave, as in search
        groups = [[r for r in range(int(o) * beams, int(o) * beams + beams) if live[r]] for o in range(n_sources)]
        if not all(groups):
            break
        parents = torch.tensor([rng.choice(groups[int(o)]) for o in owner])
        processor.reorder(parents)
        generated = torch.cat([generated[parents], choice[parents][:, None]], dim=1)
    return owner, generated, endable


def pieces(index: SourceIndex, vocab: CopyVocabulary, ids: list[int]) -> int | None:
    """The fewest pieces (runs of whole tokens, each a substring of the source text) that spell
    ``ids``; None when no split exists."""
    best = [0] + [None] * len(ids)
    for j in range(1, len(ids) + 1):
        for i in range(j):
            text = b"".join(vocab.vocab.token_bytes[t] for t in ids[i:j])
            if best[i] is not None and text and text in index.text and (best[j] is None or best[i] + 1 < best[j]):
                best[j] = best[i] + 1
    return best[-1]


# ---------------------------------------------------------------------- the text constraint
@pytest.mark.parametrize("max_pieces", [None, 1])
def test_outputs_are_source_pieces_with_whole_numbers(vocabulary, max_pieces):
    vocab, encode, decode = vocabulary
    sources = [encode(s) for s in SOURCES]
    processor = TextCopy(vocab, sources, max_pieces=max_pieces)
    owner, generated, endable = drive(processor, vocab, len(SOURCES), beams=3, steps=10, seed=1)
    assert len(endable) > len(owner)  # rows could end at many points: the checks below have material
    for src, ids in endable:  # every output the search could have ended with
        index = processor.sources[src]
        k = pieces(index, vocab, ids)
        assert k is not None and (max_pieces is None or k <= max_pieces), (decode(ids), SOURCES[src])
        assert unfaithful_numbers(decode(ids), SOURCES[src]) == [], (decode(ids), SOURCES[src])


def _replay(vocab, source, ids, max_pieces=None, numbers_only=False) -> TextCopy:
    """A fresh constraint over one source fed ``ids`` one token at a time."""
    fresh = TextCopy(vocab, [source], max_pieces=max_pieces, numbers_only=numbers_only)
    zeros = torch.zeros(1, vocab.size)
    for t in range(len(ids) + 1):
        fresh(torch.tensor([ids[:t]], dtype=torch.long), zeros)
    return fresh


@pytest.mark.parametrize("numbers_only", [False, True])
def test_state_follows_its_beam(vocabulary, numbers_only):
    """After random reorders, every row allows exactly what a fresh constraint fed that row's
    tokens allows: the state moved with the row."""
    vocab, encode, _ = vocabulary
    sources = [encode(s) for s in SOURCES]
    processor = TextCopy(vocab, sources, numbers_only=numbers_only)
    owner, generated, _ = drive(processor, vocab, len(SOURCES), beams=3, steps=6, seed=2)
    zeros = torch.zeros(len(owner), vocab.size)
    allowed = torch.isfinite(processor(generated, zeros))
    for r, (o, ids) in enumerate(zip(owner.tolist(), generated.tolist())):
        fresh = _replay(vocab, sources[o], ids, numbers_only=numbers_only)
        expected = torch.isfinite(fresh(torch.tensor([ids]), torch.zeros(1, vocab.size)))[0]
        assert torch.equal(allowed[r], expected), f"row {r} of source {o}"


def test_numbers_only_leaves_other_text_free(vocabulary):
    vocab, encode, decode = vocabulary
    sources = [encode(s) for s in SOURCES]
    processor = TextCopy(vocab, sources, numbers_only=True)
    owner, generated, endable = drive(processor, vocab, len(SOURCES), beams=2, steps=12, seed=3)
    texts = [decode(ids) for _, ids in endable]
    assert all(not unfaithful_numbers(t, SOURCES[s]) for (s, _), t in zip(endable, texts))
    assert any(numbers(t) for t in texts)  # the digit-loving model did write numbers, whole ones
    free = [t for (s, _), t in zip(endable, texts) if any(ch not in SOURCES[s] for ch in t if not ch.isspace())]
    assert free  # and text that is not in the source


def test_without_the_constraint_the_same_model_makes_numbers_up(vocabulary):
    """The adversary is real: the digit-loving random model, unconstrained, writes numbers the
    sources do not hold (so the zero above is the constraint's doing)."""
    vocab, encode, decode = vocabulary
    gen = torch.Generator().manual_seed(1)
    bias = torch.tensor([15.0 if re.search(rb"[0-9]", b) else 0.0 for b in vocab.vocab.token_bytes])
    ids = (torch.randn(len(SOURCES) * 3, 10, vocab.size, generator=gen) * 3 + bias)
    ids[..., vocab.eos] = float("-inf")
    texts = [decode(row) for row in ids.argmax(dim=-1).tolist()]
    assert unfaithful_share(texts, SOURCES * 3) > 0.5


def test_numbers_are_never_cut_or_assembled():
    """Hand-made cases with our tokenizer: what may follow what."""
    vocab, encode, _ = ours()
    source = encode("价格上涨0.7%，2023年")
    processor = TextCopy(vocab, [source])
    zeros = torch.zeros(1, vocab.size)

    def allowed(text: str) -> set[str]:
        ids = encode(text) if text else []
        fresh = _replay(vocab, source, ids)
        out = fresh(torch.tensor([ids], dtype=torch.long), zeros)
        return {vocab.texts[i] for i in torch.isfinite(out[0]).nonzero().flatten().tolist()}

    first = allowed("")
    assert {"0", "2", "20", "202"} <= first and not {"7", "3", "23", "02"} & first  # no number cut from a longer one
    assert allowed("202") == {"3"}  # 202 must go on to 2023 (with the decoder's glued ##3)
    after_zero = allowed("上涨0")
    assert "." in after_zero and "%" not in after_zero and "" not in after_zero  # 0 must go on to 0.7; no end there
    assert allowed("上涨0.") == {"7"}
    after_whole = allowed("上涨0.7")
    assert "%" in after_whole and "202" not in after_whole and "0" not in after_whole  # no 0.7202...
    assert "" in after_whole or vocab.texts[vocab.eos[0]] == ""  # the end token (empty text) may come
    assert processor.sources[0].legal_end[len("价格上涨0.7".encode())]


def test_numbers_the_source_spaces_apart_stay_apart():
    """Our decoder spaces two whole words (``s222 101``) but glues ``##2`` and ``101`` after a
    Chinese character (``段222101``): whether a number may run on is judged in each row's context."""
    vocab, encode, decode = ours()
    source = encode("省道线段s222 101k+400米处")
    processor = TextCopy(vocab, [source])
    _, _, endable = drive(processor, vocab, 1, beams=4, steps=8, seed=5, digit_bias=30.0)
    texts = [decode(ids) for _, ids in endable]
    assert any("222" in t for t in texts)
    assert not any(unfaithful_numbers(t, "省道线段s222 101k+400米处") for t in texts), texts
    output = [encode("段")[0], *[ChineseTokenizer.from_dir(EMBEDDED).token_to_id["##2"]] * 3]  # 段 ##2 ##2 ##2
    fresh = _replay(vocab, source, output)
    allowed = torch.isfinite(fresh(torch.tensor([output]), torch.zeros(1, vocab.size)))[0]
    assert decode([*output, encode("101")[0]]) == "段222101"
    assert not allowed[encode("101")[0]]  # 段222101 would be a number the source does not have


def test_span_mode_answers_are_substrings(vocabulary):
    vocab, encode, decode = vocabulary
    sources = [encode(s) for s in SOURCES]
    processor = TextCopy(vocab, sources, max_pieces=1)
    _, _, endable = drive(processor, vocab, len(SOURCES), beams=2, steps=8, seed=4, digit_bias=0.0)
    spelled = [b"".join(vocab.vocab.token_bytes[t] for t in s) for s in sources]
    for src, ids in endable:
        text = b"".join(vocab.vocab.token_bytes[t] for t in ids)
        assert text in spelled[src]


def test_cut_outputs_end_on_a_legal_boundary():
    """With max_new_tokens the last step only allows tokens after which the output may end."""
    vocab, encode, decode = ours()
    sources = [encode(s) for s in SOURCES]
    for steps in (2, 3, 4, 5):
        processor = TextCopy(vocab, sources, max_new_tokens=steps)
        owner, generated, _ = drive(processor, vocab, len(SOURCES), beams=2, steps=steps, seed=steps, digit_bias=8.0)
        for o, ids in zip(owner.tolist(), generated.tolist()):
            assert not unfaithful_numbers(decode(ids), SOURCES[o]), decode(ids)


def test_metric_and_constraint_agree_on_what_a_number_is():
    from textgen.decoding.copy import _NUMBER

    text = "第３季度0.7%，1,000人，2023年3月，v1.2.3版，..5，7,，"
    assert [m.group().decode() for m in _NUMBER.finditer(text.encode())] == re.findall(
        r"(?:[0-9０-９])+(?:[.,](?:[0-9０-９])+)*", text)
    assert numbers(text) == ["3", "0.7", "1,000", "2023", "3", "1.2.3", "5", "7"]
    assert unfaithful_numbers("上涨7%", "上涨0.7%") == ["7"] and unfaithful_numbers("３月", "3月") == []


def test_bad_arguments_fail_clearly():
    vocab, encode, _ = ours()
    with pytest.raises(ValueError, match="max_pieces"):
        TextCopy(vocab, [encode("一")], max_pieces=0)
    with pytest.raises(ValueError, match="give one of them"):
        TextCopy(vocab, [encode("一")], max_pieces=1, numbers_only=True)
    with pytest.raises(ValueError, match="copy must be one of"):
        copy_processors(object(), [[1]], "words")
    assert MODES == COPY_MODES  # the title task's choices are the decoder's modes


# ---------------------------------------------------------------------- tiny models, end to end
@pytest.fixture(scope="module")
def copy_model(tmp_path_factory) -> Path:
    """A random 2-layer backbone with a copy head over a word vocabulary of our sentences."""
    from textgen.models.backbone import BertBackbone, BertConfig

    path = tmp_path_factory.mktemp("copyhead") / "model"
    tok = ChineseTokenizer(build_vocab(SOURCES + [BAD_NUMBER_TEXT] * 3, min_char_count=1, min_word_count=1), mode="word")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, copy_head=True)
    BertBackbone(config).save(path)
    tok.save(path)
    (path / "textgen.json").write_text(json.dumps({"name": "copyhead", "tasks": ["title"]}), encoding="utf-8")
    return path


def digit_lover(adapter) -> TextCopy | None:
    """A processor standing in for a model that loves numbers: digit tokens +6."""
    from textgen.decoding.processors import LogitsProcessor

    bias = torch.tensor([6.0 if re.search(r"[0-9]", t) else 0.0 for t in adapter.token_texts()])

    class Digits(LogitsProcessor):
        def __call__(self, generated, logits):
            return logits + bias

    return Digits()


@pytest.mark.parametrize("mode", ["text", "span", "head"])
def test_generate_keeps_numbers_faithful_in_every_mode(copy_model, mode):
    adapter = load_adapter(copy_model, "seq2seq")
    sources = [adapter.encode(s) for s in SOURCES]
    config = DecodingConfig(num_beams=3, num_return_sequences=3, max_new_tokens=12, min_new_tokens=3)
    lover = digit_lover(adapter)
    free = generate(adapter, sources, config, processors=[lover])
    texts = [adapter.decode(h.token_ids) for hs in free for h in hs]
    assert unfaithful_share(texts, [s for s in SOURCES for _ in range(3)]) > 0
    hyps = generate(adapter, sources, config, processors=[lover, *copy_processors(adapter, sources, mode, max_new_tokens=12)])
    for source, hs in zip(SOURCES, hyps):
        for h in hs:
            text = adapter.decode(h.token_ids)
            assert not unfaithful_numbers(text, source), (mode, text, source)
            if mode == "span":
                assert text.replace(" ", "") in source


def test_head_mode_needs_a_copy_head(tiny_model):
    adapter = load_adapter(tiny_model, "seq2seq")
    with pytest.raises(ValueError, match="copy=head needs a model with a copy head"):
        copy_processors(adapter, [adapter.encode("今天")], "head")


class _Scripted:
    """Wrap an adapter so its copy head says ``tags[t]`` (0 O, 1 B, 2 I) at output step t."""

    def __init__(self, adapter, tags: list[int]) -> None:
        self.adapter, self.tags, self.width = adapter, tags, None

    def __getattr__(self, name):
        return getattr(self.adapter, name)

    def start(self, inputs, max_new_tokens):
        logits, state = self.adapter.start(inputs, max_new_tokens)
        self.width = len(state)
        return logits, state

    def copy_probs(self, state):
        t = len(state) - self.width
        probs = torch.zeros(state.key_mask.shape[0], 3)
        probs[:, self.tags[min(t, len(self.tags) - 1)]] = 1.0
        return probs


def test_copy_head_state_machine(copy_model):
    """Tags I at the start (forbidden: acts as O), then B I I (a copied trigram), O (free), B I."""
    adapter = load_adapter(copy_model, "seq2seq")
    tags = [2, 1, 2, 2, 0, 1, 2, 0]
    scripted = _Scripted(adapter, tags)
    sources = [adapter.encode(s) for s in SOURCES]
    config = DecodingConfig(num_beams=3, num_return_sequences=3, max_new_tokens=len(tags), min_new_tokens=len(tags))
    head = CopyHead(sources, adapter.eos_token_ids, top_k=None)
    hyps = generate(scripted, sources, config, processors=[head])

    def is_ngram(gram, src):
        return any(src[j:j + len(gram)] == gram for j in range(len(src) - len(gram) + 1))

    strays = 0
    for src, hs in zip(sources, hyps):
        assert len(hs) == 3
        for h in hs:
            ids = h.token_ids
            assert is_ngram(ids[1:4], src), "B I I must copy a contiguous trigram, within its own beam"
            assert is_ngram(ids[5:7], src)
            strays += ids[0] not in src or ids[4] not in src  # O steps are free
    assert strays > 0  # the random model did wander at the O steps, so the copy steps were the rule's doing


def test_copy_head_backs_off_to_any_source_token():
    """When the output so far is no n-gram prefix of the source (an earlier rule forced another
    token), state I backs off to n = 1: any source token (and the end token)."""
    head = CopyHead([[5, 6, 7]], [1], top_k=None)
    head.probs = torch.tensor([[0.0, 1.0, 0.0]])
    logits = torch.zeros(1, 10)
    out = head(torch.zeros(1, 0, dtype=torch.long), logits)
    assert set(torch.isfinite(out[0]).nonzero().flatten().tolist()) == {1, 5, 6, 7}  # B: n = 1
    head.probs = torch.tensor([[0.0, 0.0, 1.0]])
    out = head(torch.tensor([[6]]), logits)
    assert set(torch.isfinite(out[0]).nonzero().flatten().tolist()) == {7}  # I after 6: the bigram 6 7
    out = head(torch.tensor([[6, 9]]), logits)  # 9 is no source token: 6 9 never occurs
    assert set(torch.isfinite(out[0]).nonzero().flatten().tolist()) == {1, 5, 6, 7} and head.n == [1]
    head.probs = torch.tensor([[1.0, 0.0, 0.0]])
    assert torch.isfinite(head(torch.tensor([[6, 9, 5]]), logits)).all() and head.n == [0]  # O: free


def test_copy_head_reports_models_without_one(tiny_model):
    adapter = load_adapter(tiny_model, "seq2seq")
    head = CopyHead([adapter.encode("今天")], adapter.eos_token_ids)
    with pytest.raises(ValueError, match="copy head"):
        generate(adapter, [adapter.encode("今天")], DecodingConfig(max_new_tokens=2), processors=[head])


# ---------------------------------------------------------------------- the title task and its flag
def test_title_copy_option_old_presets_and_validation(copy_model, tmp_path):
    import shutil

    model = tmp_path / "preset"
    shutil.copytree(copy_model, model)
    meta = json.loads((model / "textgen.json").read_text(encoding="utf-8"))
    for preset, expected in ((True, "text"), (False, "off"), ("span", "span")):
        meta["options"] = {"title": {"copy": preset}}
        (model / "textgen.json").write_text(json.dumps(meta), encoding="utf-8")
        assert load_task("title", model, model="m").settings["copy"] == expected
    assert load_task("title", copy_model, model="m").settings["copy"] == "off"
    with pytest.raises(ValueError, match="copy must be one of off, text, span, head"):
        load_task("title", copy_model, model="m", copy="words")


def test_title_task_span_mode_and_head_mode(copy_model, tiny_model):
    config = task_config("title", {"num_beams": 2, "max_new_tokens": 8, "min_new_tokens": 2})
    records = [Record(id=str(i), text=s) for i, s in enumerate(SOURCES)]
    for out, rec in zip(load_task("title", copy_model, model="m", copy="span").run(records, config), records):
        assert out.candidates[0].text.replace(" ", "") in rec.text
    for out, rec in zip(load_task("title", copy_model, model="m", copy="head").run(records, config), records):
        assert not unfaithful_numbers(out.candidates[0].text, rec.text)
    no_head = load_task("title", tiny_model, model="m", copy="head").run(records[:1], config)[0]
    assert "copy=head needs a model with a copy head" in no_head.error


def test_copy_flag_on_the_command_line(copy_model):
    from textgen.cli.app import app

    runner = CliRunner()
    bad = runner.invoke(app, ["title", "--model", str(copy_model), "--copy", "words", SOURCES[0]])
    assert bad.exit_code == 2 and "copy must be one of off, text, span, head" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    good = runner.invoke(app, ["title", "--model", str(copy_model), "--copy", "span", "--min-new-tokens", "2", SOURCES[1]])
    assert good.exit_code == 0, good.output
    assert good.stdout.strip().replace(" ", "") in SOURCES[1]
    helped = runner.invoke(app, ["title", "--help"], terminal_width=200)
    flat = " ".join(helped.stdout.replace("│", " ").split())  # rich wraps the help wherever the width falls
    assert "--copy" in flat and "off, text, span, head" in flat


def test_copy_in_the_repl(copy_model):
    from textgen.cli.app import app

    script = ":set copy=words\n:set copy=true\n:set copy=span min_new_tokens=2 max_new_tokens=6\n:set\n" + SOURCES[2] + "\n"
    result = CliRunner().invoke(app, ["repl", "--model", str(copy_model), "--task", "title"], input=script)
    assert result.exit_code == 0, result.output
    assert result.stderr.count("copy must be one of off, text, span, head") == 2  # "words" and "true" refused
    assert "copy=span" in result.stderr
    assert result.stdout.strip().replace(" ", "") in SOURCES[2]


def test_eval_title_reports_faithfulness(copy_model, tmp_path):
    from textgen.cli.app import app

    data = tmp_path / "dev.jsonl"
    data.write_text("".join(json.dumps({"text": s, "title": s[:8]}, ensure_ascii=False) + "\n" for s in SOURCES), encoding="utf-8")
    result = CliRunner().invoke(app, ["eval", "title", "--data", str(data), "--model", str(copy_model), "--copy", "text",
                                      "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["decoding"]["copy"] == "text" and report["unfaithful"] == 0.0 and report["unfaithful_titles"] == 0
    bad = CliRunner().invoke(app, ["eval", "title", "--data", str(data), "--model", str(copy_model), "--copy", "yes"])
    assert bad.exit_code == 2 and "copy must be one of" in bad.stderr
