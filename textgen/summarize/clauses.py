"""Clause splitting as SPACES does it (algorithms.md 2.2 step 1): cut at ``\\n 。 ； ： ，`` (and the
other sentence ends ``！？``, plus their ASCII forms), punctuation kept at the end of each clause, so
that joining the clauses gives back the text exactly (minus line breaks).

Two refinements over the reference ``text_segmentate``:

* an ASCII ``,`` or ``:`` between two digits does not cut (``1,841,134元``, ``10:30``): a number
  stays one piece, so it is never extracted half;
* a run longer than ``max_chars`` without any of those marks (a text with no punctuation at all,
  a table flattened into one line) is cut into pieces of at most ``max_chars`` characters, at a
  softer mark (``、`` a space, a closing bracket) where one is near. Every clause is then encoded
  alone within the model's window and scored, however the document is written.
"""

from __future__ import annotations

import re

MAX_CHARS = 256
_ENDS = "。；：，！？;:,!?"
_CUT = re.compile(rf"[^\n{_ENDS}]*[{_ENDS}]*|\n")
_CLOSERS = "”’」』）)】"
_SOFT = "、 \t）)】」』”’》"
_NUMBER_JOIN = re.compile(r"\d[,:]$")


def split_clauses(text: str, max_chars: int = MAX_CHARS) -> list[str]:
    """The clauses of ``text`` in order; line breaks end a clause and are dropped, empty pieces are
    skipped, closing quotes and brackets stay with the clause they close."""
    out: list[str] = []
    glue = False  # the previous piece ended with a digit and an ASCII , or : and this one may continue the number
    for piece in _CUT.findall(text):
        if not piece or piece == "\n":
            glue = False
            continue
        if not piece.strip():
            continue
        if glue and piece[0].isdigit():
            out[-1] += piece
        elif out and piece[0] in _CLOSERS:
            # a closing quote after 。 belongs to the clause it closes
            n = len(piece) - len(piece.lstrip(_CLOSERS))
            out[-1] += piece[:n]
            if piece[n:].strip():
                out.append(piece[n:])
        else:
            out.append(piece)
        glue = bool(_NUMBER_JOIN.search(out[-1]))
    return [part for clause in out for part in _cut_long(clause, max_chars)]


def _cut_long(clause: str, max_chars: int) -> list[str]:
    """``clause`` in pieces of at most ``max_chars`` characters, each cut after the last soft mark
    in the second half of its window when there is one."""
    pieces = []
    while len(clause) > max_chars:
        window = clause[:max_chars]
        cut = max(window.rfind(ch) for ch in _SOFT) + 1
        if cut <= max_chars // 2:
            cut = max_chars
        pieces.append(clause[:cut])
        clause = clause[cut:]
    if clause.strip():
        pieces.append(clause)
    elif pieces:
        pieces[-1] += clause
    return pieces
