"""Two-stage question-answer generation (algorithms.md 3) with span answers, dedup and a round trip.

For each passage:

1. **Answers.** The passage is covered by windows (``windows.tiles``); from each window the model
   samples answers (top-p 0.95 by default) until the first ``[SEP]`` of its ``answer [SEP]
   question`` target, under the span constraint (``spans``): every answer is one contiguous piece
   of its window by construction (an answer starting or ending inside a word is widened to the
   whole word: 江堰 in 都江堰 becomes 都江堰). Of the answers at one place of the passage (same text, or
   overlapping spans) the likeliest stays; the 2n likeliest places, spread over the windows, go on.
2. **Questions.** Each answer is re-read in the training window centred on it
   (``windows.answer_window``) and its question decoded after the target prefix ``answer [SEP]``
   (``prefill.TargetPrefix``), greedily or with beams, a number in it always a whole number of the
   passage (or under the model's copy head). Answer-aware generation starts here.
3. **Round trip** (``check``): the reader scores how strongly passage + question point back to the
   answer; pairs are ranked by it (without the check, by the question's own log-probability).
4. **Dedup and choice.** Duplicates (``pairs.is_duplicate``) go, then the best pair of each window is
   taken in turn, so that a long passage gets pairs from every part, until ``n``.

Everything runs batched over all the passages given at once: one decode for all answers (one per
distinct number of samples per window), one for all questions, one forward pass for all checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from textgen.decoding import DecodingConfig, generate
from textgen.qa import spans
from textgen.qa.drivers import ANSWER_TOKENS, QADriver
from textgen.qa.pairs import QAPair, as_question, core_text, is_duplicate, same_place
from textgen.qa.rule import rule_question
from textgen.qa.script import Script
from textgen.qa.windows import Window, answer_window, tiles

CANDIDATES_PER_PAIR = 3  # answers sampled per pair asked for
ASKED_PER_PAIR = 2  # of those, the likeliest at distinct places get a question (and a round trip)
MAX_WINDOWS_PER_PAIR = 2  # a very long passage is sampled in at most 2n windows, evenly spread


@dataclass(frozen=True)
class Ask:
    """One question to ask: the answer ``script.text[start : start + length]``."""

    script: Script
    start: int
    length: int


@dataclass
class Asked:
    question: str  # in the passage's own script, ending in a question mark; empty: the model asked nothing
    score: float  # the round trip's (or the question's) mean log-probability per token
    finished: bool  # False when the question was cut at max_new_tokens


@dataclass
class Generated:
    """The pairs of one passage, best first, and what the user should know about them."""

    pairs: list[QAPair]
    warnings: list[str] = field(default_factory=list)


def question_config(config: DecodingConfig, beams: int) -> DecodingConfig:
    """How questions are decoded: ``beams`` (1 = greedy) with the user's length and repetition
    rules; at least one token, since an empty question is never an answer's question."""
    return DecodingConfig(
        num_beams=beams,
        max_new_tokens=config.max_new_tokens,
        min_new_tokens=max(config.min_new_tokens, 1),
        no_repeat_ngram_size=config.no_repeat_ngram_size,
        repetition_penalty=config.repetition_penalty,
        length_penalty=config.length_penalty,
        banned_token_ids=config.banned_token_ids,
    )


def question_copy(adapter: Any, windows: Sequence[str], mode: str, max_new_tokens: int) -> list:
    """The copy rules of the questions (``COPY_MODES``): ``numbers``, a number in a question is a
    whole number of its window (never invented, never cut from a longer one); ``head``, the
    model's SPACES copy head decides when to copy, numbers kept whole; ``off``, none. Questions
    need words the passage lacks (什么, 哪), so they are never made only of passage pieces."""
    if mode == "off":
        return []
    from textgen.decoding.copy import CopyVocabulary, TextCopy, copy_processors

    sources = [adapter.source_ids(w) for w in windows]
    if mode == "head":
        if not adapter.has_copy_head:
            raise ValueError(f"copy=head needs a model with a copy head; {adapter.name} has none (use copy=numbers)")
        return copy_processors(adapter, sources, "head", max_new_tokens=max_new_tokens)
    return [TextCopy(CopyVocabulary.for_adapter(adapter), sources, numbers_only=True, max_new_tokens=max_new_tokens)]


