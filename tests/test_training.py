"""The training path on tiny models: objectives, sparse softmax, the trainer (learning, resume,
EMA), DDP with two CPU processes, and the `textgen train` commands."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import SENTENCES, run, save_tiny_model
from typer.testing import CliRunner

from textgen.cli.app import app
from textgen.models.backbone import BertBackbone, BertConfig
from textgen.models.families import load_adapter
from textgen.tokenizer import ChineseTokenizer, build_vocab
from textgen.training.data import MixedBatches, TokenData, pair_ids, specials_of, text_windows
from textgen.training.objectives import (
    IGNORE,
    Specials,
    causal_batch,
    masked_batch,
    replace_noise,
    seq2seq_batch,
    sparse_softmax_loss,
)
from textgen.training.trainer import TrainConfig, Trainer, lr_factor

SP = Specials(pad=0, cls=2, sep=3, mask=4, vocab_size=50)
REPO = Path(__file__).resolve().parents[1]


def _tokenizer() -> ChineseTokenizer:
    return ChineseTokenizer(build_vocab(SENTENCES, min_char_count=1, min_word_count=1), mode="word")


def _backbone(vocab: int, dropout: float = 0.1) -> BertBackbone:
    torch.manual_seed(0)
    return BertBackbone(BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=64, max_position_embeddings=96,
                                   hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout))


def _batches(tok: ChineseTokenizer, schedule=("causal", "pairs", "masked", "span"), batch_size: int = 4) -> MixedBatches:
    windows, ends = text_windows(tok, SENTENCES, 24)
    pairs = pair_ids(tok, [(s, s[:6]) for s in SENTENCES], 40, 8)
    return MixedBatches(TokenData(windows, ends, pairs), specials_of(tok), batch_size, schedule, seed=1)


# ---------------------------------------------------------------------- objectives
def test_seq2seq_labels_align_with_the_predicting_position():
    b = seq2seq_batch([([10, 11, 12], [20, 21]), ([13], [22, 23, 24])], SP)
    row = b.input_ids[0].tolist()
    assert row == [2, 10, 11, 12, 3, 20, 21, 3]
    assert b.token_type_ids[0].tolist() == [0, 0, 0, 0, 0, 1, 1, 1]
    # source [SEP] (position 4) predicts the first target token; the last target token predicts [SEP]
    assert b.labels[0].tolist() == [IGNORE] * 4 + [20, 21, 3, IGNORE]
    assert b.labels[1].tolist()[:6] == [IGNORE, IGNORE, 22, 23, 24, 3]
    assert b.attention_mask[1].tolist() == [True] * 7 + [False]


def test_causal_batch_closes_only_finished_documents():
    b = causal_batch([[10, 11], [12, 13]], SP, ends=[True, False])
    assert b.input_ids.tolist() == [[2, 10, 11, 3], [2, 12, 13, 0]]
    assert b.labels.tolist() == [[10, 11, 3, IGNORE], [12, 13, IGNORE, IGNORE]]


def test_masked_batch_predicts_only_masked_positions():
    rng = random.Random(0)
    window = list(range(10, 40))
    b = masked_batch([window], SP, rng, prob=0.3)
    labelled = b.labels[0].ne(IGNORE)
    assert 0 < int(labelled.sum()) < len(window)
    assert b.labels[0][labelled].tolist() == [t for t, m in zip([2, *window, 3], labelled.tolist()) if m]
    assert not labelled[0] and not labelled[-1]  # never [CLS] / [SEP]
    assert b.input_ids[0][~labelled].tolist() == [t for t, m in zip([2, *window, 3], labelled.tolist()) if not m]


def test_replace_noise_keeps_labels_and_draws_from_the_same_row():
    b = seq2seq_batch([(list(range(10, 30)), list(range(30, 40)))] * 2, SP)
    noisy = replace_noise(b, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(noisy.labels, b.labels)
    changed = noisy.input_ids.ne(b.input_ids)
    assert 0 < int(changed.sum()) < int(b.attention_mask.sum())
    for r in range(2):
        assert set(noisy.input_ids[r][changed[r]].tolist()) <= set(b.input_ids[r].tolist())


def test_sparse_softmax_matches_its_formula_and_gradient_support():
    torch.manual_seed(0)
    logits = torch.randn(3, 20, requires_grad=True)
    target = torch.tensor([0, 5, 19])
    loss = sparse_softmax_loss(logits, target, k=4)
    top = logits.detach().topk(4, dim=-1)
    expected = torch.log(torch.exp(top.values).sum(-1)) - logits.detach()[torch.arange(3), target]
    assert torch.allclose(loss, expected, atol=1e-6)
    loss.sum().backward()
    support = torch.zeros(3, 20, dtype=torch.bool)
    support[torch.arange(3)[:, None], top.indices] = True
    support[torch.arange(3), target] = True
    assert torch.all(logits.grad[~support] == 0) and torch.all(logits.grad[support] != 0)
    # with k = vocabulary size it is ordinary cross-entropy
    full = sparse_softmax_loss(logits.detach(), target, k=20)
    assert torch.allclose(full, torch.nn.functional.cross_entropy(logits.detach(), target, reduction="none"), atol=1e-5)


def test_lr_schedule_warms_up_then_decays():
    cfg = TrainConfig(out_dir="x", steps=100, warmup=10, min_lr_ratio=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(55, cfg) == pytest.approx(0.55, abs=0.01)
    assert lr_factor(100, cfg) == pytest.approx(0.1)


def test_batches_are_a_function_of_step_and_shard():
    tok = _tokenizer()
    mb = _batches(tok)
    assert torch.equal(mb(5).input_ids, mb(5).input_ids)
    assert mb(0).mode == "causal" and mb(1).mode == "unilm" and mb(2).mode == "bidirectional"
    # rank 1 of 2 only sees odd-indexed windows
    odd = {tuple(w) for w in mb.data.windows[1::2]}
    rows = mb(0, rank=1, world=2).input_ids.tolist()
    for row in rows:
        body = [t for t in row[1:] if t not in (0, tok.sep_id)]
        assert tuple(body) in odd


# ---------------------------------------------------------------------- trainer
def test_trainer_learns_and_keeps_the_best_checkpoint(tmp_path):
    tok = _tokenizer()
    model = _backbone(len(tok))
    mb = _batches(tok, schedule=("causal",))
    from textgen.training.recipes import loss_evaluator

    dev = TokenData(*text_windows(tok, SENTENCES[:3], 24))
    evaluate = loss_evaluator(dev, tok, ("causal",))
    before = evaluate(model.eval())["dev_loss"]
    cfg = TrainConfig(out_dir=str(tmp_path), steps=40, lr=3e-3, warmup=5, eval_every=20, save_every=20, progress=False)
    Trainer(model, cfg, mb, evaluate=evaluate).fit()
    log = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    dev_losses = [r["dev"]["dev_loss"] for r in log if "dev" in r]
    assert dev_losses[-1] < before - 1.0  # a memorisable corpus: the loss must fall a lot
    reloaded = BertBackbone.load(tmp_path / "best").eval()
    assert evaluate(reloaded)["dev_loss"] == pytest.approx(min(dev_losses), abs=1e-3)


def test_resume_continues_exactly(tmp_path):
    """6 steps straight == 3 steps, stop, resume to 6 (data, optimizer, schedule and dropout RNG)."""
    tok = _tokenizer()
    mb = _batches(tok)
    straight = _backbone(len(tok))
    Trainer(straight, TrainConfig(out_dir=str(tmp_path / "a"), steps=6, warmup=2, save_every=3, eval_every=0, progress=False), mb).fit()
    first = _backbone(len(tok))
    Trainer(first, TrainConfig(out_dir=str(tmp_path / "b"), steps=3, warmup=2, save_every=3, eval_every=0, progress=False), mb).fit()
    resumed = _backbone(len(tok))
    cfg = TrainConfig(out_dir=str(tmp_path / "b"), steps=6, warmup=2, save_every=3, eval_every=0, progress=False)
    # (steps 0-2 get the same learning rates under steps=3 and steps=6: warm-up 2, then decay from 1.0)
    Trainer(resumed, cfg, mb).fit()
    a = BertBackbone.load(tmp_path / "a" / "last").state_dict()
    b = BertBackbone.load(tmp_path / "b" / "last").state_dict()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_ema_weights_are_saved_and_differ_from_the_last(tmp_path):
    tok = _tokenizer()
    cfg = TrainConfig(out_dir=str(tmp_path), steps=10, lr=3e-3, warmup=2, ema=0.9, eval_every=0, progress=False)
    Trainer(_backbone(len(tok)), cfg, _batches(tok)).fit()
    last = BertBackbone.load(tmp_path / "last").state_dict()
    ema = BertBackbone.load(tmp_path / "ema").state_dict()
    init = _backbone(len(tok)).state_dict()
    k = "layers.0.intermediate.weight"
    # the average lies between the initial and the final weights, closer to the final
    assert 0 < (ema[k] - last[k]).norm() < (init[k] - last[k]).norm()


DDP_SCRIPT = textwrap.dedent("""
    import sys, torch, torch.distributed as dist
    sys.path.insert(0, sys.argv[2])
    from test_training import _tokenizer, _backbone, _batches
    from textgen.training.trainer import TrainConfig, Trainer
    tok = _tokenizer()
    t = Trainer(_backbone(len(tok)), TrainConfig(out_dir=sys.argv[1], steps=4, warmup=1, eval_every=0, progress=False), _batches(tok))
    t.fit()
    flat = torch.cat([p.detach().flatten() for p in t.backbone.parameters()])
    torch.save(flat, f"{sys.argv[1]}/rank{dist.get_rank()}.pt")
