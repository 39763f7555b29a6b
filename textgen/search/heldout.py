"""Held-out keyword sets for measuring keyword-to-sentence search, made from CSL author keywords.

``csl_kg_dev.tsv`` (shared data) holds 1,000 scientific abstracts with their authors' keywords
(``to keywords<TAB>abstract title<TAB>kw1_kw2_...``; the abstract field ends with the paper's
title, which ``csl_ts_dev.tsv`` gives line by line, so it is cut off exactly). The split is fixed
here: document ``k`` (file order) is **dev** when ``k % 10 == 0`` and **test** when ``k % 10 == 1``;
the others are not used.

For each document: cut the abstract into sentences (at 。！？；; and at a ``.`` that is not a
decimal point), take the sentence holding the most of the document's keywords verbatim (ties:
the shorter), and keep the document when that sentence holds at least ``min_keywords`` of them and
has at most ``max_chars`` characters. The keyword set is the keywords found in the sentence, in
the authors' order, at most ``max_keywords`` of them, a keyword contained in another one of the set
dropped; the sentence is the reference.

Caveat: the same documents are in ``csl_ts_dev.tsv``, which is pretraining text of the embedded
models (textgen/training/corpus.py), so the sampler's language model has seen the reference
sentences. The fluency judge of ``textgen eval search`` is trained without them.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

SPLITS = {"dev": 0, "test": 1}
MODULUS = 10
_SENTENCE_END = re.compile(r"(?<=[。！？；;!?])|(?<=\.)(?!\d)")


@dataclass(frozen=True)
class KeywordSet:
    id: str
    keywords: list[str]
    reference: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


def sentences(text: str) -> list[str]:
    """Sentences of an abstract, each with its closing punctuation."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def _rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def keyword_sets(
    split: str,
    shared_dir: str | os.PathLike | None = None,
    *,
    min_keywords: int = 3,
    max_keywords: int = 4,
    max_chars: int = 80,
) -> list[KeywordSet]:
    """The ``dev`` or ``test`` keyword sets with their reference sentences (module docstring)."""
    from textgen.training.corpus import default_shared_dir

    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    shared = Path(shared_dir or default_shared_dir())
    titles = [row[2].strip() for row in _rows(shared / "csl_ts_dev.tsv")]
    out = []
    for k, row in enumerate(_rows(shared / "csl_kg_dev.tsv")):
        if k % MODULUS != SPLITS[split]:
            continue
        abstract = row[1].strip().removesuffix(titles[k]).strip()
        keywords = list(dict.fromkeys(w.strip() for w in row[2].split("_") if w.strip()))
        best = max(sentences(abstract), key=lambda s: (sum(w in s for w in keywords), -len(s)), default="")
        found = [w for w in keywords if w in best]
        found = [w for w in found if not any(w != v and w in v for v in found)][:max_keywords]
        if len(found) >= min_keywords and len(best) <= max_chars:
            out.append(KeywordSet(f"csl-kg-{split}-{k}", found, best))
    return out
