"""Decoding config, processors and strategies, driven by small scripted adapters whose
next-token distributions are known exactly, so every assertion can be checked by hand."""

from __future__ import annotations

import math

import pytest
import torch

from textgen.decoding import (
    AllowedTokens,
    BannedTokens,
    DecodingConfig,
    LogitsProcessor,
    MinNewTokens,
    NoRepeatNGram,
    NoTokenLeft,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    generate,
)

EOS = 0


class ScriptedAdapter:
    """Logits are ``script(input_ids, generated_ids) -> list[float]``; the state is each row's
    (input, generated) pair, reordered exactly as a model cache would be."""

    eos_token_ids = [EOS]
    pad_token_id = EOS
    device = torch.device("cpu")

    def __init__(self, vocab_size, script):
        self.vocab_size = vocab_size
        self.script = script
        self.reorders: list[list[int]] = []

    def _logits(self, rows):
        return torch.tensor([self.script(tuple(inp), tuple(gen)) for inp, gen in rows], dtype=torch.float)

    def start(self, inputs, max_new_tokens):
        rows = [(list(x), []) for x in inputs]
        return self._logits(rows), rows

    def step(self, state, tokens):
        rows = [(inp, gen + [int(t)]) for (inp, gen), t in zip(state, tokens)]
        return self._logits(rows), rows

    def reorder(self, state, index):
        self.reorders.append(index.tolist())
        return [state[i] for i in index.tolist()]


def markov(vocab_size: int, seed: int, sharpness: float = 3.0, eos_bias: float = 0.0):
    """A fixed random bigram table: the next distribution depends on the last token (or the last
    input token at the first step)."""
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(vocab_size, vocab_size, generator=g) * sharpness
    table[:, EOS] += eos_bias
    table = table.tolist()
    return lambda inp, gen: table[(gen or inp)[-1]]


def logp(values):
    return torch.log_softmax(torch.tensor(values, dtype=torch.float), -1).tolist()


# ---------------------------------------------------------------------- config
def test_config_validates_and_replace_returns_a_new_checked_config():
    cfg = DecodingConfig()
    assert cfg.strategy == "greedy"
    beam = cfg.replace(num_beams=4, num_return_sequences=2)
    assert beam.strategy == "beam" and cfg.num_beams == 1
    assert cfg.replace(do_sample=True).strategy == "sample"
    assert DecodingConfig(banned_token_ids=[3, 4]).banned_token_ids == (3, 4)
    for bad in (
        dict(num_beams=0),
        dict(temperature=0),
        dict(top_p=1.5),
        dict(top_k=-1),
        dict(max_new_tokens=0),
        dict(min_new_tokens=5, max_new_tokens=4),
        dict(num_beams=2, num_return_sequences=3),
        dict(num_beams=2, do_sample=True),
        dict(num_return_sequences=2),
        dict(do_sample="yes"),
        dict(banned_token_ids=[-1]),
        dict(repetition_penalty=0.0),
    ):
        with pytest.raises(ValueError):
            DecodingConfig(**bad)
    for name in ("temperature", "top_p", "repetition_penalty", "length_penalty"):  # nan and inf pass "> 0" checks
        for value in (math.nan, math.inf):
            with pytest.raises(ValueError, match=f"{name} must be a finite number"):
                DecodingConfig(**{name: value})
    with pytest.raises(ValueError, match="unknown decoding option"):
        cfg.replace(beams=3)


def test_an_explicit_temperature_0_is_greedy_decoding():
    from textgen.decoding.config import build_config

    sampling = {"do_sample": True, "temperature": 0.8, "top_k": 8}
    greedy = build_config(sampling, {"temperature": 0})
    assert greedy.strategy == "greedy" and greedy.ignored({"temperature": 0}) == []
    assert build_config({"num_beams": 4}, {"temperature": 0.0}).strategy == "greedy"  # beams off too
    assert build_config({"num_beams": 4}, {"temperature": 0, "num_beams": 2}).strategy == "beam"  # unless asked for
    assert build_config(sampling, {"temperature": 0, "do_sample": True}).strategy == "greedy"
    with pytest.raises(ValueError, match="greedy decoding returns one sequence"):
        build_config(sampling, {"temperature": 0, "num_return_sequences": 3})
    with pytest.raises(ValueError, match="temperature must be > 0"):
        build_config(sampling, {"temperature": -1})
    with pytest.raises(ValueError, match="temperature must be > 0"):  # only what the user asks means greedy
        build_config({"temperature": 0}, {})