""")


def test_ddp_two_cpu_processes_keep_identical_weights(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           str(script), str(tmp_path), str(Path(__file__).parent)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert torch.equal(r0, r1)
    init = torch.cat([p.detach().flatten() for p in _backbone(len(_tokenizer())).parameters()])
    assert not torch.equal(r0, init)  # they trained
    assert (tmp_path / "last" / "model.safetensors").exists()  # rank 0 wrote the checkpoint


# ---------------------------------------------------------------------- commands
def _pairs_file(path: Path) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for s in SENTENCES:
            f.write(json.dumps({"text": s, "title": s[:5]}, ensure_ascii=False) + "\n")
    return path


def test_train_seq2seq_then_title_with_the_result(tmp_path):
    base = save_tiny_model(tmp_path / "base")
    data = _pairs_file(tmp_path / "pairs.jsonl")
    runner = CliRunner()
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", "seq2seq", "--base", str(base), "--data", str(data), "--dev", str(data),
                            "--out", str(out), "--steps", "150", "--lr", "5e-3", "--warmup", "5", "--batch-size", "8",
                            "--eval-every", "75", "--no-progress"])
    assert r.exit_code == 0, r.output
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert log[-1]["dev"]["dev_loss"] < 1.0  # eight pairs memorised
    meta = json.loads((out / "best" / "textgen.json").read_text())
    assert "title" in meta["tasks"]
    r = runner.invoke(app, ["title", "--model", str(out / "best"), "--max-new-tokens", "8", SENTENCES[0]])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == SENTENCES[0][:5]  # the memorised title comes back


def test_train_seq2seq_from_a_hf_bert_checkpoint(tmp_path):
    from transformers import BertConfig as HFConfig
    from transformers import BertForMaskedLM

    tok = _tokenizer()
    base = tmp_path / "hf-bert"
    torch.manual_seed(0)
    BertForMaskedLM(HFConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, max_position_embeddings=96)).save_pretrained(base)
    (base / "vocab.txt").write_text("\n".join(tok.vocab) + "\n", encoding="utf-8")  # a plain BERT vocab, char mode
    data = _pairs_file(tmp_path / "pairs.jsonl")
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", "seq2seq", "--base", str(base), "--data", str(data), "--out", str(out),
                                 "--steps", "150", "--lr", "5e-3", "--warmup", "5", "--batch-size", "8", "--no-progress"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["title", "--model", str(out / "last"), "--max-new-tokens", "8", SENTENCES[1]])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == SENTENCES[1][:5]


def test_train_pretrain_builds_a_loadable_model(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES * 3), encoding="utf-8")
    out = tmp_path / "lm"
    r = CliRunner().invoke(app, ["train", "pretrain", "--data", str(corpus), "--dev", str(corpus), "--out", str(out),
                                 "--hidden", "32", "--layers", "1", "--vocab-chars", "500", "--vocab-words", "50",
                                 "--steps", "8", "--eval-every", "4", "--batch-size", "4", "--no-progress"])
    assert r.exit_code == 0, r.output
    tok = ChineseTokenizer.from_dir(out / "best")
    assert tok.mode == "word" and tok.unk_id not in tok.encode(SENTENCES[0])
    model = BertBackbone.load(out / "best")
    assert model.config.hidden_size == 32 and model.config.vocab_size == len(tok)
    # the default --window 128 trains positions up to [CLS] + 128 + [SEP]; the adapters stop there
    assert json.loads((out / "best" / "textgen.json").read_text())["max_context_tokens"] == 130
    assert load_adapter(out / "best", "causal").input_limit(10) == 130 - 10 - 1


def test_train_reports_bad_data_in_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "没有标题"}\n', encoding="utf-8")
    base = save_tiny_model(tmp_path / "base")
    r = CliRunner().invoke(app, ["train", "seq2seq", "--base", str(base), "--data", str(bad), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert "bad.jsonl:1" in r.output and "Traceback" not in r.output


def test_train_resume_mistakes_are_one_line(tmp_path: Path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES * 2) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    base = ["train", "pretrain", "--data", corpus, "--out", out, "--layers", 1, "--window", 16, "--batch-size", 4,
            "--vocab-words", 30, "--no-progress"]
    first = run(*base, "--steps", 2, "--warmup", 5, "--hidden", 32)
    assert first.exit_code == 0, first.output
    assert "--warmup 5 is longer than --steps 2" in first.stderr
    again = run(*base, "--steps", 2, "--warmup", 1, "--hidden", 32)
    assert again.exit_code == 0 and "nothing to train" in again.stdout and "nan" not in again.stdout
    wider = run(*base, "--steps", 4, "--warmup", 1, "--hidden", 64)
    assert wider.exit_code == 2 and "hidden_size 32, not 64" in wider.stderr and "Traceback" not in wider.output
    meta = json.loads((out / "last" / "textgen.json").read_text(encoding="utf-8"))
    assert meta["decoding"]["continue"]["max_new_tokens"] < 18 // 2 + 1  # fits the 16-token window


def test_sparse_models_are_judged_by_the_sparse_loss():
    """logsumexp over the top k never exceeds logsumexp over all logits, so the sparse dev loss of
    the same model is at most its cross-entropy, and strictly lower for a random model."""
    from textgen.training.recipes import loss_evaluator

    tok = _tokenizer()
    dev = TokenData(pairs=pair_ids(tok, [(s, s[:6]) for s in SENTENCES], 40, 8))
    model = _backbone(len(tok)).eval()
    full = loss_evaluator(dev, tok, ("pairs",))(model)["dev_loss"]
    sparse = loss_evaluator(dev, tok, ("pairs",), sparse_k=10)(model)["dev_loss"]
    assert sparse < full - 1.0
