"""The search samplers' correctness: constraints hold after every move, exact Metropolis-Hastings
(a full-vocabulary replace is always accepted; visit frequencies match an enumerable target),
canonical insert/delete moves, batched scoring that agrees with whole-sentence scoring, and
seeds that reproduce. Tiny random models: the guarantees hold for any language model."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest
import torch

from textgen.models.backbone import BertBackbone, BertConfig
from textgen.search import BackboneLM, Searcher, Settings
from textgen.search import state as st
from textgen.search.problems import CGMH_MOVES, keywords_start
from textgen.search.sampler import Problem, Sampler
from textgen.search.state import FREE, LOCKED, Segment
from textgen.search.target import Fluency
from textgen.tokenizer import SPECIAL_TOKENS, ChineseTokenizer, build_vocab

SENTENCES = ["图书馆今天向市民开放了。", "春节期间很多人坐高铁返乡。", "我们在公园里散步，天气很好。"]


def tiny_lm(vocab: list[str], *, seed: int = 0, std: float = 0.02, positions: int = 64) -> BackboneLM:
    tokenizer = ChineseTokenizer(vocab, mode="char")
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=positions, initializer_range=std)
    return BackboneLM(BertBackbone(cfg), tokenizer, bf16=False)


@pytest.fixture(scope="module")
def lm() -> BackboneLM:
    vocab = build_vocab(SENTENCES, min_char_count=1, min_word_count=1)
    return tiny_lm(vocab, std=0.5)


def keywords_problem(lm: BackboneLM, keywords: list[str], *, gamma: float = 1.0, max_free: int = 8,
                     moves: dict[str, float] | None = None) -> Problem:
    start = keywords_start(keywords, lm.encode, lm.tokenizer.unk_id)
    return Problem(start.state, moves or dict(CGMH_MOVES), Fluency(gamma), max_free, one_sentence=True)


# ---------------------------------------------------------------------- moves on states
def test_canonical_moves_reach_each_sentence_by_one_path():
    a, b = 7, 8
    state = (Segment(FREE, (a, a, b)), Segment(LOCKED, (9,), "锁"), Segment(FREE, (a,)))
    # Only the first of a run of equal free tokens may go: deleting either a gives the same state.
    assert [(p.seg, p.k) for p in st.delete_places(state)] == [(0, 0), (0, 2), (2, 0)]
    # A locked neighbour does not count: the free a after the locked token is deletable.
    assert st.left_free_neighbour(state, st.Place(1, 0, 1)) == a  # inserting a there would repeat the run
    assert st.left_free_neighbour(state, st.Place(4, 2, 0)) is None
    # Every (slot, token) insertion that is allowed gives a distinct state, and its reverse deletion is allowed.
    results = []
    for place in st.insert_places(state, max_free=10):
        for token in (a, b):
            if token == st.left_free_neighbour(state, place):
                continue
            y = st.inserted(state, place, token)
            results.append(y)
            assert st.Place(place.flat, place.seg, place.k) in st.delete_places(y)
            assert st.deleted(y, place) == state
    assert len(results) == len(set(results))
    assert st.insert_places(state, max_free=4) == []  # four free tokens already


def test_render_keeps_locked_text_verbatim_and_spaces_latin_words(lm: BackboneLM):
    state = (Segment(LOCKED, tuple(lm.encode("GPU")), "GPU"), Segment(FREE, tuple(lm.encode("图书馆"))))
    assert st.render(state, lm.decode) == "GPU图书馆"
    latin = (Segment(LOCKED, (), "Deep"), Segment(LOCKED, (), "Learning"))
    assert st.render(latin, lm.decode) == "Deep Learning"


# ---------------------------------------------------------------------- batched scoring
def test_prefix_and_suffix_scoring_equals_whole_sentence_scoring(lm: BackboneLM):
    sentences = [lm.encode(s) for s in SENTENCES]
    whole = lm.sentence_logp(sentences)
    cut = [3, 0, len(sentences[2])]  # a middle cut, an empty prefix, an empty suffix
    prefix = lm.prefix([s[:c] for s, c in zip(sentences, cut)])
    split = prefix.logp + lm.suffix_logp(prefix, [0, 1, 2], [s[c:] for s, c in zip(sentences, cut)])
    assert torch.allclose(whole, split, atol=1e-4)
    # A batch of candidates that share a prefix scores each as if alone.
    alone = lm.sentence_logp([sentences[0][:3] + [t] + sentences[0][3:] for t in sentences[1][:4]])
    shared = prefix.logp[0] + lm.suffix_logp(prefix, [0] * 4, [[t, *sentences[0][3:]] for t in sentences[1][:4]])
    assert torch.allclose(alone, shared, atol=1e-4)


# ---------------------------------------------------------------------- constraints
def test_keywords_are_present_and_unsplit_after_every_accepted_move(lm: BackboneLM):
    keywords = ["图书馆", "市民", "春节"]
    problem = keywords_problem(lm, keywords, gamma=0.8)
    sampler = Sampler(lm, Settings(steps=40, chains=3, candidates=6))
    accepted = []

    def check(step):
        text = sampler.render(step.state)
        locked = [seg.text for seg in step.state if seg.kind == LOCKED]
        assert locked == [*keywords, "。"]  # in order, whole, never edited
        assert all(k in text for k in keywords) and text.endswith("。")
        accepted.append(step.accepted and step.changed)

    result = sampler.run(problem, "seed", on_step=check)
    assert sum(accepted) >= 10  # the chains did move
    assert result.outputs and all(k in result.outputs[0][0] for k in keywords)


def test_no_added_word_repeats_a_word_of_the_sentence(lm: BackboneLM):
    """The target is 0 for a sentence whose added word occurs twice (图书馆图书馆), so no chain
    visits one and none is returned; the tiny model's vocabulary holds such words."""
    words = lm.words
    assert lm.tokenizer.token_to_id["图书馆"] in words
    problem = keywords_problem(lm, ["图书馆", "市民"], gamma=0.8)
    problem.distinct_words = True
    sampler = Sampler(lm, Settings(steps=40, chains=4, candidates=0, outputs=5))
    visited = []
    result = sampler.run(problem, "seed", on_step=lambda step: visited.append(step.state))
    assert not any(st.repeats_a_word(s, words) for s in visited)
    added = [t for s in visited for seg in s if seg.kind == FREE for t in seg.tokens]
    assert any(t in words for t in added)  # words were added, just never twice
    assert result.outputs and all(o.count("图书馆") == 1 and o.count("市民") == 1 for o, _ in result.outputs)
    # Without the constraint the same chains do repeat words (so the test could fail).
    problem.distinct_words = False
    visited.clear()
    sampler.run(problem, "seed", on_step=lambda step: visited.append(step.state))
    assert any(st.repeats_a_word(s, words) for s in visited)