def test_build_config_names_values_of_the_wrong_type():
    from textgen.decoding.config import build_config

    for bad, name in (({"num_beams": "x"}, "num_beams"), ({"do_sample": "maybe"}, "do_sample"),
                      ({"num_return_sequences": "3"}, "num_return_sequences"), ({"banned_token_ids": "x"}, "banned_token_ids"),
                      ({"banned_token_ids": 5}, "banned_token_ids"), ({"temperature": "hot"}, "temperature")):
        with pytest.raises(ValueError, match=name):
            build_config({"num_beams": 3}, bad)


@pytest.mark.parametrize(
    "factory",
    [lambda: Temperature(0), lambda: TopK(0), lambda: TopP(0.0), lambda: RepetitionPenalty(-1),
     lambda: NoRepeatNGram(0), lambda: MinNewTokens(2, []), lambda: BannedTokens([]),
     lambda: AllowedTokens([[]], 5), lambda: AllowedTokens([[7]], 5)],
)
def test_processors_validate_in_their_constructor(factory):
    with pytest.raises(ValueError):
        factory()


# ---------------------------------------------------------------------- processors one by one
def test_top_k_keeps_the_k_best_and_ties():
    logits = torch.tensor([[1.0, 5.0, 3.0, 3.0, 0.0]])
    out = TopK(2)(torch.zeros(1, 0, dtype=torch.long), logits)
    assert torch.isfinite(out).tolist() == [[False, True, True, True, False]]


def test_top_p_keeps_the_token_that_crosses_p_and_drops_the_rest():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    gen = torch.zeros(1, 0, dtype=torch.long)
    kept = lambda p: torch.isfinite(TopP(p)(gen, probs.log())).tolist()[0]  # noqa: E731
    assert kept(0.5) == [True, False, False, False]
    assert kept(0.6) == [True, True, False, False]
    assert kept(0.81) == [True, True, True, False]
    assert kept(1.0) == [True, True, True, True]


def test_temperature_sharpens_and_flattens():
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    gen = torch.zeros(1, 0, dtype=torch.long)
    base = logits.softmax(-1)[0, 0]
    assert Temperature(0.5)(gen, logits).softmax(-1)[0, 0] > base > Temperature(2.0)(gen, logits).softmax(-1)[0, 0]


def test_repetition_penalty_divides_positive_and_multiplies_negative_scores_of_seen_tokens():
    logits = torch.tensor([[2.0, -1.0, 3.0, 1.0]])
    out = RepetitionPenalty(2.0)(torch.tensor([[0, 1, 1]]), logits)
    assert out.tolist() == [[1.0, -2.0, 3.0, 1.0]]


def test_no_repeat_ngram_bans_exactly_the_tokens_closing_a_seen_ngram():
    gen = torch.tensor([[1, 2, 3, 1, 2, 1]])
    logits = torch.zeros(1, 5)
    banned2 = ~torch.isfinite(NoRepeatNGram(2)(gen, logits))[0]
    assert banned2.nonzero().flatten().tolist() == [2]  # "1 2" seen: after 1 comes no 2
    banned3 = ~torch.isfinite(NoRepeatNGram(3)(torch.tensor([[1, 2, 3, 1, 2]]), logits))[0]
    assert banned3.nonzero().flatten().tolist() == [3]
    banned1 = ~torch.isfinite(NoRepeatNGram(1)(gen, logits))[0]
    assert banned1.nonzero().flatten().tolist() == [1, 2, 3]


def test_banned_and_allowed_tokens_on_logits():
    gen = torch.zeros(2, 0, dtype=torch.long)
    logits = torch.zeros(2, 4)
    assert torch.isfinite(BannedTokens([1, 3])(gen, logits)).tolist() == [[True, False, True, False]] * 2
    with pytest.raises(ValueError, match="outside"):
        BannedTokens([9])(gen, logits)
    allowed = AllowedTokens([[2, 3], None], vocab_size=4)
    assert torch.isfinite(allowed(gen, logits)).tolist() == [[False, False, True, True], [True] * 4]
    allowed.reorder(torch.tensor([1, 1, 0]))
    assert torch.isfinite(allowed(torch.zeros(3, 0, dtype=torch.long), torch.zeros(3, 4))).tolist()[2] == [False, False, True, True]


