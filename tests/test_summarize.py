"""SPACES extraction (textgen.summarize): clauses, oracle labels, the DGCNN tagger, cross-fitting,
the model directory's extractor and its fallbacks, baselines and scores.

Tiny random backbones stand in for real ones; a toy data set with a planted signal shows that the
tagger learns. Every sentence is written here.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
import torch
from conftest import SENTENCES, save_tiny_model

from textgen.summarize import baselines
from textgen.summarize.clauses import split_clauses
from textgen.summarize.evaluate import score_summaries
from textgen.summarize.extractor import Extractor, LeadRule, above, backbone_fingerprint, extractor_for, fit, select
from textgen.summarize.oracle import lcs_length, main_score, oracle_labels
from textgen.summarize.tagger import ClauseTagger, Document, ResGatedConv, TaggerConfig
from textgen.summarize.training import (
    TrainConfig,
    cached_documents,
    cross_fit,
    extraction_score,
    folds_of,
    out_of_fold_extractions,
    predict,
    train_tagger,
    weights_cache,
    write_out_of_fold,
)

JUDGEMENT = (
    "原告甲公司与被告乙公司买卖合同纠纷一案，本院受理后依法进行了审理。\n"
    "原告诉称：双方于去年签订供货合同，原告按约交付货物，被告尚欠货款十二万元未付。\n"
    "被告辩称：货物存在质量问题，不同意支付剩余货款。\n"
    "本院认为：双方签订的合同合法有效，被告未能举证证明货物存在质量问题，应当支付货款。\n"
    "判决如下：被告于本判决生效之日起十日内支付原告货款十二万元。"
)


def save_extractor(model: Path, seed: int = 0, alpha: float = 0.0) -> None:
    """A random tagger saved into ``model`` as scripts/train_extractor.py saves a trained one."""
    from textgen.models.backbone import BertBackbone

    hidden = BertBackbone.load(model).config.hidden_size
    torch.manual_seed(seed)
    tagger = ClauseTagger(TaggerConfig(input_dim=hidden, width=16))
    with torch.no_grad():
        for block in tagger.blocks:
            block.alpha.fill_(alpha)
    tagger.save(model, {"backbone_sha256": backbone_fingerprint(model), "extract_only": {"chars": 60}})


@pytest.fixture(scope="module")
def summarize_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model serving title and summarize, with an extractor in its directory."""
    model = save_tiny_model(
        tmp_path_factory.mktemp("models") / "tiny-sum",
        tasks=["title", "summarize"],
        decoding={"summarize": {"min_new_tokens": 2, "max_new_tokens": 8}, "title": {"min_new_tokens": 2, "max_new_tokens": 8}},
    )
    save_extractor(model, alpha=0.5)
    return model


# ---------------------------------------------------------------------- clauses
def test_clauses_keep_their_punctuation_and_join_back_to_the_text():
    clauses = split_clauses(JUDGEMENT)
    assert "".join(clauses) == JUDGEMENT.replace("\n", "")
    assert "本院认为：" in clauses and "应当支付货款。" in clauses
    assert all(c[-1] in "，。：；" for c in clauses)


def test_numbers_with_ascii_separators_and_closing_quotes_stay_whole():
    clauses = split_clauses("罚款1,841,134元，于10:30到庭。他说：“同意。”然后离开,走了")
    assert "罚款1,841,134元，" in clauses and "于10:30到庭。" in clauses
    assert "“同意。”" in clauses and "走了" in clauses  # an ASCII comma between words still cuts


def test_text_without_punctuation_is_cut_into_bounded_clauses():
    text = "甲乙丙丁" * 150 + "、" + "戊己庚辛" * 100
    clauses = split_clauses(text, max_chars=256)
    assert len(clauses) > 2 and all(len(c) <= 256 for c in clauses)
    assert "".join(clauses) == text


def test_bit_parallel_lcs_matches_dynamic_programming():
    def dp(a: str, b: str) -> int:
        prev = [0] * (len(b) + 1)
        for ca in a:
            cur = [0]
            for j, cb in enumerate(b):
                cur.append(prev[j] + 1 if ca == cb else max(prev[j + 1], cur[j]))
            prev = cur
        return prev[-1]

    rng = random.Random(0)
    for _ in range(300):
        a = "".join(rng.choice("甲乙丙丁戊") for _ in range(rng.randint(0, 40)))
        b = "".join(rng.choice("甲乙丙丁己") for _ in range(rng.randint(0, 40)))
        assert lcs_length(a, b) == dp(a, b)


def test_oracle_labels_match_summary_clauses_in_document_order():
    clauses = split_clauses(JUDGEMENT)
    summary = "被告未能证明货物存在质量问题，应当支付货款。被告支付原告货款十二万元。"
    labels = oracle_labels(clauses, split_clauses(summary))
    picked = [clauses[i] for i in labels]
    assert labels == sorted(labels)
    assert "应当支付货款。" in picked and any("十二万元" in c for c in picked)
    assert not any("辩称" in c for c in picked)
    assert main_score("应当支付货款。", "应当支付货款。") == pytest.approx(1.0)