# ---------------------------------------------------------------------- exact Metropolis-Hastings
def test_full_vocabulary_replace_is_always_accepted(lm: BackboneLM):
    start = keywords_start(["市民"], lm.encode, lm.tokenizer.unk_id)
    filled = (Segment(FREE, tuple(lm.encode("今天很多"))), *start.state[1:])
    problem = Problem(filled, {"replace": 1.0}, Fluency(1.0), 8, one_sentence=True)
    sampler = Sampler(lm, Settings(steps=60, chains=4, candidates=0))
    result = sampler.run(problem, "seed")
    assert result.proposals == 240
    assert result.accepted / result.proposals > 0.99
    assert result.changed > 100  # a real Gibbs sampler, not a chain that stands still


def test_visit_frequencies_match_an_enumerable_target():
    """Keyword 甲乙 (two locked tokens), at most two free tokens from {甲, 乙} around it: 17
    sentences. The chains' visit frequencies must match rho^(1/T) computed by enumeration (total
    variation 0.03 here; dropping the position-choice terms from the acceptance, as the reference
    code does, gives 0.16)."""
    vocab = [*SPECIAL_TOKENS, "甲", "乙", "。"]
    lm = tiny_lm(vocab, seed=3, std=1.0)
    gamma, temperature, max_free = 0.8, 3.0, 2
    problem = keywords_problem(lm, ["甲乙"], gamma=gamma, max_free=max_free)
    free_tokens = [lm.tokenizer.token_to_id[c] for c in "甲乙"]
    states = []
    for n in range(max_free + 1):
        for left in range(n + 1):
            for tokens in itertools.product(free_tokens, repeat=n):
                s = list(problem.state)
                s[0], s[2] = Segment(FREE, tokens[:left]), Segment(FREE, tokens[left:])
                states.append(tuple(s))
    assert len(states) == 17
    log_rho = (gamma * lm.sentence_logp([st.token_ids(s) for s in states]) / temperature).tolist()
    top = max(log_rho)
    weights = [math.exp(v - top) for v in log_rho]
    target = {s: w / sum(weights) for s, w in zip(states, weights)}

    visits: Counter = Counter()
    settings = Settings(steps=400, chains=32, candidates=0, temperature=temperature)

    def count(step):
        if step.step >= 50:  # burn-in
            visits[step.state] += 1

    Sampler(lm, settings).run(problem, "enumerable", on_step=count)
    total = sum(visits.values())
    assert set(visits) <= set(states)
    tv = 0.5 * sum(abs(visits[s] / total - p) for s, p in target.items())
    assert tv < 0.06, (tv, sorted(target.values()))


# ---------------------------------------------------------------------- seeds and modes
def test_same_seed_same_output_and_other_seeds_differ(lm: BackboneLM):
    searcher = Searcher(lm)
    settings = Settings(steps=12, chains=2, candidates=6, outputs=3)
    first = searcher.search("keywords", ["图书馆", "市民"], settings, key="1")
    again = searcher.search("keywords", ["图书馆", "市民"], settings, key="1")
    others = [searcher.search("keywords", ["图书馆", "市民"], settings, key=str(k)).outputs for k in range(2, 5)]
    assert first.outputs == again.outputs
    assert any(o != first.outputs for o in others)


def test_infill_keeps_every_other_character(lm: BackboneLM):
    searcher = Searcher(lm)
    text = "Ab今天＿＿，我们__。"
    result = searcher.search("infill", text, Settings(steps=30, chains=2, candidates=6, outputs=2))
    for out, _ in result.outputs:
        assert out.startswith("Ab今天") and out.endswith("。")
        head, _, tail = out[4:].partition("，我们")
        assert len(head) == 2 and tail[:-1]  # two characters in ＿＿, something in __


def test_annealing_cools_geometrically():
    s = Settings(steps=5, temperature=2.0, anneal=0.125)
    assert [s.temperature_at(t) for t in range(5)] == pytest.approx([2.0, 1.0, 0.5, 0.25, 0.125])
    assert Settings(steps=5, temperature=2.0).temperature_at(4) == 2.0
    with pytest.raises(ValueError, match="steps"):
        Settings(steps=0)
