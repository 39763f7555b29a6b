"""Choosing the clauses to keep: the trained extractor of a model directory, or the lead rule.

A model directory carries its own extractor (``extractor.safetensors`` + ``extractor.json``,
written by ``scripts/train_extractor.py``), because the tagger reads clause vectors of that very
backbone. ``extractor_for`` returns it, or ``LeadRule`` with the reason when there is none
(a Hugging Face model, a directory without the files, weights changed since the extractor was
trained).

Both answer ``extract(clauses, budget=..., cost=...)`` with an ``Extraction``: the selected clause
indices in document order. The selection is recall-oriented, as SPACES wants ("求全"): the
likeliest clauses, as many as fit in the budget (the tokens the generator reads), the rest of the
budget never left empty. SPACES selects by a probability threshold (0.2) instead; with our small
backbone's vectors the tagger's probabilities rarely pass 0.2 (on legal-dev, most documents have no
clause above it), so a threshold would hand the generator one clause. ``threshold`` remains as an
option that narrows the candidates. Extract-only summaries take the likeliest clauses within a
character budget chosen on legal-dev (``extract_only`` in extractor.json). The lead rule takes the
first clauses that fit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textgen.summarize.tagger import CONFIG, WEIGHTS

# Extract-only summaries: the likeliest clauses within ``chars`` characters (and above ``threshold``
# when given). scripts/train_extractor.py picks one of these on legal-dev and records it in
# extractor.json; the first is the default.
EXTRACT_ONLY_RULES: tuple[dict[str, float], ...] = ({"chars": 250}, {"chars": 150}, {"chars": 200}, {"chars": 300}, {"chars": 400})
EXTRACT_ONLY_CHARS = 250  # the lead rule's extract-only length: a summary's length (legal cases: ~175 characters)


@dataclass
class Extraction:
    """The selected clauses of a document (indices into ``clauses``, document order)."""

    clauses: list[str]
    selected: list[int]
    method: str  # "extractor" or "lead rule"
    probs: list[float] | None = None
    dropped: int = 0  # clauses above the threshold left out to fit the budget (with a threshold set)
    reason: str = ""  # why the lead rule chose (no usable extractor)
    notes: list[str] = field(default_factory=list)  # warnings about the text

    @property
    def text(self) -> str:
        return "".join(self.clauses[i] for i in self.selected)

    def to_json(self) -> dict[str, Any]:
        """What an output record says about the extraction (so a summary can be traced back)."""
        out: dict[str, Any] = {
            "method": self.method,
            "clauses": self.selected,
            "texts": [self.clauses[i] for i in self.selected],
            "of": len(self.clauses),
        }
        if self.probs is not None:
            out["probs"] = [round(self.probs[i], 3) for i in self.selected]
        if self.dropped:
            out["dropped"] = self.dropped
        if self.reason:
            out["reason"] = self.reason
        return out


def fit(candidates: Sequence[int], priority: Sequence[float], cost: Sequence[int], budget: int | None) -> tuple[list[int], int]:
    """The candidates (in document order) that fit in ``budget``, the highest ``priority`` first,
    skipping one that does not fit for smaller ones after it; at least one clause. Returns the
    kept indices and how many candidates were left out."""
    if budget is None or sum(cost[i] for i in candidates) <= budget:
        return sorted(candidates), 0
    kept, used = [], 0
    for i in sorted(candidates, key=lambda i: -priority[i]):
        if used + cost[i] <= budget:
            kept.append(i)
            used += cost[i]
    if not kept and candidates:
        kept = [max(candidates, key=lambda i: priority[i])]
    return sorted(kept), len(candidates) - len(kept)


def above(probs: Sequence[float], threshold: float) -> list[int]:
    """Clauses above ``threshold``, or the likeliest one when none is: every document gets an
    extraction."""
    chosen = [i for i, p in enumerate(probs) if p > threshold]
    if not chosen and len(probs):
        chosen = [max(range(len(probs)), key=lambda i: probs[i])]
    return chosen


def select(probs: Sequence[float], cost: Sequence[int], budget: int | None, threshold: float = 0.0) -> tuple[list[int], int]:
    """The likeliest clauses (above ``threshold``) that fit in ``budget``, in document order, and
    how many candidates above the threshold did not fit."""
    return fit(above(probs, threshold), probs, cost, budget)


def extract_only_selection(probs: Sequence[float], lengths: Sequence[int], rule: dict[str, float]) -> list[int]:
    """The clauses of an extract-only summary under ``rule`` (see ``EXTRACT_ONLY_RULES``)."""
    chars = rule.get("chars")
    return select(probs, lengths, int(chars) if chars else None, float(rule.get("threshold", 0.0)))[0]


class LeadRule:
    """No trained extractor: the document's first clauses, as many as the budget holds (the
    beginning of a news article or a judgement names the parties and the matter)."""

    method = "lead rule"

    def __init__(self, reason: str = "", *, warn: bool = False) -> None:
        """``warn``: the reason is a problem the user should hear about (an extractor that is
        there but unusable), not just the absence of one."""
        self.reason = reason
        self.warn = warn

    def extract(
        self, clauses: list[str], *, budget: int | None = None, cost: Callable[[str], int] = len,
        threshold: float = 0.0, extract_only: bool = False,
    ) -> Extraction:
        """The first clauses that fit in ``budget`` (at least one); extract-only: in
        ``EXTRACT_ONLY_CHARS`` characters. There are no probabilities, so ``threshold`` is unused."""
        if budget is None and extract_only:
            budget, cost = EXTRACT_ONLY_CHARS, len
        kept, used = [], 0
        for i, clause in enumerate(clauses):
            c = cost(clause) if budget is not None else 0
            if budget is not None and used + c > budget and kept:
                break
            kept.append(i)
            used += c
        notes = [f"{self.reason}; the lead rule chose the clauses"] if self.warn else []
        return Extraction(clauses, kept, self.method, reason=self.reason, notes=notes)


class Extractor:
    """The DGCNN tagger over clause vectors of the model's own backbone."""

    method = "extractor"

    def __init__(self, encoder: Any, tagger: Any, info: dict[str, Any]) -> None:
        self.encoder = encoder
        self.tagger = tagger
        self.info = info
        self.extract_only_rule = info.get("extract_only") or EXTRACT_ONLY_RULES[0]

    def probabilities(self, clauses: Sequence[str]) -> list[float]:
        if not clauses:
            return []
        return self.tagger.probabilities(self.encoder.encode(clauses)).tolist()

    def extract(
        self, clauses: list[str], *, budget: int | None = None, cost: Callable[[str], int] = len,
        threshold: float = 0.0, extract_only: bool = False,
    ) -> Extraction:
        """The likeliest clauses above ``threshold`` that fit in ``budget`` (measured with
        ``cost``); ``extract_only`` without a budget: the extract-only rule chosen on legal-dev."""
        probs = self.probabilities(clauses)
        if extract_only and budget is None:
            rule = {**self.extract_only_rule, **({"threshold": threshold} if threshold else {})}
            return Extraction(clauses, extract_only_selection(probs, [len(c) for c in clauses], rule), self.method, probs)
        costs = [cost(c) for c in clauses] if budget is not None else []
        kept, dropped = select(probs, costs, budget, threshold)
        return Extraction(clauses, kept, self.method, probs, dropped if threshold else 0)


