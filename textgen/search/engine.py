"""The search entry point for Python users and the ``search`` task: models in, sentences out.

    from textgen.search import Searcher, Settings, load_backbone_lm

    searcher = Searcher(load_backbone_lm("mini-zh-lm"))
    result = searcher.search("keywords", ["图书馆", "开放", "市民"], Settings(steps=48), key="seed 1")
    print(result.outputs[0])               # (text, log score)

``Searcher`` holds the proposal model (a ``BackboneLM``: forward-LM candidates, masked LM) and
the fluency scorer (the same model by default; any object with ``sentence_logp(texts)``,
``length(text)`` and ``window``, such as ``HFScorer``, otherwise).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from textgen.search.lm import BackboneLM, HFScorer, StepScorer, TextScorer
from textgen.tasks.base import CHARS_PER_TOKEN
from textgen.search.problems import (
    SearchInputError,
    Start,
    check_length,
    infill_start,
    keywords_start,
    rewrite_start,
    split_keywords,
)
from textgen.search.sampler import Problem, Result, Sampler, Settings, Step
from textgen.search.state import free_count, render, token_ids
from textgen.search.target import Fluency, Rewrite


class BackboneTextScorer:
    """A ``BackboneLM`` scoring rendered texts (when it is not the proposal model)."""

    def __init__(self, lm: BackboneLM) -> None:
        self.lm = lm
        self.name = lm.name
        self.window = lm.window

    def length(self, text: str) -> int:
        return len(self.lm.encode(text)) + 2

    def sentence_logp(self, texts: Sequence[str]) -> Any:
        return self.lm.sentence_logp([self.lm.encode(t) for t in texts]).cpu()


class Searcher:
    def __init__(self, lm: BackboneLM, scorer: TextScorer | None = None) -> None:
        self.lm = lm
        self.scorer = scorer

    def start(self, mode: str, source: str | Sequence[str], keep: Sequence[str] = ()) -> Start:
        """The initial state of ``source``: keywords (a list, or a string to split), or a text."""
        t = self.lm.tokenizer
        chars = len(source) if isinstance(source, str) else sum(len(k) for k in source if isinstance(k, str))
        if chars > CHARS_PER_TOKEN * self.lm.max_tokens:  # surely too long: say so before tokenizing it all
            raise SearchInputError(f"the input is {chars:,} characters long; the model reads at most {self.lm.max_tokens} tokens")
        if mode == "keywords":
            keywords = split_keywords(source) if isinstance(source, str) else list(source)
            return keywords_start(keywords, self.lm.encode, t.unk_id)
        if not isinstance(source, str) or not source.strip():
            raise SearchInputError(f"{mode} needs a text")
        if mode == "infill":
            return infill_start(source, self.lm.encode, t.unk_id, t.mask_id)
        if mode == "rewrite":
            return rewrite_start(source, keep, self.lm.encode, t.unk_id)
        raise SearchInputError(f"unknown mode {mode!r}: keywords, infill or rewrite")

    def search(
        self,
        mode: str,
        source: str | Sequence[str],
        settings: Settings,
        *,
        keep: Sequence[str] = (),
        gamma: float = 0.8,
        max_new: int = 24,
        key: str = "",
        on_step: Callable[[Step], None] | None = None,
    ) -> Result:
        """Search for ``settings.outputs`` sentences; ``key`` seeds the chains."""
        start = self.start(mode, source, keep)
        max_free = check_length(start.state, self.lm.max_tokens, max_new)
        text = render(start.state, self.lm.decode)
        if self.scorer is not None and self.scorer.window:
            # A scorer with another tokenizer: leave room for a few of its tokens per added token.
            used = self.scorer.length(text)
            if used > self.scorer.window:
                raise SearchInputError(f"the input takes {used} tokens of {self.scorer.name}; it reads at most {self.scorer.window}")
            max_free = min(max_free, free_count(start.state) + (self.scorer.window - used) // 4)
        if mode == "rewrite":
            target: Fluency = Rewrite(self.lm, token_ids(start.state), gamma=gamma)
        else:
            target = Fluency(gamma)
        problem = Problem(start.state, start.moves, target, max_free, exclude_text=text if mode == "rewrite" else None,
                          fill_blanks=mode == "infill", one_sentence=mode != "rewrite",
                          distinct_words=mode != "rewrite")
        result = Sampler(self.lm, settings, self.scorer).run(problem, key, on_step)
        result.warnings = [*start.warnings, *result.warnings]
        return result

    def render(self, state: Any) -> str:
        return render(state, self.lm.decode)


def load_backbone_lm(spec: str | Path, *, device: str = "cpu", allow_pickle: bool = False, bf16: bool | None = None) -> BackboneLM:
    """A ``BackboneLM`` from an embedded model name or a BERT-family model directory."""
    from textgen.models.backbone import BertBackbone
    from textgen.models.registry import resolve
    from textgen.tokenizer import ChineseTokenizer

    info = resolve(str(spec))
    try:
        model = BertBackbone.load(info.path, allow_pickle=allow_pickle).to(device)
        tokenizer = ChineseTokenizer.from_dir(info.path)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{info.name}: not a BERT-family model with a vocab.txt ({exc})") from None
    return BackboneLM(model, tokenizer, name=info.name, window=info.dir.max_context_tokens, bf16=bf16)


def from_adapter(adapter: Any, proposer: str = "", *, default_proposer: str = "", allow_pickle: bool = False) -> Searcher:
    """The searcher of a task's causal adapter: our backbone proposes and scores by itself; any
    other causal LM scores, and ``proposer`` (default: ``default_proposer``, a BERT-family model) proposes."""
    from textgen.models.adapters import BackboneCausal

    device = str(adapter.device)
    if isinstance(adapter, BackboneCausal):
        lm = BackboneLM(adapter.model, adapter.tokenizer, name=adapter.name, window=adapter.max_context_tokens)
        if not proposer:
            return Searcher(lm)
        return Searcher(load_backbone_lm(proposer, device=device, allow_pickle=allow_pickle), BackboneTextScorer(lm))
    from textgen.models.adapters import HFCausal

    # A Hugging Face model scores whole sentences in one forward pass; any other causal adapter
    # (a GGUF model on llama.cpp) through the step interface.
    scorer = HFScorer(adapter.model, adapter.tokenizer, name=adapter.name) if isinstance(adapter, HFCausal) else StepScorer(adapter)
    return Searcher(load_backbone_lm(proposer or default_proposer, device=device, allow_pickle=allow_pickle), scorer)