# ---------------------------------------------------------------------- rules inside strategies
def loop_script(inp, gen):
    """Strongly prefers cycling 1 -> 2 -> 3 -> 1 ...; the end token is never likely."""
    last = (gen or inp)[-1]
    nxt = {1: 2, 2: 3, 3: 1}.get(last, 1)
    return [-5.0 if i == EOS else (4.0 if i == nxt else 0.0) for i in range(6)]


def eos_first_script(inp, gen):
    """Prefers to end at once; otherwise token 4 then 5."""
    return [3.0, 0.0, 0.0, 0.0, 1.0 if not gen else 0.0, 0.5]


@pytest.mark.parametrize("beams", [1, 3])
def test_no_repeat_ngram_in_decoding(beams):
    adapter = ScriptedAdapter(6, loop_script)
    cfg = DecodingConfig(max_new_tokens=12, num_beams=beams)
    free = generate(adapter, [[1]], cfg)[0][0].token_ids
    assert len(set(zip(free, free[1:]))) < len(free) - 1  # the loop repeats bigrams
    for n in (2, 3):
        out = generate(adapter, [[1]], cfg.replace(no_repeat_ngram_size=n))[0][0].token_ids
        grams = list(zip(*(out[i:] for i in range(n))))
        assert len(out) == 12 and len(grams) == len(set(grams))


def test_repetition_penalty_in_decoding_changes_the_choice():
    script = lambda inp, gen: [-9.0, 2.0, 1.5, 0.0]  # noqa: E731  always token 1 unpenalised
    adapter = ScriptedAdapter(4, script)
    free = generate(adapter, [[3]], DecodingConfig(max_new_tokens=3))[0][0].token_ids
    assert free == [1, 1, 1]
    out = generate(adapter, [[3]], DecodingConfig(max_new_tokens=3, repetition_penalty=2.0))[0][0].token_ids
    assert out == [1, 2, 1]  # penalised 1 scores 2/2 = 1.0 < 1.5; then penalised 2 scores 0.75 < 1.0


@pytest.mark.parametrize("beams", [1, 2])
def test_min_new_tokens_delays_the_end(beams):
    adapter = ScriptedAdapter(6, eos_first_script)
    cfg = DecodingConfig(max_new_tokens=8, num_beams=beams)
    first = generate(adapter, [[1]], cfg)[0][0]
    assert first.token_ids == [] and first.finished
    later = generate(adapter, [[1]], cfg.replace(min_new_tokens=3))[0][0]
    assert len(later.token_ids) == 3 and later.finished


@pytest.mark.parametrize("beams", [1, 3])
def test_banned_tokens_are_never_generated(beams):
    adapter = ScriptedAdapter(6, loop_script)
    cfg = DecodingConfig(max_new_tokens=10, num_beams=beams)
    assert 2 in generate(adapter, [[1]], cfg)[0][0].token_ids
    out = generate(adapter, [[1]], cfg.replace(banned_token_ids=(2,)))[0][0].token_ids
    assert 2 not in out and len(out) == 10


@pytest.mark.parametrize("beams", [1, 3])
def test_per_input_allowed_sets(beams):
    adapter = ScriptedAdapter(6, loop_script)
    cfg = DecodingConfig(max_new_tokens=6, num_beams=beams)
    allowed = AllowedTokens([[4, 5], None], vocab_size=6)
    out = generate(adapter, [[1], [1]], cfg, processors=[allowed])
    assert set(out[0][0].token_ids) <= {4, 5} and out[1][0].token_ids[:3] == [2, 3, 1]
    # generate works on a copy: the caller's processor still has one row per input
    assert allowed.mask.shape == (2, 6)


def test_constraints_that_leave_nothing_are_an_error():
    adapter = ScriptedAdapter(3, lambda inp, gen: [0.0, 1.0, 2.0])
    # NoTokenLeft (a ValueError): what a caller may retry with fewer constraints (summarize does)
    with pytest.raises(NoTokenLeft, match="no token"):
        generate(adapter, [[1]], DecodingConfig(max_new_tokens=2, banned_token_ids=(0, 1, 2)))
    with pytest.raises(NoTokenLeft, match="empty"):
        AllowedTokens([[]], 3)