def backbone_fingerprint(model_dir: str | Path) -> str:
    """SHA-256 of the backbone's weight files (``model.safetensors``, or the shards its index
    names): an extractor is valid only for the weights whose vectors it was trained on."""
    model_dir = Path(model_dir)
    files = [model_dir / "model.safetensors"]
    index = model_dir / "model.safetensors.index.json"
    if not files[0].exists() and index.exists():
        shards = json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()
        files = [model_dir / name for name in sorted(set(shards))]
    h = hashlib.sha256()
    for f in files:
        with f.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def extractor_for(model_dir: str | Path | None, adapter: Any) -> Extractor | LeadRule:
    """The model directory's extractor over the adapter's backbone, else the lead rule saying why."""
    if model_dir is None or not (Path(model_dir) / WEIGHTS).is_file():
        return LeadRule("the model has no trained extractor (extractor.safetensors)")
    backbone = getattr(adapter, "model", None)
    tokenizer = getattr(adapter, "tokenizer", None)
    from textgen.models.backbone import BertBackbone

    if not isinstance(backbone, BertBackbone):
        return LeadRule("the extractor needs a textgen BERT backbone")
    from textgen.summarize.tagger import ClauseTagger
    from textgen.summarize.vectors import ClauseEncoder

    try:
        tagger, info = ClauseTagger.load(model_dir)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        return LeadRule(f"the model's {CONFIG} cannot be read ({exc})", warn=True)
    if tagger.config.input_dim != backbone.config.hidden_size:
        return LeadRule("its extractor was trained on another backbone (vector sizes differ)", warn=True)
    if info.get("backbone_sha256") not in (None, backbone_fingerprint(model_dir)):
        return LeadRule("its extractor was trained on other backbone weights; retrain it with "
                        "scripts/train_extractor.py", warn=True)
    encoder = ClauseEncoder(backbone, tokenizer, max_tokens=info.get("max_tokens"))
    return Extractor(encoder, tagger, info)
