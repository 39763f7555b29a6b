"""Batched MCMC over sentences (algorithms.md 4.2-4.4): several chains of one input step together.

Three kinds of move, each run for all the chains that drew it in one batch:

* **CGMH** insert / delete / replace (4.4). The forward LM ranks the tokens that may follow the
  prefix before the edited place; its top K (``candidates``; 0 = the whole vocabulary) become
  whole candidate sentences, scored by the fluency LM in ONE batch, and the proposal picks one
  with probability proportional to the tempered target. The candidate set depends only on the
  prefix, so the reverse move sees the same set.
* **Gibbs** with the masked LM (4.3) for fixed-length blanks: mask one blank, sample its character
  from the masked LM; always accepted. Chains keep the masked LM's own stationary behaviour; the
  fluency LM only ranks the visited states.
* **MLM replace** (rewrite): the masked LM's top K at a position proposes the new token, and
  Metropolis-Hastings accepts on the target.

Exact Metropolis-Hastings, not the reference code's shortcuts (algorithms.md 9.6, docs/search.md):
the acceptance ratio includes the move probabilities, the number of places each move could have
picked in x and in y, and the candidate probability of the reverse move; proposals use the same
tempered target as the acceptance, so a replace move is a Gibbs draw within its candidates and is
always accepted; the insert placeholder is never a candidate; insertions and deletions are
canonical (``state.py``), so each sentence is reached by one path. When the reverse move is
impossible (the current token fell out of its prefix's top K) the proposal is rejected without
being scored. On a target small enough to enumerate, visit frequencies match ``ρ^(1/T)``
(tests/test_search_sampler.py).

The returned sentences are the best the search scored (4.2: keep the maximum-ρ state), visited
or only proposed: a proposal scores K whole sentences and all of them are candidates. They are
ranked by target score per character, since the raw target always prefers the shortest sentence
(``_best``). Randomness comes from one ``random.Random`` per chain seeded from the caller's key,
and every batch holds the chains of one input only, so a seed gives the same output whatever else
is in the run.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from textgen.evaluation.lm import counted_chars
from textgen.search import state as st
from textgen.search.lm import BackboneLM, TextScorer
from textgen.search.state import FIXED, Place, State
from textgen.search.target import Fluency, log_softmax

CGMH = ("insert", "delete", "replace")


@dataclass
class Settings:
    steps: int = 32  # proposals per chain
    chains: int = 4
    candidates: int = 8  # forward-LM / masked-LM top K; 0 = every proposable token
    temperature: float = 1.0
    anneal: float = 0.0  # final temperature of a geometric cooling; 0 = no annealing
    outputs: int = 1

    def __post_init__(self) -> None:
        for name, low in (("steps", 1), ("chains", 1), ("candidates", 0), ("outputs", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, not {value!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, not {self.temperature!r}")
        if not self.anneal >= 0:
            raise ValueError(f"anneal must be >= 0 (0 = off), not {self.anneal!r}")

    def temperature_at(self, step: int) -> float:
        """Geometric cooling from ``temperature`` at step 0 to ``anneal`` at the last step."""
        if not self.anneal or self.steps == 1:
            return self.temperature
        return self.temperature * (self.anneal / self.temperature) ** (step / (self.steps - 1))


@dataclass
class Problem:
    """One input to search: the initial state, its moves and target, and what the outputs must be."""

    state: State
    moves: dict[str, float]  # move name -> probability: insert, delete, replace, gibbs, mlm_replace
    target: Fluency
    max_free: int  # most tokens the free segments may hold together
    exclude_text: str | None = None  # rewrite: never return the input itself
    fill_blanks: bool = False  # infill: a returned sentence has something in every blank
    one_sentence: bool = False  # keywords, infill: no sentence end proposed (the text holds its own)
    distinct_words: bool = False  # keywords, infill: rho = 0 when an added word repeats one (state.repeats_a_word)


@dataclass
class Chain:
    state: State
    score: float  # untempered log ρ of state
    rng: random.Random


@dataclass
class Step:
    """What one chain did at one step (the ``--trace`` record)."""

    chain: int
    step: int
    move: str
    accepted: bool
    changed: bool
    state: State
    score: float
    temperature: float


@dataclass
class Result:
    outputs: list[tuple[str, float]]  # (text, log ρ per character), best first
    proposals: int = 0
    accepted: int = 0
    changed: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Plan:
    index: int  # chain index
    move: str
    place: Place
    options: int  # how many places this move could pick in x
    prefix: list[int]
    rest: list[int]
    current: int | None  # the token at the place (delete, replace)
    banned: int | None  # not canonical at this slot
    candidates: list[int] = field(default_factory=list)


class Sampler:
    """Runs problems with one proposal model (``lm``) and one fluency scorer: ``lm`` itself, or
    ``scorer`` (a Hugging Face causal LM, another backbone), which then reads rendered texts."""

    def __init__(self, lm: BackboneLM, settings: Settings, scorer: TextScorer | None = None) -> None:
        self.lm = lm
        self.settings = settings
        self.scorer = scorer

    # ------------------------------------------------------------------ scoring
    def render(self, state: State) -> str:
        return st.render(state, self.lm.decode)

    def _logp_states(self, states: Sequence[State]) -> torch.Tensor:
        if self.scorer is not None:
            return self.scorer.sentence_logp([self.render(s) for s in states])
        return self.lm.sentence_logp([st.token_ids(s) for s in states]).cpu()

    def score_states(self, states: Sequence[State], target: Fluency) -> list[float]:
        return target([st.token_ids(s) for s in states], self._logp_states(states)).tolist()

    # ------------------------------------------------------------------ driver
    def run(self, problem: Problem, key: str, on_step: Callable[[Step], None] | None = None) -> Result:
        """Search from ``problem.state``; ``key`` seeds the chains (same key, same result)."""
        s = self.settings
        started = time.perf_counter()
        score = self.score_states([problem.state], problem.target)[0]
        chains = [Chain(problem.state, score, random.Random(f"{key}\x00{c}")) for c in range(s.chains)]
        # Every sentence the search scored, visited or only proposed, with its score: the pool
        # the outputs are chosen from.
        pool: dict[State, float] = {problem.state: score}
        result = Result([])
        names, weights = zip(*problem.moves.items())
        families = {"cgmh": self._cgmh, "gibbs": self._gibbs, "mlm_replace": self._mlm_replace}
        for t in range(s.steps):
            temperature = s.temperature_at(t)
            jobs: dict[str, list[tuple[int, str]]] = {}
            for i, chain in enumerate(chains):
                move = chain.rng.choices(names, weights)[0]
                jobs.setdefault("cgmh" if move in CGMH else move, []).append((i, move))
            for family, group in jobs.items():
                for i, move, accepted, changed in families[family](chains, group, problem, temperature, pool):
                    _count(result, accepted, changed)
                    if on_step:
                        on_step(Step(i, t, move, accepted, changed, chains[i].state, chains[i].score, temperature))
        self._complete(chains, problem, pool, result)
        result.outputs = self._best(pool, problem)
        result.seconds = time.perf_counter() - started
        return result

    def _complete(self, chains: list[Chain], problem: Problem, pool: dict[State, float], result: Result) -> None:
        """Make sure whole sentences can be returned: fixed blanks that no Gibbs step reached are
        sampled, and when no scored sentence has every variable blank filled, each chain fills its
        empty blanks greedily (the best candidate of an insertion)."""
        temperature = self.settings.temperature_at(self.settings.steps - 1)
        for _ in range(sum(len(seg.tokens) for seg in problem.state if seg.kind == FIXED)):
            group = [(i, "gibbs") for i, c in enumerate(chains) if self._masked(c.state)]
            if not group:
                break
            for _, _, accepted, changed in self._gibbs(chains, group, problem, temperature, pool):
                _count(result, accepted, changed)
        for _ in range(len(problem.state)):
            if not problem.fill_blanks or any(self._complete_state(s, problem) for s in pool):
                return
            plans = []
            for i, chain in enumerate(chains):
                empty = [p for p in st.insert_places(chain.state, problem.max_free) if not chain.state[p.seg].tokens]
                if empty:
                    plans.append(self._plan_at(i, chain.state, "insert", empty[0], len(empty)))
            for plan, states, scores in self._scored(chains, plans, problem, pool):
                best = max(range(len(scores)), key=scores.__getitem__)
                chains[plan.index].state, chains[plan.index].score = states[best], scores[best]
                _count(result, True, True)

    def _masked(self, state: State) -> bool:
        mask = self.lm.tokenizer.mask_id
        return any(seg.kind == FIXED and mask in seg.tokens for seg in state)

    def _complete_state(self, state: State, problem: Problem) -> bool:
        """A sentence that may be returned: no masked fixed blank, no empty variable blank (infill)."""
        return not self._masked(state) and not (problem.fill_blanks and any(s.kind == st.FREE and not s.tokens for s in state))

    def _best(self, pool: dict[State, float], problem: Problem) -> list[tuple[str, float]]:
        """The best scored sentences by target score per character, ``log ρ / (characters + 1)``
        (the end counts as one): the raw target always prefers the shortest sentence (the
        keywords alone), per character it prefers the most fluent one. Distinct texts only."""
        ranked: dict[str, float] = {}
        for state, score in pool.items():
            if not self._complete_state(state, problem):
                continue
            text = self.render(state)
            if text != problem.exclude_text:
                value = score / (len(counted_chars(text)) + 1)
                ranked[text] = max(value, ranked.get(text, -math.inf))
        return sorted(ranked.items(), key=lambda kv: -kv[1])[: self.settings.outputs]

    # ------------------------------------------------------------------ CGMH moves
    def _plan(self, index: int, chain: Chain, move: str, max_free: int) -> _Plan | None:
        x = chain.state
        if move == "insert":
            places = st.insert_places(x, max_free)
        elif move == "delete":
            places = st.delete_places(x)
        else:
            places = st.replace_places(x)
        return self._plan_at(index, x, move, chain.rng.choice(places), len(places)) if places else None

    @staticmethod
    def _plan_at(index: int, x: State, move: str, place: Place, options: int) -> _Plan:
        ids = st.token_ids(x)
        if move == "insert":
            return _Plan(index, move, place, options, ids[: place.flat], ids[place.flat :], None,
                         st.left_free_neighbour(x, place))
        # A deletion's reverse inserts at the same slot, whose left neighbour is unchanged.
        banned = st.left_free_neighbour(x, place) if move == "delete" else None
        return _Plan(index, move, place, options, ids[: place.flat], ids[place.flat + 1 :], ids[place.flat], banned)

    def _allowed(self, problem: Problem, flat: int) -> torch.Tensor:
        """Tokens a move may propose at token position ``flat``. The rule depends only on the
        position, so a move and its reverse see the same candidates."""
        lm = self.lm
        if flat == 0:
            return lm.proposable & ~lm.punctuation
        return lm.proposable & ~lm.sentence_end if problem.one_sentence else lm.proposable

    def _top(self, logprobs: torch.Tensor, allowed: torch.Tensor, banned: int | None) -> list[int]:
        """The top-K allowed tokens of a log-distribution (all allowed ones when K is 0)."""
        scores = logprobs.masked_fill(~allowed, -math.inf)
        if banned is not None:
            scores[banned] = -math.inf
        finite = int(torch.isfinite(scores).sum())
        k = min(self.settings.candidates or finite, finite)
        return scores.topk(k).indices.tolist() if k else []

    def _cgmh(self, chains: list[Chain], group: list[tuple[int, str]], problem: Problem, temperature: float,
              pool: dict[State, float]):
        """One CGMH proposal per chain of ``group``; yields (chain, move, accepted, changed)."""
        plans: list[_Plan] = []
        for i, move in group:
            plan = self._plan(i, chains[i], move, problem.max_free)
            if plan is None:
                yield i, move, False, False  # no place for this move: a rejected proposal
            else:
                plans.append(plan)
        for plan, states, scores in self._scored(chains, plans, problem, pool):
            if not states:
                yield plan.index, plan.move, False, False  # no candidate, or the reverse move is impossible
            else:
                yield self._accept(chains[plan.index], plan, states, scores, problem, temperature)

    def _scored(self, chains: list[Chain], plans: list[_Plan], problem: Problem, pool: dict[State, float]):
        """The candidate sentences of each plan with their target scores, all scored in one batch
        (yields (plan, states, scores); no states when the plan has no usable candidates). A
        deletion's candidates are the insertions that would restore x, then the deletion itself."""
        if not plans:
            return
        prefix = self.lm.prefix([p.prefix for p in plans])
        owner, suffixes, states = [], [], []
        for r, plan in enumerate(plans):
            plan.candidates = self._top(prefix.next_logprobs[r], self._allowed(problem, plan.place.flat), plan.banned)
            if plan.current is not None and plan.current not in plan.candidates:
                plan.candidates = []
            x = chains[plan.index].state
            for c in plan.candidates:
                owner.append(r)
                suffixes.append([c, *plan.rest])
                states.append(st.inserted(x, plan.place, c) if plan.move == "insert" else st.replaced(x, plan.place, c))
            if plan.move == "delete" and plan.candidates:
                owner.append(r)
                suffixes.append(list(plan.rest))
                states.append(st.deleted(x, plan.place))
        scores: list[float] = []
        if states:
            if self.scorer is not None:
                logp = self.scorer.sentence_logp([self.render(s) for s in states])
            else:
                logp = (prefix.logp[owner] + self.lm.suffix_logp(prefix, owner, suffixes)).cpu()
            rows = [[*plans[r].prefix, *suffix] for r, suffix in zip(owner, suffixes)]
            scores = problem.target(rows, logp).tolist()
            if problem.distinct_words:  # a hard constraint of the target: such sentences have rho = 0
                scores = [-math.inf if st.repeats_a_word(y, self.lm.words) else v for y, v in zip(states, scores)]
            _add(pool, states, scores)
        at = 0
        for plan in plans:
            n = len(plan.candidates) + (plan.move == "delete" and bool(plan.candidates))
            yield plan, states[at : at + n], scores[at : at + n]
            at += n

    def _accept(self, chain: Chain, plan: _Plan, states: list[State], scores: list[float], problem: Problem,
                temperature: float) -> tuple[int, str, bool, bool]:
        """Metropolis-Hastings for one CGMH proposal, in logs (module docstring)."""
        p = problem.moves
        x = chain.state
        pi = [v / temperature for v in scores]
        if plan.move != "delete" and max(pi) == -math.inf:
            return plan.index, plan.move, False, False  # every candidate breaks a constraint
        if plan.move == "delete":
            reverse = log_softmax(pi[:-1])  # the insertion that would restore x
            ix = plan.candidates.index(plan.current)
            y, score = states[-1], scores[-1]
            n_ins_y = len(st.insert_places(y, problem.max_free))
            log_a = (pi[-1] - pi[ix] + math.log(plan.options) - math.log(n_ins_y)
                     + math.log(p["insert"]) - math.log(p["delete"]) + reverse[ix])
        else:
            lq = log_softmax(pi)
            pick = _draw(chain.rng, lq)
            y, score = states[pick], scores[pick]
            if plan.move == "insert":
                n_del_y = len(st.delete_places(y))
                log_a = (pi[pick] - chain.score / temperature + math.log(plan.options) - math.log(n_del_y)
                         + math.log(p["delete"]) - math.log(p["insert"]) - lq[pick])
            else:  # replace: the same candidates both ways, so this is 0 up to rounding
                ix = plan.candidates.index(plan.current)
                log_a = pi[pick] - pi[ix] + lq[ix] - lq[pick]
        if log_a >= 0 or chain.rng.random() < math.exp(log_a):
            changed = y != x
            chain.state, chain.score = y, score
            return plan.index, plan.move, True, changed
        return plan.index, plan.move, False, False

    # ------------------------------------------------------------------ masked-LM moves
    def _gibbs(self, chains: list[Chain], group: list[tuple[int, str]], problem: Problem, temperature: float,
               pool: dict[State, float]):
        """Resample one fixed-blank character per chain from the masked LM (blanks still masked first)."""
        mask = self.lm.tokenizer.mask_id
        picked = []
        for i, _ in group:
            places = st.fixed_places(chains[i].state)
            if not places:
                yield i, "gibbs", False, False
                continue
            open_ = [p for p in places if chains[i].state[p.seg].tokens[p.k] == mask]
            picked.append((i, chains[i].rng.choice(open_ or places)))
        if not picked:
            return
        logprobs = self.lm.masked_logprobs([st.token_ids(chains[i].state) for i, _ in picked], [p.flat for _, p in picked])
        logits = (logprobs.masked_fill(~self.lm.single_char, -math.inf) / temperature).log_softmax(-1).cpu()
        new = []
        for (i, place), row in zip(picked, logits):
            token = int(torch.searchsorted(row.exp().cumsum(0), torch.tensor([chains[i].rng.random()])).clamp(max=len(row) - 1))
            new.append(st.replaced(chains[i].state, place, token))
        scores = self.score_states(new, problem.target)
        _add(pool, new, scores)
        for (i, _), y, score in zip(picked, new, scores):
            changed = y != chains[i].state
            chains[i].state, chains[i].score = y, score
            yield i, "gibbs", True, changed

    def _mlm_replace(self, chains: list[Chain], group: list[tuple[int, str]], problem: Problem, temperature: float,
                     pool: dict[State, float]):
        """Propose a free token from the masked LM's top K; accept with Metropolis-Hastings."""
        picked = []
        for i, _ in group:
            places = st.replace_places(chains[i].state)
            if not places:
                yield i, "mlm_replace", False, False
            else:
                picked.append((i, chains[i].rng.choice(places)))
        if not picked:
            return
        logprobs = self.lm.masked_logprobs([st.token_ids(chains[i].state) for i, _ in picked], [p.flat for _, p in picked])
        proposals = []
        for (i, place), row in zip(picked, logprobs):
            x = chains[i].state
            current = x[place.seg].tokens[place.k]
            candidates = self._top(row, self._allowed(problem, place.flat), None)
            if current not in candidates:
                yield i, "mlm_replace", False, False
                continue
            lq = log_softmax(row[candidates].tolist())
            pick = _draw(chains[i].rng, lq)
            if candidates[pick] == current:
                yield i, "mlm_replace", True, False
                continue
            proposals.append((i, st.replaced(x, place, candidates[pick]), lq[candidates.index(current)] - lq[pick]))
        if not proposals:
            return
        scores = self.score_states([y for _, y, _ in proposals], problem.target)
        _add(pool, [y for _, y, _ in proposals], scores)
        for (i, y, log_q), score in zip(proposals, scores):
            chain = chains[i]
            log_a = (score - chain.score) / temperature + log_q
            if log_a >= 0 or chain.rng.random() < math.exp(log_a):
                chain.state, chain.score = y, score
                yield i, "mlm_replace", True, True
            else:
                yield i, "mlm_replace", False, False


def _count(result: Result, accepted: bool, changed: bool) -> None:
    result.proposals += 1
    result.accepted += accepted
    result.changed += changed


def _add(pool: dict[State, float], states: Sequence[State], scores: Sequence[float]) -> None:
    for state, score in zip(states, scores):
        if score > pool.get(state, -math.inf):
            pool[state] = score


def _draw(rng: random.Random, log_probs: Sequence[float]) -> int:
    u = rng.random()
    total = 0.0
    for i, lp in enumerate(log_probs):
        total += math.exp(lp)
        if u < total:
            return i
    return len(log_probs) - 1


def describe(result: Result) -> dict[str, Any]:
    """The search statistics an output record carries."""
    return {
        "proposals": result.proposals,
        "accepted": result.accepted,
        "changed": result.changed,
        "seconds": round(result.seconds, 3),
    }