# ---------------------------------------------------------------------- the tagger
def test_rezero_block_starts_as_the_identity():
    block = ResGatedConv(8, dilation=2, kernel=3)
    x = torch.randn(2, 11, 8)
    assert torch.equal(block(x, torch.ones(2, 11, 1)), x)


def test_windowed_scoring_equals_one_pass_over_the_whole_document():
    torch.manual_seed(0)
    tagger = ClauseTagger(TaggerConfig(input_dim=12, width=16))
    with torch.no_grad():
        for block in tagger.blocks:
            block.alpha.fill_(0.7)  # make every convolution count
    vectors = torch.randn(300, 12)
    whole = tagger.probabilities(vectors, window=10_000)
    assert torch.allclose(tagger.probabilities(vectors, window=16), whole, atol=1e-5)
    # a clause far away cannot change a clause's probability; a near one can
    changed = vectors.clone()
    changed[200] += 5
    moved = tagger.probabilities(changed, window=10_000)
    assert torch.allclose(moved[:150], whole[:150], atol=1e-6) and not torch.allclose(moved[190:210], whole[190:210])


def toy_documents(n: int, seed: int) -> list[Document]:
    """Documents whose key clauses carry a planted signal in their vectors; the summary is the
    key clauses' text."""
    rng = random.Random(seed)
    words = [s.rstrip("。") for s in SENTENCES]
    docs = []
    for _ in range(n):
        count = rng.randint(20, 40)
        labels = sorted(rng.sample(range(count), 3))
        clauses = [f"{rng.choice(words)}{k}，" for k in range(count)]
        vectors = torch.randn(count, 8)
        vectors[labels, 0] += 3.0
        docs.append(Document(vectors, labels, clauses, "".join(clauses[i] for i in labels)))
    return docs


