"""The round-trip check: does the model, reading the passage and the question, point back to the answer?

The multitask model also learned the reader direction, ``阅读：`` + window -> ``question [SEP]
answer`` (``textgen.training.multitask``). For a generated pair the check is the reader's mean
log-probability per token of ``answer [SEP]`` after ``question [SEP]``: one teacher-forced forward
pass per pair, no decoding. A question that really asks for its answer makes the answer likely; a
vague or off-topic question spreads the reader's mass over other spans. Pairs are ranked by it.

A chat model has no reader direction of its own: its round trip is ``continuation_log_prob``, the
mean log-probability of the answer (and the end of the turn) right after its ``qa_check`` prompt.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch

from textgen.models.adapters import BackboneSeq2Seq


def answer_log_prob(
    adapter: BackboneSeq2Seq,
    sources: Sequence[Sequence[int]],
    questions: Sequence[Sequence[int]],
    answers: Sequence[Sequence[int]],
    batch_size: int = 32,
) -> list[float]:
    """Per row, the mean log-probability (nats per token) of ``answer [SEP]`` given ``[CLS] source
    [SEP] question [SEP]`` under the UniLM mask. Sources are cut as the adapter cuts them."""
    if not (len(sources) == len(questions) == len(answers)):
        raise ValueError("sources, questions and answers must have one row each")
    scores: list[float] = []
    for first in range(0, len(sources), batch_size):
        rows = slice(first, first + batch_size)
        scores += _score(adapter, sources[rows], questions[rows], answers[rows])
    return scores


@torch.inference_mode()
def _score(adapter: BackboneSeq2Seq, sources, questions, answers) -> list[float]:
    tok, model, device = adapter.tokenizer, adapter.model, adapter.device
    cls, sep = tok.cls_id, tok.sep_id
    targets = [[*q, sep, *a, sep] for q, a in zip(questions, answers)]
    room = adapter.input_limit(max(len(t) for t in targets))
    rows, types, scored = [], [], []
    for src, tgt, a in zip(sources, targets, answers):
        head = [cls, *list(src)[:room], sep]
        rows.append(head + tgt)
        types.append([0] * len(head) + [1] * len(tgt))
        end = len(rows[-1])
        scored.append(range(end - len(a) - 1, end))  # positions of answer tokens and the final [SEP]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), adapter.pad_token_id, dtype=torch.long)
    segment = torch.zeros_like(ids)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    for i, (r, t) in enumerate(zip(rows, types)):
        ids[i, : len(r)] = torch.tensor(r)
        segment[i, : len(t)] = torch.tensor(t)
        mask[i, : len(r)] = True
    ids, segment, mask = ids.to(device), segment.to(device), mask.to(device)
    hidden, _ = model.encode(ids, mode="unilm", token_type_ids=segment, attention_mask=mask)
    # Position p predicts token p + 1: gather only the states that predict scored tokens.
    row_of = torch.tensor([i for i, s in enumerate(scored) for _ in s], device=device)
    pos = torch.tensor([p for s in scored for p in s], device=device)
    logp = torch.log_softmax(model.lm_logits(hidden[row_of, pos - 1]).float(), dim=-1)
    chosen = logp.gather(1, ids[row_of, pos][:, None]).squeeze(1)
    sums = torch.zeros(len(rows), device=device).index_add_(0, row_of, chosen)
    return [float(s) / len(r) for s, r in zip(sums, scored)]


def continuation_log_prob(adapter, prompts: Sequence[Sequence[int]], targets: Sequence[Sequence[int]],
                          batch_size: int = 16) -> list[float]:
    """Per row, the mean log-probability (nats per token) of ``targets[i]`` right after
    ``prompts[i]`` under a causal model (``HFCausal`` or a chat adapter): one teacher-forced forward
    pass per batch, left padded with the positions ``generate()`` uses. A prompt too long for the
    model's window is cut as decoding cuts it (a chat prompt inside its input text)."""
    if len(prompts) != len(targets) or any(not t for t in targets):
        raise ValueError("one non-empty target per prompt")
    scores: list[float] = []
    for first in range(0, len(prompts), batch_size):
        rows = slice(first, first + batch_size)
        scores += _score_causal(adapter, prompts[rows], targets[rows])
    return scores


@torch.inference_mode()
def _score_causal(adapter, prompts, targets) -> list[float]:
    from textgen.models.adapters import pad_rows

    room = adapter.input_limit(max(len(t) for t in targets))
    fit = getattr(adapter, "fit_prompt", lambda ids, _room: ids)
    rows = []
    for prompt, target in zip(prompts, targets):
        prompt = list(prompt)
        if room is not None:
            prompt = fit(prompt, room)
            prompt = prompt[len(prompt) - min(room, len(prompt)) :]
        rows.append(prompt + list(target))
    ids, mask = pad_rows(rows, adapter.pad_token_id, left=True, device=adapter.device)
    positions = (mask.long().cumsum(-1) - 1).masked_fill(~mask, 0)
    # Only the last positions predict target tokens (rows are left padded): with a 150k vocabulary,
    # logits for every position of 16 long prompts would take gigabytes.
    keep = max(len(t) for t in targets) + 1
    kw = {"logits_to_keep": keep} if "logits_to_keep" in inspect.signature(adapter.model.forward).parameters else {}
    logits = adapter.model(input_ids=ids, attention_mask=mask.long(), position_ids=positions, **kw).logits
    width = ids.shape[1]
    first = width - logits.shape[1]  # the position logits[:, 0] belongs to
    scores = []
    for i, target in enumerate(targets):
        pos = torch.arange(width - len(target), width, device=ids.device)  # the target's positions
        logp = torch.log_softmax(logits[i, pos - 1 - first].float(), dim=-1)
        scores.append(float(logp.gather(1, ids[i, pos][:, None]).mean()))
    return scores