# ---------------------------------------------------------------------- greedy
def test_greedy_scores_are_summed_log_probs_and_cut_outputs_are_flagged():
    adapter = ScriptedAdapter(6, loop_script)
    (hyp,), = generate(adapter, [[1]], DecodingConfig(max_new_tokens=5))
    assert hyp.token_ids == [2, 3, 1, 2, 3] and not hyp.finished
    step = logp(loop_script((1,), ()))[2]  # every step has the same shape of distribution
    assert hyp.score == pytest.approx(5 * step, rel=1e-5)
    (done,), = generate(ScriptedAdapter(6, eos_first_script), [[1]], DecodingConfig(max_new_tokens=5))
    assert done.finished and done.token_ids == []


def test_greedy_batch_equals_one_by_one():
    adapter = ScriptedAdapter(12, markov(12, seed=3))
    inputs = [[1, 4], [7], [2, 2, 9], [5]]
    cfg = DecodingConfig(max_new_tokens=15)
    together = generate(adapter, inputs, cfg)
    assert any(h[0].finished for h in together) and any(not h[0].finished for h in together)
    assert together == [generate(adapter, [x], cfg)[0] for x in inputs]


# ---------------------------------------------------------------------- beam search
def test_beam_keeps_a_finished_hypothesis_that_was_not_best_when_it_finished():
    """X ends at step 1 while the running A B is far ahead; A B then collapses (uniform over a
    large vocabulary). bert4keras drops X at step 1 (its best hypothesis is unfinished); a
    finished pool keeps it and it wins."""
    V, A, B, X = 40, 1, 2, 3

    def script(inp, gen):
        row = [-20.0] * V
        if not gen:
            row[A], row[X] = 0.0, -2.0
        elif gen == (A,):
            row[B] = 0.0
        elif gen == (X,):
            row[EOS] = 0.0
        else:
            row = [0.0] * V  # uniform: every further token costs log(40)
        return row

    adapter = ScriptedAdapter(V, script)
    hyps = generate(adapter, [[5]], DecodingConfig(num_beams=2, num_return_sequences=2, max_new_tokens=6))[0]
    best = hyps[0]
    assert best.token_ids == [X] and best.finished
    # when X finished (step 1), the running A B had the higher cumulative log-prob
    lp_x_end = logp(script((5,), ()))[X] + logp(script((5,), (X,)))[EOS]
    lp_ab = logp(script((5,), ()))[A] + logp(script((5,), (A,)))[B]
    assert lp_ab > lp_x_end
    assert best.score == pytest.approx(lp_x_end / 2, abs=1e-4)
    assert hyps[1].token_ids[:2] == [A, B]


class SumState(LogitsProcessor):
    """A stateful processor: per row it keeps the running sum of the row's tokens, updated from
    the last token only, and counts the times that state disagrees with the row's history.
    The counters live in a shared dict so they survive generate()'s shallow copy."""

    def __init__(self, rows: int, log: dict):
        self.sums = torch.zeros(rows, dtype=torch.long)
        self.log = log

    def __call__(self, generated, logits):
        if generated.shape[1]:
            self.sums = self.sums + generated[:, -1]
        self.log["mismatches"] += int((self.sums != generated.sum(1)).sum())
        self.log["calls"] += 1
        # the state also steers the search: rows with an odd running sum avoid token 1
        penalty = torch.zeros_like(logits)
        penalty[:, 1] = (self.sums % 2).float() * 3.0
        return logits - penalty

    def reorder(self, index):
        self.sums = self.sums.index_select(0, index)


class StaleSumState(SumState):
    """bert4keras' behaviour: state is repeated for the beams but never follows a reordering."""

    def reorder(self, index):
        if len(index) != len(self.sums):
            self.sums = self.sums.index_select(0, index)


def test_beam_reorders_per_beam_processor_state():
    adapter = ScriptedAdapter(10, markov(10, seed=5, sharpness=1.0))
    cfg = DecodingConfig(num_beams=4, max_new_tokens=8, early_stopping=False)
    log = {"mismatches": 0, "calls": 0}
    generate(adapter, [[1], [2]], cfg, processors=[SumState(2, log)])
    assert log["calls"] == 8 and log["mismatches"] == 0
    # beams really were shuffled, so a state that stayed in place would have gone wrong ...
    assert any(idx != sorted(idx) for idx in adapter.reorders)
    stale = {"mismatches": 0, "calls": 0}
    generate(adapter, [[1], [2]], cfg, processors=[StaleSumState(2, stale)])
    assert stale["mismatches"] > 0  # ... as it does here


