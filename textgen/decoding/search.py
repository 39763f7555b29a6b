"""Decoding strategies over the adapter step interface: greedy, sampling, beam search.

All three work on a batch of inputs at once and never loop over rows or beams in Python. The
adapter owns the model state (KV caches); the strategy owns the tokens and scores and tells the
adapter and every processor how rows move (``reorder``), so state always follows its hypothesis.

Beam search follows the semantics of Hugging Face's ``generate(num_beams=K)`` (transformers 5.x),
so that neutral settings give identical tokens:

* each step keeps the best ``max(2, 1 + #eos) * K`` continuations over all K beams of an input;
* a continuation ending in an end token (or reaching ``max_new_tokens``) joins the input's pool of
  finished hypotheses only if it ranks among the top K of the step; its score is
  ``sum log p / (generated length incl. the end token) ** length_penalty``;
* the next K running beams are the best continuations that did not end;
* ``early_stopping=True`` closes an input as soon as its pool holds K hypotheses; with ``False`` the
  pool must be full and the best running beam unable to beat the worst pooled one at its current
  length. Closed inputs leave the batch (HF keeps computing them; the result is the same).

Unlike bert4keras' ``beam_search`` (algorithms.md 5.2), a finished hypothesis is kept in the pool
even when it was not the best at the time, and per-beam state is reordered with its beam.

Processors run on the logits before ``log_softmax``, so a constrained step is renormalised over
what is allowed (the token-healing rule of algorithms.md 5.4). HF applies beam-search processors
after ``log_softmax``; with processors that ban tokens the two can rank beams differently.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from textgen.decoding.config import DecodingConfig
from textgen.decoding.processors import (
    LogitsProcessor,
    NoTokenLeft,
    apply_processors,
    rule_processors,
    sampling_warpers,
)

if TYPE_CHECKING:
    from textgen.models.adapters import Adapter

# Rows (inputs x samples) decoded together when sampling; more samples are drawn in further passes.
SAMPLE_ROWS = 256
# HF's marker for "cannot be chosen" in beam bookkeeping; finite so that sums stay ordered.
_UNAVAILABLE = -1.0e9


@dataclass
class Hypothesis:
    """One output for one input."""

    token_ids: list[int]  # generated ids, without the end token
    score: float  # beam: length-normalised log-prob as HF; greedy/sample: sum log-prob
    finished: bool  # False when cut at max_new_tokens


def generate(
    adapter: Adapter,
    inputs: Sequence[Sequence[int]],
    config: DecodingConfig,
    *,
    processors: Sequence[LogitsProcessor] = (),
    on_step: Callable[[list[int]], None] | None = None,
) -> list[list[Hypothesis]]:
    """Decode every input; per input, ``num_return_sequences`` hypotheses, best first.

    ``inputs`` are adapter ids (``adapter.encode``). ``processors`` hold one row per input and are
    applied after the config's rules. A hypothesis with ``finished=False`` hit ``max_new_tokens``: callers
    should tell the user it was cut.

    ``on_step(ids)``, for streaming: called whenever the settled start of input 0's best output
    grows, with its ids so far (without the end token). Settled means final: the returned
    ``token_ids`` start with them. Greedy and sampling settle a token as soon as it is chosen;
    beam search once every running beam and every finished hypothesis of the input agree on it.
    Only with ``num_return_sequences == 1`` (which of several outputs will rank first is unknown).
    """
    if not inputs:
        return []
    rules = rule_processors(config, adapter.eos_token_ids)
    rules += [copy.copy(p) for p in processors]
    if config.num_return_sequences > 1:
        on_step = None
    inputs = [list(x) for x in inputs]
    with torch.inference_mode():
        if config.strategy == "beam":
            return _beam_search(adapter, inputs, config, rules, on_step)
        generator = None
        if config.do_sample:
            generator = torch.Generator(device=getattr(adapter, "device", "cpu"))
            if config.seed is None:
                generator.seed()
            else:
                generator.manual_seed(config.seed)
        warpers = sampling_warpers(config) if config.do_sample else []
        per_pass = max(1, SAMPLE_ROWS // len(inputs))
        if config.num_return_sequences <= per_pass:
            return _sample(adapter, inputs, config, rules, warpers, generator, on_step)
        # Many samples (-n 100000): passes of at most SAMPLE_ROWS rows, so memory stays bounded.
        results: list[list[Hypothesis]] = [[] for _ in inputs]
        for first in range(0, config.num_return_sequences, per_pass):
            part = config.replace(num_return_sequences=min(per_pass, config.num_return_sequences - first))
            fresh = rule_processors(part, adapter.eos_token_ids) + [copy.copy(p) for p in processors]
            for hyps, more in zip(results, _sample(adapter, inputs, part, fresh, warpers, generator)):
                hyps += more
        for hyps in results:
            hyps.sort(key=lambda h: -h.score)
        return results


# ---------------------------------------------------------------------- shared helpers
class _Rows:
    """The adapter state and the processors, moved together so they can never disagree."""

    def __init__(self, adapter: Adapter, state, processors: list[LogitsProcessor]) -> None:
        self.adapter, self.state, self.processors = adapter, state, processors
        self._observers = [p for p in processors if getattr(p, "observe", None)]
        self._observe()

    def reorder(self, index: torch.Tensor) -> None:
        self.state = self.adapter.reorder(self.state, index)
        for p in self.processors:
            p.reorder(index)
        self._observe()

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        logits, self.state = self.adapter.step(self.state, tokens)
        self._observe()
        return logits

    def _observe(self) -> None:
        for p in self._observers:
            p.observe(self.adapter, self.state)


def _process(processors: list[LogitsProcessor], generated: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    logits = apply_processors(processors, generated, logits.float())
    if processors and not bool(torch.isfinite(logits).any(dim=-1).all()):
        raise NoTokenLeft("the decoding constraints leave no token to generate for some input")
    return logits


def chosen_log_prob(logits: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
    """``log_softmax(logits)[row, choice[row]]`` for each row.

    torch's fused ``log_softmax`` reads the logits once; an earlier clamped log-sum-exp (five passes,
    written against denormal ``exp`` slow paths) measured 2-10x slower with torch 2.13 on 8k and
    152k vocabularies, random and sharply peaked logits alike, and made greedy decoding of a
    152k-vocabulary chat model slower than ``generate()`` (docs/benchmarks.md).
    """
    return torch.log_softmax(logits, dim=-1).gather(1, choice[:, None]).squeeze(1)


def _eos_mask(tokens: torch.Tensor, eos: torch.Tensor) -> torch.Tensor:
    return torch.isin(tokens, eos) if eos.numel() else torch.zeros_like(tokens, dtype=torch.bool)


# ---------------------------------------------------------------------- greedy and sampling
def _sample(
    adapter: Adapter,
    inputs: list[list[int]],
    config: DecodingConfig,
    rules: list[LogitsProcessor],
    warpers: list[LogitsProcessor],
    generator: torch.Generator | None,
    on_step: Callable[[list[int]], None] | None = None,
) -> list[list[Hypothesis]]:
    """Greedy (no generator) or sampling: each row picks its own token; finished rows leave."""
    n, steps = config.num_return_sequences, config.max_new_tokens
    logits, state = adapter.start(inputs, steps)
    device = logits.device
    eos = torch.tensor(adapter.eos_token_ids, dtype=torch.long, device=device)
    rows = _Rows(adapter, state, rules)
    owner = torch.arange(len(inputs), device=device).repeat_interleave(n)  # input of each live row
    if n > 1:
        rows.reorder(owner)
        logits = logits.index_select(0, owner)
    tokens = torch.zeros(len(owner), steps, dtype=torch.long, device=device)
    scores = torch.zeros(len(owner), device=device)
    results: list[list[Hypothesis]] = [[] for _ in inputs]

    def emit(mask: torch.Tensor, length: int, finished: bool) -> None:
        for row in mask.nonzero().flatten().tolist():
            ids = tokens[row, :length].tolist()
            results[int(owner[row])].append(Hypothesis(ids, float(scores[row]), finished))

    for t in range(steps):
        logits = _process(rules, tokens[:, :t], logits)
        if generator is None:
            choice = logits.argmax(dim=-1)
        else:
            probs = apply_processors(warpers, tokens[:, :t], logits).softmax(dim=-1)
            choice = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        scores += chosen_log_prob(logits, choice)
        tokens[:, t] = choice
        ended = _eos_mask(choice, eos)
        if on_step is not None and int(owner[0]) == 0 and not bool(ended[0]):  # input 0 still runs, in row 0
            on_step(tokens[0, : t + 1].tolist())
        any_ended = bool(ended.any())
        if any_ended:
            emit(ended, t, True)
        if t == steps - 1:
            emit(~ended, steps, False)
            break
        if any_ended:
            live = (~ended).nonzero().flatten()
            if live.numel() == 0:
                break
            rows.reorder(live)
            owner, tokens, scores, choice = owner[live], tokens[live], scores[live], choice[live]
        logits = rows.step(choice)
    for hyps in results:
        hyps.sort(key=lambda h: -h.score)
    return results


# ---------------------------------------------------------------------- beam search
def _beam_search(
    adapter: Adapter,
    inputs: list[list[int]],
    config: DecodingConfig,
    rules: list[LogitsProcessor],
    on_step: Callable[[list[int]], None] | None = None,
) -> list[list[Hypothesis]]:
    K, steps, lp = config.num_beams, config.max_new_tokens, config.length_penalty
    logits, state = adapter.start(inputs, steps)
    device = logits.device
    vocab = logits.shape[-1]
    eos = torch.tensor(adapter.eos_token_ids, dtype=torch.long, device=device)
    width = max(2, 1 + eos.numel()) * K  # continuations kept per step: enough that K do not end
    if width > K * vocab:
        raise ValueError(f"num_beams={K} is too large for a vocabulary of {vocab}")
    B = len(inputs)
    rows = _Rows(adapter, state, rules)
    expand = torch.arange(B, device=device).repeat_interleave(K)
    rows.reorder(expand)
    logits = logits.index_select(0, expand)

    active = torch.arange(B, device=device)  # original input of each open batch item
    run_tokens = torch.zeros(B, K, steps, dtype=torch.long, device=device)
    run_scores = torch.full((B, K), _UNAVAILABLE, device=device)
    run_scores[:, 0] = 0.0  # only the first beam is real at step 0, so beams start distinct
    pool = _Pool(B, K, steps, device)
    top_k_mask = torch.arange(width, device=device) < K
    settled = 0  # how many of input 0's output tokens on_step has been given

    for t in range(steps):
        b = len(active)
        logits = _process(rules, run_tokens.view(b * K, steps)[:, :t], logits)
        logp = torch.log_softmax(logits, dim=-1).view(b, K, vocab)
        totals = (logp + run_scores[:, :, None]).view(b, K * vocab)
        cand_scores, cand_index = totals.topk(width, dim=1)
        cand_beam, cand_token = cand_index // vocab, cand_index % vocab
        ends = _eos_mask(cand_token, eos) | (t == steps - 1)

        # Candidates that end and rank in the step's top K join the pool.
        joining = ends & top_k_mask
        joined = bool(joining.any())
        if joined:
            cand_tokens = run_tokens.gather(1, cand_beam[:, :, None].expand(b, width, steps)).clone()
            cand_tokens[:, :, t] = cand_token
            normalised = cand_scores / float(t + 1) ** lp
            finished = _eos_mask(cand_token, eos)
            pool.add(active, joining, normalised, cand_tokens, t + 1 - finished.long(), finished)

        # The best K continuations that did not end run on.
        running = cand_scores + ends.float() * _UNAVAILABLE
        run_scores, pick = running.topk(K, dim=1)
        beam_src = cand_beam.gather(1, pick)
        next_token = cand_token.gather(1, pick)

        if t == steps - 1 or bool(ends.all()):
            break
        groups = torch.arange(b, device=device)  # the open inputs of this batch that carry on
        if joined or not config.early_stopping:  # only then can an input have become complete
            full = pool.full(active)
            if config.early_stopping:
                closed = full
            else:  # HF's heuristic: the best running beam, scored at its current length, cannot win
                closed = full & (run_scores[:, 0] / float(t + 1) ** lp <= pool.worst(active))
            if bool(closed.any()):
                groups = (~closed).nonzero().flatten()
                if groups.numel() == 0:
                    break
                beam_src, next_token, run_scores = beam_src[groups], next_token[groups], run_scores[groups]
                active = active[groups]
        row_index = (groups[:, None] * K + beam_src).flatten()  # rows of the current batch to carry on
        run_tokens = run_tokens.view(b * K, steps).index_select(0, row_index).view(len(groups), K, steps)
        run_tokens[:, :, t] = next_token
        if on_step is not None and int(active[0]) == 0:
            stable = _settled(run_tokens[0, :, : t + 1], pool, 0)
            if stable > settled:
                settled = stable
                on_step(run_tokens[0, 0, :stable].tolist())
        rows.reorder(row_index)
        logits = rows.step(next_token.flatten())
    return pool.best(config.num_return_sequences)


def _settled(beams: torch.Tensor, pool: _Pool, item: int) -> int:
    """How many leading tokens every running beam ``beams`` [K, t] and every finished hypothesis
    of input ``item`` share: whatever ranks first in the end starts with them."""
    same = (beams == beams[0]).all(dim=0)
    filled = pool.filled[item]
    if bool(filled.any()):
        t = beams.shape[1]
        pooled = pool.tokens[item, filled, :t]
        inside = torch.arange(t, device=beams.device)[None, :] < pool.lengths[item, filled][:, None]
        same &= ((pooled == beams[0]) & inside).all(dim=0)
    return int(same.long().cumprod(dim=0).sum())


class _Pool:
    """Per input, the K best finished hypotheses seen so far, kept sorted by score."""

    def __init__(self, batch: int, beams: int, steps: int, device) -> None:
        self.beams = beams
        self.scores = torch.full((batch, beams), float("-inf"), device=device)
        self.filled = torch.zeros(batch, beams, dtype=torch.bool, device=device)
        self.tokens = torch.zeros(batch, beams, steps, dtype=torch.long, device=device)
        self.lengths = torch.zeros(batch, beams, dtype=torch.long, device=device)
        self.finished = torch.zeros(batch, beams, dtype=torch.bool, device=device)

    def add(self, items, joining, scores, tokens, lengths, finished) -> None:
        """Merge the joining candidates of the open ``items`` and keep the best K of each."""
        merged_scores = torch.cat([self.scores[items], scores.masked_fill(~joining, float("-inf"))], dim=1)
        top = merged_scores.topk(self.beams, dim=1).indices

        def merge(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
            both = torch.cat([old[items], new], dim=1)
            index = top.view(*top.shape, *([1] * (both.dim() - 2))).expand(-1, -1, *both.shape[2:])
            return both.gather(1, index)

        self.scores[items] = merged_scores.gather(1, top)
        self.filled[items] = merge(self.filled, joining)
        self.tokens[items] = merge(self.tokens, tokens)
        self.lengths[items] = merge(self.lengths, lengths)
        self.finished[items] = merge(self.finished, finished)

    def full(self, items) -> torch.Tensor:
        return self.filled[items].all(dim=1)

    def worst(self, items) -> torch.Tensor:
        return self.scores[items].min(dim=1).values

    def best(self, n: int) -> list[list[Hypothesis]]:
        out = []
        for scores, filled, tokens, lengths, finished in zip(
            self.scores.tolist(), self.filled.tolist(), self.tokens.tolist(), self.lengths.tolist(), self.finished.tolist()
        ):
            hyps = [
                Hypothesis(tokens[k][: lengths[k]], scores[k], finished[k]) for k in range(self.beams) if filled[k]
            ]
            out.append(hyps[:n])
        return out
