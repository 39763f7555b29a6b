"""`textgen eval`: score models on your data.

* ``eval lm``: bits per character (causal mode) and masked-token accuracy (bidirectional mode) of
  a BERT-family model on plain texts (``textgen.evaluation.lm``).
* ``eval title``: generate a title for every record with the title task and score it against the
  reference with ROUGE-1/2/L F1 and BLEU-4, in characters or jieba words
  (``textgen.evaluation.metrics``).
* ``eval qa`` (``qa.py``): question-answer pairs against reading-comprehension data.
* ``eval search`` (``search.py``): keyword-to-sentence search against reference sentences.
* ``eval summarize`` (``summarize.py``): summaries against references, char ROUGE and the
  CAIL2020 score, beside lead/last/TextRank/oracle baselines.

Results go to the terminal as a table, or as one JSON object with ``--format json``. Every number
comes with what it was counted in (unit, characters, tokens) and how. Input problems are one line
on stderr and exit status 2. Heavy imports (torch, the metric libraries) happen inside the command
bodies, so ``textgen eval --help`` stays instant.
"""

from __future__ import annotations

import typer

from .lm import lm
from .qa import qa
from .search import search
from .summarize import summarize
from .title import title

app = typer.Typer(help="Evaluate models: language-model bits per character, title ROUGE/BLEU, QA pairs, summaries.", no_args_is_help=True)
for _command in (lm, title, qa, search, summarize):
    app.command(_command.__name__)(_command)