def test_beam_batch_equals_one_by_one_and_returns_sorted_hypotheses():
    adapter = ScriptedAdapter(12, markov(12, seed=11, sharpness=2.0, eos_bias=2.0))
    inputs = [[1], [6, 3], [9], [4, 4, 4], [0, 2]]
    for es in (True, False):
        cfg = DecodingConfig(num_beams=3, num_return_sequences=3, max_new_tokens=10, early_stopping=es)
        together = generate(adapter, inputs, cfg)
        for x, hyps in zip(inputs, together):
            assert hyps == generate(adapter, [x], cfg)[0]
            assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        flags = {h.finished for hyps in together for h in hyps}
        assert flags == {True, False}


def test_beam_length_penalty_changes_the_preferred_length():
    """Short: ends at once with log p = -1.2; long: two sure steps then the end with -0.9 in total."""

    def script(inp, gen):
        row = [-30.0] * 5
        if not gen:
            row[EOS], row[1] = -1.2, -0.9
        elif len(gen) < 3:
            row[1] = 0.0
        else:
            row[EOS] = 0.0
        return row

    adapter = ScriptedAdapter(5, script)
    cfg = DecodingConfig(num_beams=2, max_new_tokens=6, early_stopping=False)
    short = generate(adapter, [[2]], cfg.replace(length_penalty=-1.0))[0][0]
    long = generate(adapter, [[2]], cfg.replace(length_penalty=2.0))[0][0]
    assert short.token_ids == [] and long.token_ids == [1, 1, 1]


# ---------------------------------------------------------------------- sampling
def test_sampling_is_reproducible_with_a_seed_and_varies_without():
    adapter = ScriptedAdapter(30, markov(30, seed=1, sharpness=0.3))
    cfg = DecodingConfig(do_sample=True, num_return_sequences=4, max_new_tokens=12, seed=7)
    run = lambda c: [[h.token_ids for h in hs] for hs in generate(adapter, [[1], [2]], c)]  # noqa: E731
    assert run(cfg) == run(cfg)
    assert run(cfg) != run(cfg.replace(seed=8))
    assert run(cfg.replace(seed=None)) != run(cfg.replace(seed=None))
    samples = run(cfg)[0]
    assert len(samples) == 4 and len({tuple(s) for s in samples}) > 1


@pytest.mark.parametrize("option,check", [("top_k", "k"), ("top_p", "p")])
def test_sampling_draws_only_from_the_kept_tokens(option, check):
    table = markov(8, seed=2, sharpness=1.0)
    adapter = ScriptedAdapter(8, table)
    value = 2 if check == "k" else 0.5
    cfg = DecodingConfig(do_sample=True, num_return_sequences=20, max_new_tokens=6, seed=0, **{option: value})
    free = DecodingConfig(do_sample=True, num_return_sequences=20, max_new_tokens=6, seed=0)

    def allowed(prev):
        logits = torch.tensor([table((prev,), ())])
        proc = TopK(2) if check == "k" else TopP(0.5)
        return set(torch.isfinite(proc(torch.zeros(1, 0, dtype=torch.long), logits)).nonzero()[:, 1].tolist())

    def violations(hyps):
        bad = 0
        for h in hyps:
            prev = 3
            for tok in h.token_ids + ([EOS] if h.finished else []):
                bad += tok not in allowed(prev)
                prev = tok
        return bad

    assert violations(generate(adapter, [[3]], free)[0]) > 0  # unrestricted sampling strays
    assert violations(generate(adapter, [[3]], cfg)[0]) == 0


def test_sample_scores_are_log_probs_and_hypotheses_sorted():
    table = markov(6, seed=4, sharpness=1.0)
    adapter = ScriptedAdapter(6, table)
    hyps = generate(adapter, [[2]], DecodingConfig(do_sample=True, num_return_sequences=5, max_new_tokens=4, seed=3))[0]
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
    for h in hyps:
        prev, total = 2, 0.0
        for tok in h.token_ids + ([EOS] if h.finished else []):
            total += logp(table((prev,), ()))[tok]
            prev = tok
        assert h.score == pytest.approx(total, abs=1e-4)
        assert math.isfinite(h.score)