def answer_config(config: DecodingConfig, per_window: int) -> DecodingConfig:
    """How answers are found: the user's sampling (or beam) settings, ``per_window`` candidates
    per window (beam search returns its beams), 1 to ``ANSWER_TOKENS`` tokens (the span constraint
    would allow an empty answer; the answer span is the whole rule, so no repetition rules)."""
    if config.strategy == "beam":
        per_window = config.num_beams
    elif config.strategy == "greedy":
        per_window = 1
    return config.replace(
        num_return_sequences=per_window, max_new_tokens=ANSWER_TOKENS, min_new_tokens=1,
        no_repeat_ngram_size=0, repetition_penalty=1.0,
    )


def _not_echoing(hyps: Sequence[Any], answer: str, decode: Any) -> Any:
    """The best of a beam's questions that does not hold its own answer (a question that states
    its answer asks nothing; chat models often echo it), else the best."""
    needle = core_text(answer)
    for hyp in hyps:
        if not needle or needle not in core_text(decode(hyp.token_ids)):
            return hyp
    return hyps[0]


class QAGenerator:
    """Question-answer pairs from any model a driver (``textgen.qa.drivers``) can ask: a UniLM
    backbone trained on ``问答：``/``阅读：``, or a chat LLM through its QA prompts."""

    def __init__(self, driver: QADriver) -> None:
        self.driver = driver
        self.adapter = driver.adapter

    # ------------------------------------------------------------------ stage 2 (+3): questions
    def ask(self, asks: Sequence[Ask], config: DecodingConfig, *, beams: int = 1, check: bool = True,
            copy: str = "numbers", questions: str = "model") -> list[Asked]:
        """The question for each answer: written by the model under the copy rules ``copy``
        (``question_copy``), or, with ``questions="rule"``, the rule baseline (``textgen.qa.rule``:
        the answer's sentence with the answer replaced by 什么); scored by the round trip when
        ``check``."""
        if not asks:
            return []
        windows = [answer_window(a.script.text, a.start, a.length).text for a in asks]
        answers = [a.script.text[a.start : a.start + a.length] for a in asks]
        if questions == "rule":
            return self._rule_questions(asks, windows, answers, check)
        qconfig = question_config(config, beams).replace(num_return_sequences=beams)
        rules = question_copy(self.adapter, windows, copy, qconfig.max_new_tokens)
        decoder, inputs = self.driver.question_inputs(windows, answers)
        hyps = generate(decoder, inputs, qconfig, processors=rules)
        best = [_not_echoing(hs, answer, self.adapter.decode) for hs, answer in zip(hyps, answers)]
        texts = [self.adapter.decode(h.token_ids) for h in best]
        if check:
            scores = self.driver.check(windows, answers, [h.token_ids for h in best])
        else:  # greedy: sum of log-probs; beam: already per token (length_penalty 1)
            scores = [h.score / (len(h.token_ids) + 1) if beams == 1 else h.score for h in best]
        return [Asked(a.script.question(as_question(t)), s, h.finished) for a, t, s, h in zip(asks, texts, scores, best)]

    def _rule_questions(self, asks: Sequence[Ask], windows: list[str], answers: list[str], check: bool) -> list[Asked]:
        texts = [rule_question(a.script.text, answer, a.start) for a, answer in zip(asks, answers)]
        if check:
            scores = self.driver.check(windows, answers, [self.adapter.source_ids(t) for t in texts])
        else:
            scores = [0.0] * len(texts)
        return [Asked(a.script.question(t), s, True) for a, t, s in zip(asks, texts, scores)]

    # ------------------------------------------------------------------ the whole pipeline
    def pairs(self, scripts: Sequence[Script], config: DecodingConfig, n: int, *, beams: int = 1,
              check: bool = True, copy: str = "numbers", questions: str = "model") -> list[Generated]:
        """Up to ``n`` pairs per passage (fewer when it holds fewer distinct answers)."""
        plans = [self._windows(s, n) for s in scripts]
        flat = [(i, k, w) for i, (ws, _) in enumerate(plans) for k, w in enumerate(ws)]
        # Each passage samples about CANDIDATES_PER_PAIR * n answers over its windows.
        per_window = [max(1, math.ceil(CANDIDATES_PER_PAIR * n / len(plans[i][0]))) for i, _, _ in flat]
        found = self._answers([w for _, _, w in flat], per_window, config)
        candidates: list[list[tuple[int, QAPair]]] = [[] for _ in scripts]  # (window, pair without a question yet)
        for (i, k, w), window_spans in zip(flat, found):
            for lo, hi, score in window_spans:
                if core_text(w.text[lo:hi]):  # an answer of only symbols asks for nothing
                    candidates[i].append((k, QAPair("", w.text[lo:hi], w.offset + lo, score)))
        # Questions only for the likeliest answers at distinct places, spread over the windows.
        chosen = [(i, k, c) for i, cs in enumerate(candidates) for k, c in _spread(cs, ASKED_PER_PAIR * n, same_place)]
        asks = [Ask(scripts[i], c.start, len(c.answer)) for i, _, c in chosen]
        asked = self.ask(asks, config, beams=beams, check=check, copy=copy, questions=questions)
        ranked: list[list[tuple[int, QAPair]]] = [[] for _ in scripts]
        for (i, k, c), a in zip(chosen, asked):
            if a.question and a.finished:
                answer = scripts[i].original[c.start : c.start + len(c.answer)]
                ranked[i].append((k, QAPair(a.question, answer, c.start, a.score)))
        results = []
        for (_, warnings), found_pairs in zip(plans, ranked):
            pairs = [pair for _, pair in _spread(found_pairs, n, is_duplicate)]
            if len(pairs) < n:
                warnings = [*warnings, f"{len(pairs)} of {n} pairs: the passage gave no more distinct answers "
                                       "with complete questions"]
            results.append(Generated(pairs, warnings))
        return results

    def _windows(self, script: Script, n: int) -> tuple[list[Window], list[str]]:
        """The windows answers are sampled from, and a warning when a long passage had to skip some."""
        windows = tiles(script.text)
        most = MAX_WINDOWS_PER_PAIR * n
        if len(windows) <= most:
            return windows, []
        picked = [windows[round(j * (len(windows) - 1) / max(most - 1, 1))] for j in range(most)]
        return picked, [
            f"the passage is long ({len(script.text):,} characters, {len(windows)} windows): answers were sampled "
            f"from {len(picked)} windows spread over it; ask for more pairs (-n) to cover more"
        ]

    def _answers(self, windows: list[Window], per_window: list[int], config: DecodingConfig) -> list[list[tuple[int, int, float]]]:
        """Per window, the spans ``(lo, hi)`` of its text that the answers sampled from it are, with
        the answer's mean log-probability per token (one decode per distinct number of samples)."""
        found: list[list[tuple[int, int, float]]] = [[] for _ in windows]
        for count in sorted(set(per_window)):
            rows = [j for j, c in enumerate(per_window) if c == count]
            texts = [windows[j].text for j in rows]
            aconfig = answer_config(config, count)
            constraint = spans.answer_constraint(self.adapter, texts, aconfig.max_new_tokens)
            hyps = generate(self.adapter, self.driver.answer_inputs(texts), aconfig, processors=[constraint])
            for j, text, hs in zip(rows, texts, hyps):
                spelling = self.driver.spelling(text)
                for h in hs:
                    span = spelling.locate(self.adapter, h.token_ids) if h.finished and h.token_ids else None
                    if span is not None:
                        found[j].append((*span, h.score / (len(h.token_ids) + 1)))
        return found


def _spread(items: list[tuple[int, QAPair]], n: int, duplicate: Callable[[QAPair, list[QAPair]], bool]) -> list[tuple[int, QAPair]]:
    """Up to ``n`` of the ``(window, pair)`` items: best score first, a duplicate of a better item
    dropped, then the best remaining item of each window in turn (so every part of a long passage
    gets its share); returned best first."""
    kept: list[tuple[int, QAPair]] = []
    for item in sorted(items, key=lambda kp: -kp[1].score):
        if not duplicate(item[1], [pair for _, pair in kept]):
            kept.append(item)
    turns: dict[int, int] = {}
    order = []
    for j, (k, _) in enumerate(kept):  # best first, so this is the window's turns[k]-th best
        turns[k] = turns.get(k, -1) + 1
        order.append((turns[k], j))
    return [kept[j] for j in sorted(j for _, j in sorted(order)[:n])]
