"""Choosing the article's most headline-like clause (see ``textgen.titles``).

An article is split into clauses as SPACES splits documents (``textgen.summarize.clauses``); only
its first ``MAX_CLAUSES`` are candidates (headlines come from the head of an article, and a long
article then costs no more than a short one). Each clause gets the frozen backbone's vector
(``ClauseEncoder``) and ``FEATURES`` position features, since where a clause stands matters as much
as what it says: the lead of a news item, the "we propose" sentence of an abstract. The tagger
(``ClauseTagger``, the summarize extractor's DGCNN) scores every clause in the context of its
neighbours; the headline is the likeliest clause without its trailing punctuation. A clause too
short to be a headline on its own (``min_chars`` in the selector's JSON, chosen when it was
trained; ``MIN_CHARS`` by default) takes the next clauses with it.

The tagger is stored beside the backbone whose vectors it reads (``title-selector.safetensors`` and
``title-selector.json`` in the model directory) and checked against its weights' fingerprint.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from textgen.summarize.clauses import split_clauses

NAME = "title-selector"
MAX_CLAUSES = 40
FEATURES = 6
MIN_CHARS = 8  # a shorter clause (a dateline, 央视网消息) takes the next clause with it
MIN_CHARS_CHOICES = (8, 12, 16)  # scripts/train_title_selector.py picks one on held-out training articles
_LOOSE = " \t\r\n\u3000，。；：、！？,.;:!?"


# An ASCII full stop ends a sentence when a Chinese character follows it (many abstracts write
# "模型XY-Net.该模型"), never inside a number (0.7) or an abbreviation before Latin letters.
_ASCII_STOP = re.compile(r"(?<=\D\.)(?=[\u4e00-\u9fff])")


def candidates(text: str) -> list[str]:
    """The clauses a headline is chosen from: the first ``MAX_CLAUSES`` with any letter or digit.
    The last clause of each line keeps its line break, so that ``headline`` never joins a clause
    with the next line's (a line is a heading or a paragraph; the tokenizer ignores the break)."""
    clauses: list[str] = []
    for line in text.split("\n"):
        parts = [part for c in split_clauses(line) for part in _ASCII_STOP.split(c)]
        if parts:
            parts[-1] += "\n"
        clauses += parts
    return [c for c in clauses if any(ch.isalnum() for ch in c)][:MAX_CLAUSES]


def position_features(clauses: Sequence[str]) -> torch.Tensor:
    """``[len(clauses), FEATURES]``: 1/(index+1), relative index, first clause, characters before
    it (/500, capped at 2,000), its length (/30), whether it ends a sentence."""
    rows, before = [], 0
    for i, clause in enumerate(clauses):
        rows.append([1 / (i + 1), i / len(clauses), float(i == 0), min(before, 2000) / 500, len(clause) / 30,
                     float(clause.rstrip().endswith(("。", "！", "？", "!", "?", ".")))])
        before += len(clause)
    return torch.tensor(rows, dtype=torch.float32).reshape(len(clauses), FEATURES)


def headline(clauses: Sequence[str], index: int, min_chars: int = MIN_CHARS) -> str:
    """Clause ``index`` as a headline: without punctuation or spaces at its ends, joined with the
    following clause while it is shorter than ``min_chars`` characters."""
    parts, j = [clauses[index]], index + 1
    while len("".join(parts).strip(_LOOSE)) < min_chars and j < len(clauses) and not parts[-1].endswith("\n"):
        parts.append(clauses[j])
        j += 1
    text = "".join(parts).strip(_LOOSE)
    return " ".join(text.split())  # line breaks inside a headline become spaces


def tagger_inputs(clauses: Sequence[str], vectors: torch.Tensor) -> torch.Tensor:
    """What the tagger reads for one article: each clause's vector and its position features."""
    return torch.cat([vectors, position_features(clauses)], dim=1)


class TitleSelector:
    """The tagger over clause vectors of the model's own backbone."""

    def __init__(self, encoder: Any, tagger: Any, info: dict[str, Any]) -> None:
        self.encoder = encoder
        self.tagger = tagger
        self.info = info
        self.min_chars = int(info.get("min_chars", MIN_CHARS))

    def choose(self, texts: Sequence[str], n: int = 1) -> list[list[tuple[str, float, int]]]:
        """Up to ``n`` distinct headlines per text, likeliest first, each as ``(text, probability,
        index of its clause among the text's candidates)``; fewer when the text has fewer clauses,
        none for a text without letters or digits. All clauses of all texts are encoded in one pass."""
        split = [candidates(t) for t in texts]
        flat = [c for clauses in split for c in clauses]
        vectors = self.encoder.encode(flat)
        out, start = [], 0
        for clauses in split:
            ranked: list[tuple[str, float, int]] = []
            if clauses:
                probs = self.tagger.probabilities(tagger_inputs(clauses, vectors[start : start + len(clauses)]))
                start += len(clauses)
                for i in probs.argsort(descending=True).tolist():
                    text = headline(clauses, i, self.min_chars)
                    if text and all(text != r[0] for r in ranked):
                        ranked.append((text, float(probs[i]), i))
                    if len(ranked) == n:
                        break
            out.append(ranked)
        return out


def selector_for(model_dir: str | Path | None, adapter: Any) -> tuple[TitleSelector | None, str]:
    """The model directory's title selector over the adapter's backbone, or None and why not."""
    from textgen.models.backbone import BertBackbone
    from textgen.summarize.extractor import backbone_fingerprint
    from textgen.summarize.tagger import ClauseTagger
    from textgen.summarize.vectors import ClauseEncoder

    if model_dir is None or not (Path(model_dir) / f"{NAME}.safetensors").is_file():
        return None, f"the model has no title selector ({NAME}.safetensors; scripts/train_title_selector.py trains one)"
    backbone = getattr(adapter, "model", None)
    if not isinstance(backbone, BertBackbone):
        return None, "the title selector needs a textgen BERT backbone"
    try:
        tagger, info = ClauseTagger.load(model_dir, NAME)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        return None, f"the model's {NAME}.json cannot be read ({exc})"
    if tagger.config.input_dim != backbone.config.hidden_size + FEATURES:
        return None, "its title selector was trained on another backbone (vector sizes differ)"
    if info.get("backbone_sha256") not in (None, backbone_fingerprint(model_dir)):
        return None, "its title selector was trained on other backbone weights; retrain it with scripts/train_title_selector.py"
    return TitleSelector(ClauseEncoder(backbone, adapter.tokenizer, max_tokens=info.get("max_tokens")), tagger, info), ""
