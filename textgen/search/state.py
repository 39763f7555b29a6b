"""A sentence being searched: segments of tokens, some fixed by the user, some the sampler edits.

A state is a tuple of ``Segment`` s, each of one kind:

* ``LOCKED``: a keyword, a ``--keep`` word or the text around infill blanks. Never touched, never
  split (no insertion inside it), and rendered exactly as the user wrote it.
* ``FREE``: tokens the sampler inserts, deletes and replaces (CGMH moves). A free segment may be
  empty: it still marks a place where tokens may be inserted.
* ``FIXED``: a fixed-length blank (``[MASK]`` or ``＿``): one single-character token per blank
  character, replaced by Gibbs sampling with the masked LM, never inserted into or deleted.

States are immutable and hashable, so chains can share them and tests can count visits.

Move bookkeeping for exact Metropolis-Hastings: the same sentence must be reachable by exactly one
(move, position, token) path, otherwise the proposal probabilities would have to sum over paths.
Inserting token ``c`` anywhere inside a run of free ``c`` s gives the same state, and so does deleting
any token of such a run. Both moves are therefore *canonical*: a token is inserted only where its
left neighbour is not a free token equal to it, and only the first token of a free run is deleted.
Every deletion is then the exact reverse of one insertion and vice versa.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

LOCKED, FREE, FIXED = "locked", "free", "fixed"


@dataclass(frozen=True)
class Segment:
    kind: str
    tokens: tuple[int, ...]
    text: str = ""  # LOCKED only: what the user wrote, rendered verbatim


State = tuple[Segment, ...]


class Place(NamedTuple):
    """A token position (``k`` < len) or an insertion slot (``k`` <= len) inside segment ``seg``;
    ``flat`` is the same place counted over the whole token sequence."""

    flat: int
    seg: int
    k: int


def token_ids(state: State) -> list[int]:
    return [t for s in state for t in s.tokens]


def free_count(state: State) -> int:
    """Tokens the sampler added (the free segments' tokens)."""
    return sum(len(s.tokens) for s in state if s.kind == FREE)


def _places(state: State, kind: str, slots: bool) -> list[Place]:
    out = []
    flat = 0
    for j, seg in enumerate(state):
        if seg.kind == kind:
            out += [Place(flat + k, j, k) for k in range(len(seg.tokens) + slots)]
        flat += len(seg.tokens)
    return out


def replace_places(state: State) -> list[Place]:
    """Free tokens (replace moves)."""
    return _places(state, FREE, slots=False)


def fixed_places(state: State) -> list[Place]:
    """Fixed-blank tokens (Gibbs moves)."""
    return _places(state, FIXED, slots=False)


def insert_places(state: State, max_free: int) -> list[Place]:
    """Insertion slots: every slot of every free segment, none once ``max_free`` tokens were added."""
    if free_count(state) >= max_free:
        return []
    return _places(state, FREE, slots=True)


def delete_places(state: State) -> list[Place]:
    """Free tokens that may be deleted: the first of each run of equal free tokens (canonical)."""
    return [p for p in replace_places(state) if p.k == 0 or state[p.seg].tokens[p.k - 1] != state[p.seg].tokens[p.k]]


def left_free_neighbour(state: State, place: Place) -> int | None:
    """The free token just left of an insertion slot in its segment; inserting the same token
    there is not canonical (the run's first slot produces that state)."""
    return state[place.seg].tokens[place.k - 1] if place.k > 0 else None


def _with_tokens(state: State, j: int, tokens: tuple[int, ...]) -> State:
    seg = state[j]
    return (*state[:j], Segment(seg.kind, tokens, seg.text), *state[j + 1 :])


def replaced(state: State, place: Place, token: int) -> State:
    t = state[place.seg].tokens
    return _with_tokens(state, place.seg, (*t[: place.k], token, *t[place.k + 1 :]))


def inserted(state: State, place: Place, token: int) -> State:
    t = state[place.seg].tokens
    return _with_tokens(state, place.seg, (*t[: place.k], token, *t[place.k :]))


def deleted(state: State, place: Place) -> State:
    t = state[place.seg].tokens
    return _with_tokens(state, place.seg, (*t[: place.k], *t[place.k + 1 :]))


def repeats_a_word(state: State, words: frozenset[int]) -> bool:
    """Whether a free token that is a word (``words``: multi-character tokens) occurs twice in the
    sentence: 图书馆图书馆, or a keyword said again. Locked tokens alone never count, so a user's
    own repetition stays allowed."""
    ids = token_ids(state)
    return any(t in words and ids.count(t) > 1 for seg in state if seg.kind == FREE for t in seg.tokens)


def render(state: State, decode: Callable[[Sequence[int]], str]) -> str:
    """The text of a state: locked segments as written, the others decoded. A space separates two
    segments only where both sides are latin letters or digits (``GPU`` + ``加速`` stays glued)."""
    out = ""
    for seg in state:
        piece = seg.text if seg.kind == LOCKED else decode(seg.tokens)
        if out and piece and _wordlike(out[-1]) and _wordlike(piece[0]):
            out += " "
        out += piece
    return out


def _wordlike(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()
