"""The output record of every task, built in one place and serialized in one place.

An ``Output`` answers one input record: its id, the task and model, the candidates (best first,
each a text and a score), warnings, an error (then no candidates), and what a task adds:

* ``pairs``: question-answer pairs (``textgen qa``), instead of candidates;
* ``extras``: task-specific fields, JSON-ready (``extraction`` of a summary or of a long article's
  title, ``method`` of a chosen title, ``search`` statistics);
* ``made_with``: what made it, JSON-ready (the command line attaches ``{"version", "settings"}``:
  textgen's version, the decoding fields that differ from neutral and the task options in force),
  written as ``"textgen"``; None writes nothing.

``to_dict`` is the JSON Lines form that batch files, ``--resume`` and the server share:
``{"id", "outputs": [{"text", "score", ...}], "model", "task", "warnings"?, "error"?, ..., "textgen"?}``
(``"pairs"`` in place of ``"outputs"`` for QA); ``from_dict`` reads it back, and ``format_text``
is the plain-text form for people and pipes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

RecordId = Any  # str | int, as the input gave it


@dataclass
class Candidate:
    """One output text: its score and, for some tasks, where it came from (``clause``: the index
    of the article clause a chosen title is)."""

    text: str
    score: float | None
    clause: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text, "score": self.score}
        if self.clause is not None:
            out["clause"] = self.clause
        return out


@dataclass(frozen=True)
class QAPair:
    """A question-answer pair; ``start`` is the answer's offset in the passage."""

    question: str
    answer: str
    start: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"question": self.question, "answer": self.answer, "start": self.start, "score": round(self.score, 4)}


@dataclass
class Output:
    """What a task returns for one input record."""

    id: RecordId
    task: str
    model: str
    candidates: list[Candidate] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    pairs: list[QAPair] | None = None  # question-answer pairs (qa); None for the other tasks
    extras: dict[str, Any] = field(default_factory=dict)
    made_with: dict[str, Any] | None = None  # written as "textgen": {"version", "settings"}

    @property
    def text(self) -> str:
        """The best candidate's text (``""`` for a failed record or one without candidates)."""
        return self.candidates[0].text if self.candidates else ""

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id}
        if self.pairs is not None:
            out["pairs"] = [p.to_dict() for p in self.pairs]
        else:
            out["outputs"] = [c.to_dict() for c in self.candidates]
        out["model"], out["task"] = self.model, self.task
        if self.error is not None:
            out["error"] = self.error
        if self.warnings:
            out["warnings"] = list(self.warnings)
        out.update(self.extras)
        if self.made_with is not None:
            out["textgen"] = self.made_with
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Output:
        """An output read back from its JSON form (a server's answer, a resumed file)."""
        known = {"id", "outputs", "pairs", "model", "task", "error", "warnings", "textgen"}
        pairs = data.get("pairs")
        return cls(
            id=data.get("id"),
            task=str(data.get("task", "")),
            model=str(data.get("model", "")),
            candidates=[Candidate(c.get("text", ""), c.get("score"), c.get("clause")) for c in data.get("outputs") or []],
            warnings=list(data.get("warnings") or []),
            error=data.get("error"),
            pairs=[QAPair(p["question"], p["answer"], p["start"], p["score"]) for p in pairs] if pairs is not None else None,
            extras={k: v for k, v in data.items() if k not in known},
            made_with=data.get("textgen"),
        )


def format_jsonl(out: Output) -> str:
    """One output record as one JSON line (UTF-8 kept readable)."""
    return json.dumps(out.to_dict(), ensure_ascii=False) + "\n"


def format_text(out: Output, label: str | None = None) -> str:
    """The output texts for people and pipes: a single best output on one line; an n-best list
    numbered, one per line, closed by a blank line. A failed record prints an empty line so that
    line-per-record output stays aligned with its input (the reason goes to stderr).
    Question-answer pairs print as ``问：`` / ``答：`` lines, the record's block closed by a blank
    line. ``label`` (the record's id, for a directory run) starts each line, followed by a tab, so
    every line says where it comes from."""
    if out.pairs:
        lines, block = [line for p in out.pairs for line in (f"问：{p.question}", f"答：{p.answer}")], True
    elif len(out.candidates) <= 1:
        lines, block = [out.text], False
    else:
        lines, block = [f"{i}. {c.text}" for i, c in enumerate(out.candidates, 1)], True
    if label is not None:
        lines = [f"{label}\t{line}" for line in lines]
    return "".join(line + "\n" for line in lines) + ("\n" if block else "")
