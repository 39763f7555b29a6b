"""Clause splitting as SPACES does it (algorithms.md 2.2 step 1): cut at ``\\n 。 ； ： ，`` (and the
other sentence ends ``！？``), punctuation kept at the end of each clause, so that joining the clauses
gives back the text exactly (minus line breaks)."""

from __future__ import annotations

import re

_CUT = re.compile(r"[^\n。；：，！？;:,!?]*[。；：，！？;:,!?]*|\n")


def split_clauses(text: str) -> list[str]:
    """The clauses of ``text`` in order; line breaks end a clause and are dropped, empty pieces are
    skipped, closing quotes and brackets stay with the clause they close."""
    out: list[str] = []
    for piece in _CUT.findall(text):
        if not piece or piece == "\n" or not piece.strip():
            continue
        if out and piece[0] in "”’」』）)】" and not out[-1].endswith("\n"):
            # a closing quote after 。 belongs to the clause it closes
            n = len(piece) - len(piece.lstrip("”’」』）)】"))
            out[-1] += piece[:n]
            piece = piece[n:]
            if not piece.strip():
                continue
        out.append(piece)
    return out
