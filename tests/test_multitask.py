"""The multitask training pieces: copy labels, the copy loss, packed windows, pair pools drawn in
length buckets, sharded weights, bf16 autocast on CPU, the fixed corpus splits and the GPU recipe's
smoke run."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from textgen.models.backbone import BertBackbone, BertConfig
from textgen.tokenizer import ChineseTokenizer, build_vocab
from textgen.training import corpus
from textgen.training.copy_labels import B, I, O, copy_tags, lcs_pairs
from textgen.training.data import MixedBatches, TokenData, packed_windows, specials_of
from textgen.training.objectives import IGNORE, LossModel, batch_loss, seq2seq_batch
from textgen.training.trainer import TrainConfig, Trainer

from conftest import SENTENCES

ROOT = Path(__file__).resolve().parents[1]
SHARED = corpus.default_shared_dir()
needs_shared = pytest.mark.skipif(not (SHARED / "cctv_news_items.jsonl").exists(), reason=f"no shared data at {SHARED}")


@pytest.fixture(scope="module")
def tok() -> ChineseTokenizer:
    return ChineseTokenizer(build_vocab(SENTENCES, min_char_count=1, min_word_count=1), mode="word")


def tiny(vocab: int, copy_head: bool = True) -> BertBackbone:
    torch.manual_seed(0)
    return BertBackbone(BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=64, max_position_embeddings=128, copy_head=copy_head)).eval()


def test_copy_tags_follow_the_spaces_example():
    src = "我 真的 非常 热爱 我 的 祖国".split()
    tgt = "我 爱 我 的 祖国".split()
    src_tags, tgt_tags = copy_tags(src, tgt)
    assert tgt_tags == [B, O, B, I, I]
    assert src_tags == [B, O, O, O, B, I, I]


def test_lcs_pairs_is_a_longest_common_subsequence():
    rng = random.Random(0)
    for _ in range(50):
        a = [rng.randrange(4) for _ in range(rng.randrange(0, 12))]
        b = [rng.randrange(4) for _ in range(rng.randrange(0, 12))]
        pairs = lcs_pairs(a, b)
        assert all(a[i] == b[j] for i, j in pairs)
        assert all(i1 < i2 and j1 < j2 for (i1, j1), (i2, j2) in zip(pairs, pairs[1:]))
        # brute-force LCS length by DP
        table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(len(a)):
            for j in range(len(b)):
                table[i + 1][j + 1] = table[i][j] + 1 if a[i] == b[j] else max(table[i][j + 1], table[i + 1][j])
        assert len(pairs) == table[-1][-1]


def test_seq2seq_batch_aligns_copy_labels_with_the_tokens_they_predict(tok):
    sp = specials_of(tok)
    src, tgt = [7, 8, 9], [8, 9, 5]
    batch = seq2seq_batch([(src, tgt, *copy_tags(src, tgt))], sp)
    copy = batch.copy_labels[0].tolist()
    labels = batch.labels[0].tolist()
    # [CLS] 7 8 9 [SEP] 8 9 5 [SEP]: source tokens carry their own tags, the source [SEP] the tag of
    # the first target token, each target token the tag of the next one, the last one O.
    assert copy == [IGNORE, O, B, I, B, I, O, O, IGNORE]
    assert labels[4:8] == [8, 9, 5, sp.sep]
    untagged = seq2seq_batch([(src, tgt)], sp)
    assert untagged.copy_labels is None


def test_copy_loss_adds_to_the_token_loss_and_trains_the_head(tok):
    sp = specials_of(tok)
    model = tiny(len(tok))
    src, tgt = tok.encode(SENTENCES[0]), tok.encode(SENTENCES[0])[:6]
    batch = seq2seq_batch([(src, tgt, *copy_tags(src, tgt))], sp)
    plain = LossModel(model)(batch.mode, batch.input_ids, batch.token_type_ids, batch.attention_mask, batch.labels)
    total = batch_loss(LossModel(model), batch)
    assert float(total.detach()) > float(plain.detach()) + 0.5  # 2 x CE over 3 classes at random init is about 2.2
    total.backward()
    assert model.copy_head.weight.grad is not None and model.copy_head.weight.grad.abs().sum() > 0
    # without a copy head the same batch trains tokens only
    headless = tiny(len(tok), copy_head=False)
    assert torch.isclose(batch_loss(LossModel(headless), batch),
                         LossModel(headless)(batch.mode, batch.input_ids, batch.token_type_ids, batch.attention_mask, batch.labels))


def test_spaces_summary_items_pair_the_oracle_with_the_out_of_fold_extraction(tok):
    import hashlib

    from textgen.training.multitask import PREFIX, extraction, spaces_summary_items

    docs = [corpus.Pair("".join(SENTENCES[:4]), SENTENCES[1]), corpus.Pair("".join(SENTENCES[4:]), SENTENCES[6])]
    oof = {hashlib.sha1(docs[0].source.encode()).hexdigest(): SENTENCES[3]}  # the tagger's (wrong) choice
    items = spaces_summary_items(tok, docs, oof)
    assert len(items) == 4
    ids = lambda text: tok.encode(PREFIX["summarize"] + text)  # noqa: E731
    assert items[0][0] == ids(extraction(docs[0].source, docs[0].target))  # the oracle
    assert items[1][0] == ids(SENTENCES[3])  # the out-of-fold extraction
    oracle = extraction(docs[1].source, docs[1].target)
    assert items[2][0] == ids(oracle) and SENTENCES[6] in oracle
    assert len(items[3][0]) >= len(items[2][0])  # no out-of-fold extraction: the oracle plus random clauses
    for k, (src, tgt, src_tags, tgt_tags) in enumerate(items):
        assert tgt == tok.encode(docs[k // 2].target) and len(src_tags) == len(src) and len(tgt_tags) == len(tgt)


def test_packed_windows_have_no_padding_and_mark_document_ends(tok):
    texts = SENTENCES * 3
    windows = packed_windows(tok, texts, 16)
    assert windows and all(len(w) == 16 for w in windows)
    stream = [t for w in windows for t in w]
    assert stream.count(tok.sep_id) >= len(texts) - 1  # every document closed (the tail may be cut)
    assert packed_windows(tok, texts, 16, workers=2) == windows


def test_pools_are_drawn_in_length_buckets_and_deterministically(tok):
    sp = specials_of(tok)
    rng = random.Random(1)
    pool = []
    for _ in range(400):
        n = rng.randrange(2, 60)
        pool.append(([5] * n, [6] * 3))
    data = TokenData(pools={"title": pool})
    batches = MixedBatches(data, sp, 8, ["title"], seed=0)
    padded = real = 0
    for step in range(20):
        batch = batches(step)
        assert batch.mode == "unilm"
        real += int(batch.attention_mask.sum())
        padded += batch.attention_mask.numel()
        assert torch.equal(batch.input_ids, batches(step).input_ids)
    assert real / padded > 0.85  # random draws would waste about a third of every batch
    with pytest.raises(ValueError, match="pools"):
        MixedBatches(data, sp, 8, ["summary"])


def test_sharded_weights_round_trip(tmp_path, tok):
    from textgen.training.export import save_model_dir

    model = tiny(len(tok))
    save_model_dir(model, tok, tmp_path / "m", {"name": "x"}, max_shard_bytes=20_000)
    shards = sorted((tmp_path / "m").glob("model-*-of-*.safetensors"))
    assert len(shards) > 2 and not (tmp_path / "m" / "model.safetensors").exists()
    index = json.loads((tmp_path / "m" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == {s.name for s in shards}
    loaded = BertBackbone.load(tmp_path / "m")
    ids = torch.tensor([tok.encode(SENTENCES[1])])
    model.eval(), loaded.eval()
    assert torch.allclose(model(ids), loaded(ids))
    assert loaded.copy_head is not None


def test_trainer_precision_on_cpu(tmp_path, tok, monkeypatch):
    from textgen.training import trainer as trainer_module

    sp = specials_of(tok)
    data = TokenData(windows=[tok.encode(s) for s in SENTENCES], ends=[True] * len(SENTENCES))
    batches = MixedBatches(data, sp, 4, ["causal"])
    monkeypatch.setattr(trainer_module, "cpu_has_bf16", lambda: True)
    auto = Trainer(tiny(len(tok)), TrainConfig(out_dir=str(tmp_path / "a"), steps=2, progress=False), batches)
    assert auto.amp_dtype == torch.bfloat16
    fp32 = Trainer(tiny(len(tok)), TrainConfig(out_dir=str(tmp_path / "b"), steps=2, progress=False, precision="fp32"), batches)
    assert fp32.amp_dtype is None
    monkeypatch.setattr(trainer_module, "cpu_has_bf16", lambda: False)
    assert Trainer(tiny(len(tok)), TrainConfig(out_dir=str(tmp_path / "c"), steps=2, progress=False), batches).amp_dtype is None
    # bf16 autocast trains: the loss goes down on a batch seen again and again
    cfg = TrainConfig(out_dir=str(tmp_path / "d"), steps=30, lr=3e-3, warmup=1, progress=False, precision="bf16",
                      log_every=1, eval_every=0)
    Trainer(tiny(len(tok)), cfg, lambda step, rank=0, world=1: batches(0)).fit()
    log = [json.loads(x) for x in (tmp_path / "d" / "log.jsonl").read_text().splitlines() if '"loss"' in x]
    assert log[-1]["loss"] < log[0]["loss"] - 1.0


@needs_shared
def test_corpus_splits_are_disjoint_and_held_out_of_pretraining():
    for name, splits in (("title", ("cctv-train", "cctv-dev", "cctv-test")),):
        sources = [{p.source for p in corpus.title_pairs(s)} for s in splits]
        assert not (sources[1] & sources[2])
    cctv_train = {corpus.CCTV_BOILERPLATE.sub("", p.source) for p in corpus.title_pairs("cctv-train")}
    held = [p.source for p in corpus.title_pairs("cctv-dev") + corpus.title_pairs("cctv-test")]
    assert not {corpus.CCTV_BOILERPLATE.sub("", s) for s in held} & cctv_train
    legal = {s: {p.source for p in corpus.summary_pairs(s)} for s in ("legal-train", "legal-dev", "legal-test")}
    assert not (legal["legal-train"] & legal["legal-test"]) and not (legal["legal-dev"] & legal["legal-test"])
    qa = {s: {t.passage for t in corpus.qa_triples(s)} for s in ("qa-train", "qa-dev", "qa-test")}
    assert not (qa["qa-train"] & qa["qa-test"]) and not (qa["qa-dev"] & qa["qa-test"])
    assert all(t.passage[t.start : t.start + len(t.answer)] == t.answer for t in corpus.qa_triples("qa-test"))
    pretrain = set(corpus.pretrain_texts())
    assert not pretrain & legal["legal-test"] and not pretrain & qa["qa-test"]
    assert not any(p.source in pretrain for p in corpus.title_pairs("csl-test"))


@needs_shared
def test_gpu_recipe_smoke_run_writes_a_loadable_sharded_model(tmp_path):
    env = {**os.environ, "SMOKE": "1", "OUT": str(tmp_path), "STEPS": "4"}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_train.sh")], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["steps"] == 4 and report["dev"]
    model_dir = tmp_path / "model"
    assert all(f.stat().st_size <= 15_000_000 for f in model_dir.glob("*.safetensors"))
    meta = json.loads((model_dir / "textgen.json").read_text())
    assert meta["source_prefix"]["title"] == "标题："
    from conftest import load_task

    task = load_task("title", model_dir, model="smoke")
    from textgen.decoding.config import DecodingConfig
    from textgen.io import make_record

    out = task.run([make_record("a", "今天上午，市图书馆新馆正式向读者开放。")], DecodingConfig(max_new_tokens=4))
    assert out[0].candidates and out[0].error is None