def test_tagger_learns_and_cross_fitting_predicts_each_document_out_of_fold(tmp_path: Path):
    train, held = toy_documents(48, 0), toy_documents(16, 1)
    cfg = TrainConfig(width=16, epochs=12, batch_size=8, lr=3e-3, select_chars=90)  # about 3 clauses
    torch.manual_seed(0)
    untrained = ClauseTagger(TaggerConfig(input_dim=8, width=16))
    before = extraction_score(held, predict(untrained, held), chars=90)
    tagger, run = train_tagger(train, held, cfg)
    after = extraction_score(held, predict(tagger, held), chars=90)
    assert after > before + 20 and after == pytest.approx(run["score"])

    folds = folds_of(len(train), 3)
    assert sorted(set(folds)) == [0, 1, 2] and max(folds.count(f) for f in range(3)) == 16
    probs, runs = cross_fit(train, 3, TrainConfig(width=16, epochs=4, batch_size=8, lr=3e-3))
    assert [len(p) for p in probs] == [len(d.vectors) for d in train] and len(runs) == 3

    # the generator's training reads the out-of-fold extractions back by document
    sources = ["".join(d.clauses) for d in train]
    write_out_of_fold(tmp_path / "oof.jsonl", train, probs, sources, len, 30)
    extractions = out_of_fold_extractions(tmp_path / "oof.jsonl")
    first = extractions[hashlib.sha1(sources[0].encode("utf-8")).hexdigest()]
    assert len(extractions) == len(set(sources)) and 0 < len(first) <= 30
    row = json.loads((tmp_path / "oof.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert row["selected"] == sorted(row["selected"]) and first == "".join(train[0].clauses[i] for i in row["selected"])


def test_tagger_files_round_trip(tmp_path: Path):
    torch.manual_seed(1)
    tagger = ClauseTagger(TaggerConfig(input_dim=12, width=16))
    tagger.save(tmp_path, {"threshold": 0.25})
    loaded, info = ClauseTagger.load(tmp_path)
    vectors = torch.randn(40, 12)
    assert info["threshold"] == 0.25 and loaded.config == tagger.config
    assert torch.allclose(loaded.probabilities(vectors), tagger.probabilities(vectors), atol=2e-3)  # fp16 weights


# ---------------------------------------------------------------------- choosing clauses
def test_budget_keeps_the_likeliest_clauses_in_document_order():
    probs = [0.9, 0.1, 0.5, 0.8, 0.3]
    cost = [5, 1, 2, 4, 3]
    assert fit([0, 2, 3, 4], probs, cost, None) == ([0, 2, 3, 4], 0)
    assert fit([0, 2, 3, 4], probs, cost, 9) == ([0, 3], 2)
    assert fit([0, 2, 3, 4], probs, cost, 8) == ([0, 2], 2)  # 3 does not fit after 0; 2 still does
    assert fit([0, 3], probs, cost, 2) == ([0], 1)  # nothing fits: the likeliest alone
    assert above([0.1, 0.15, 0.05], 0.2) == [1]  # every document gets an extraction
    # the default: no threshold, the likeliest clauses fill the budget (recall first)
    assert select(probs, cost, 7) == ([0, 2], 3)
    assert select(probs, cost, 7, threshold=0.6) == ([0], 1)


def test_extractor_of_a_model_directory_and_its_fallbacks(summarize_model: Path, tiny_model: Path, tmp_path: Path):
    from textgen.models.families import load_adapter

    adapter = load_adapter(summarize_model, "seq2seq")
    extractor = extractor_for(summarize_model, adapter)
    assert isinstance(extractor, Extractor)
    clauses = split_clauses(JUDGEMENT * 30)
    extraction = extractor.extract(clauses, budget=40, cost=lambda c: len(adapter.encode(c)))
    assert len(extraction.probs) == len(clauses)  # every clause scored, however long the document
    assert sum(len(adapter.encode(clauses[i])) for i in extraction.selected) <= 40
    assert extraction.selected == sorted(extraction.selected)

    plain = extractor_for(tiny_model, load_adapter(tiny_model, "seq2seq"))
    assert isinstance(plain, LeadRule) and not plain.warn
    lead = plain.extract(clauses, budget=30, cost=len)
    assert lead.selected == list(range(len(lead.selected))) and len(lead.text) <= 30

    import shutil

    changed = tmp_path / "retrained"
    shutil.copytree(summarize_model, changed)
    save_tiny_model(changed, tasks=["summarize"], seed=5)  # new weights, the old extractor files stay
    stale = extractor_for(changed, load_adapter(changed, "seq2seq"))
    assert isinstance(stale, LeadRule) and stale.warn and "train_extractor.py" in stale.extract(clauses).notes[0]


# ---------------------------------------------------------------------- baselines and scores
def test_baselines():
    assert baselines.lead(JUDGEMENT, 20) == JUDGEMENT.replace("\n", "")[:20]
    assert baselines.last(JUDGEMENT, 20) == JUDGEMENT.replace("\n", "")[-20:]
    ranked = baselines.textrank(JUDGEMENT, 60)
    assert 0 < len(ranked) <= 60
    positions = [JUDGEMENT.replace("\n", "").find(s) for s in baselines.sentences(ranked)]
    assert positions == sorted(positions) and -1 not in positions  # whole sentences in document order
    summary = "被告未能举证证明货物存在质量问题，应当支付货款。"
    assert baselines.oracle(JUDGEMENT, summary) == "被告未能举证证明货物存在质量问题，应当支付货款。"


def test_scores_are_char_rouge_and_the_word_level_cail_score():
    refs = ["被告应当支付货款。", "合同合法有效。"]
    perfect = score_summaries(refs, refs)
    assert perfect["rougeL"] == 100 and perfect["cail"] == 100 and perfect["chars"] == pytest.approx(8)
    half = score_summaries(["被告应当支付货款。", ""], refs)
    assert half["rouge1"] == 50 and half["cail"] == 50
    partial = score_summaries(["被告支付货款。"], refs[:1])
    assert 0 < partial["cail"] < partial["rouge1"] < 100  # words match less often than characters
    json.dumps(perfect)


def test_a_summary_may_stop_at_half_its_source_and_the_minimum_follows_its_beam():
    from textgen.decoding.length import MinNewTokensPerRow, source_bound_minimums

    assert source_bound_minimums(60, [10, 200]) == [5, 60]
    rule = MinNewTokensPerRow([2, 5], eos_token_ids=[3])
    logits = torch.zeros(2, 6)
    out = rule(torch.zeros(2, 3, dtype=torch.long), logits)
    assert out[0, 3] == 0 and out[1, 3] == float("-inf") and torch.isfinite(out[1, :3]).all()
    rule.reorder(torch.tensor([1, 1]))  # both rows now continue the second input's beam
    assert (rule(torch.zeros(2, 3, dtype=torch.long), logits)[:, 3] == float("-inf")).all()


def test_documents_are_cached_per_key_and_caches_per_weights(tmp_path: Path, summarize_model: Path):
    calls = []

    def build() -> list[Document]:
        calls.append(1)
        return [Document(torch.randn(3, 4), [1], ["甲，", "乙，", "丙。"], "乙")]

    path = tmp_path / "docs.pt"
    first = cached_documents(path, "k1", build)
    again = cached_documents(path, "k1", build)
    assert len(calls) == 1 and again[0].labels == [1] and again[0].clauses == first[0].clauses
    assert torch.allclose(again[0].vectors, first[0].vectors, atol=1e-2)  # stored in fp16
    cached_documents(path, "k2", build)  # other weights or settings: built again
    assert len(calls) == 2
    cache, sha = weights_cache(summarize_model, tmp_path / "runs")
    assert cache == tmp_path / "runs" / f"tiny-{sha[:8]}" and cache.is_dir() and sha == backbone_fingerprint(summarize_model)
    assert weights_cache(summarize_model, tmp_path / "runs", tmp_path / "mine")[0] == tmp_path / "mine"
