"""Search-based generation as a task: keywords, infill or rewrite by MCMC (``textgen.search``).

Not an autoregressive decode, so ``generate`` searches instead of decoding: each record is searched on its own
(its chains batched together), which also makes a seed give the same output whatever the batch.
Decoding settings that apply: ``temperature`` (of the chains), ``top_k`` (candidates per
proposal; 0 = the whole vocabulary), ``num_return_sequences`` (distinct best sentences),
``max_new_tokens`` (most tokens added) and ``seed``; the others do not apply to search.

A JSONL record may give its keywords as a list in ``"keywords"`` (then no ``"text"`` is needed).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textgen.io import Record
from textgen.output import Candidate
from textgen.search.problems import MODES
from textgen.tasks.base import OnText, Task

if TYPE_CHECKING:
    from textgen.decoding.config import DecodingConfig
    from textgen.output import Output
    from textgen.search import Searcher, Step

HELP = """Generate by searching: a sentence holding keywords, blanks filled, or a text reworded.

Markov chain Monte Carlo over whole sentences (CGMH insert/delete/replace moves, masked-LM Gibbs sampling) instead of left-to-right decoding; the most fluent sentence any chain visits is printed.

\b
keywords (the default): a sentence with every keyword, in the given order;
keywords are separated by spaces, commas or 、, or come as a JSONL list:
  textgen search "图书馆 开放 市民"
  echo '{"id": 1, "keywords": ["春节", "高铁", "返乡"]}' > kw.jsonl
  textgen search -i kw.jsonl --format jsonl -n 3

\b
infill: fill the blanks, keep every other character as it is;
[MASK] or ＿ is one character, __ is a blank of any length:
  textgen search --mode infill "今天天气很＿，我们去公园__。"

\b
rewrite: the same meaning in other words; --keep pins words:
  textgen search --mode rewrite --keep 图书馆 "市图书馆新馆今天向读者开放。"

Search settings: --steps and --chains (proposals per chain, chains per input), --temperature and --anneal (cooling to this temperature by the last step), --top-k (candidates per proposal; 0 = the whole vocabulary), --gamma, -n (distinct sentences), --max-new-tokens (most tokens added), --seed (same seed, same output), --trace FILE (every step as JSON lines)."""


class SearchTask(Task):
    name = "search"
    kind = "causal"
    summary = HELP
    default_model = "mini-zh-lm"
    # What search reads of the decoding settings (the command offers only these flags).
    decoding_fields = ("temperature", "top_k", "num_return_sequences", "max_new_tokens", "seed")
    # Temperature 1 samples the target itself. 8 candidates per proposal (the reference code uses
    # 64) and 4 chains x 32 steps: on csl-kg-dev as fluent as 16 candidates, at half the cost.
    defaults: ClassVar[dict[str, Any]] = {"do_sample": True, "temperature": 1.0, "top_k": 8, "max_new_tokens": 24}
    options: ClassVar[dict[str, Any]] = {
        "mode": "keywords",
        "steps": 32,
        "chains": 4,
        "gamma": 0.8,
        "anneal": 0.0,
        "keep": "",
        "trace": "",
        "proposer": "",
    }
    option_help: ClassVar[dict[str, str]] = {
        "mode": "What to search for: a sentence with the keywords, the blanks filled, or a rewording.",
        "steps": "Proposals per chain.",
        "chains": "Chains per input, run together in one batch; the best sentence of all is returned.",
        "gamma": "Fluency exponent: the target is p(sentence)^gamma; below 1 favours longer sentences.",
        "anneal": "Simulated annealing: cool from --temperature to this temperature by the last step; 0 = off.",
        "keep": "rewrite: words to keep as they are (separated by spaces, commas or 、).",
        "trace": "Append every chain step (step, move, accepted, text, log score) to this JSONL file.",
        "proposer": "A BERT-family model that proposes the candidates when --model is another kind of causal LM "
        "(default: the search task's default model); with a BERT-family --model, that model scores and this one proposes.",
    }
    option_choices: ClassVar[dict[str, tuple[str, ...]]] = {"mode": MODES}

    @classmethod
    def check_option(cls, name: str, value: Any) -> Any:
        """Types as every task, plus the ranges: a bad value is a usage error before any model loads."""
        value = super().check_option(name, value)
        low = {"steps": 1, "chains": 1, "anneal": 0.0}.get(name)
        if (low is not None and value < low) or (name == "gamma" and not value > 0):
            raise ValueError(f"{name} must be {'> 0' if name == 'gamma' else f'>= {low}'}, not {value!r}")
        return value

    def searcher(self) -> Searcher:
        """The searcher for the ``proposer`` option (loaded once per model and proposer)."""
        from textgen.search import from_adapter

        proposer = self.settings["proposer"]
        return self.model.cached(f"searcher\x00{proposer}", lambda: from_adapter(self.adapter, proposer, default_proposer=self.default_model))

    def run(self, records: list[Record], config: DecodingConfig, **kw: Any) -> list[Output]:
        return super().run([_keywords_record(rec) for rec in records], config, **kw)

    def generate(self, records: list[Record], config: DecodingConfig, on_text: OnText | None = None) -> list[Output]:
        from textgen.search import SearchInputError, Settings, split_keywords

        opts = self.settings
        settings = Settings(
            steps=opts["steps"], chains=opts["chains"], candidates=config.top_k, temperature=config.temperature,
            anneal=opts["anneal"], outputs=config.num_return_sequences,
        )
        searcher = self.searcher()
        out = []
        for rec in records:
            source = rec.fields.get("keywords") if opts["mode"] == "keywords" else None
            source = source if isinstance(source, (list, str)) else rec.text or ""
            key = f"{config.seed}\x00{opts['mode']}\x00{json.dumps(source, ensure_ascii=False)}" if config.seed is not None else secrets.token_hex(8)
            try:
                with _Trace(opts["trace"], rec.id, searcher) as trace:
                    result = searcher.search(
                        opts["mode"], source, settings, keep=split_keywords(opts["keep"]), gamma=opts["gamma"],
                        max_new=config.max_new_tokens, key=key, on_step=trace.write if trace.file else None,
                    )
            except SearchInputError as exc:
                out.append(self.error(rec, str(exc)))
                continue
            out.append(self._record(rec, result, settings))
        return out

    def _record(self, rec: Record, result: Any, settings: Any) -> Output:
        from textgen.search.sampler import describe

        if not result.outputs:
            return self.error(rec, f"no {self.settings['mode']} result in {settings.steps} steps; raise --steps or --temperature")
        warnings = list(result.warnings)
        if len(result.outputs) < settings.outputs:
            warnings.append(f"only {len(result.outputs)} distinct sentences found; raise --steps or --chains for more")
        candidates = [Candidate(text, round(score, 4)) for text, score in result.outputs]
        return self.output(rec, candidates, warnings, search={"mode": self.settings["mode"], **describe(result)})


def _keywords_record(rec: Record) -> Record:
    """A JSONL record with a ``"keywords"`` field (a list, or one string to split) needs no text."""
    keywords = rec.fields.get("keywords")
    if rec.error is None or rec.text is not None or keywords is None:
        return rec
    if isinstance(keywords, str) or (isinstance(keywords, list) and all(isinstance(k, str) for k in keywords)):
        return Record(rec.id, "", warnings=rec.warnings, source=rec.source, fields=rec.fields)
    return Record(rec.id, None, error="field 'keywords' must be a list of strings", warnings=rec.warnings,
                  source=rec.source, fields=rec.fields)


class _Trace:
    """Appends one JSON line per chain step to the ``--trace`` file (nothing when it is empty)."""

    def __init__(self, path: str, rid: Any, searcher: Searcher) -> None:
        self.path = Path(path).expanduser() if path else None
        self.rid = rid
        self.searcher = searcher
        self.file: Any = None

    def __enter__(self) -> _Trace:
        if self.path is not None:
            self.file = self.path.open("a", encoding="utf-8")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()

    def write(self, step: Step) -> None:
        if self.file is None:
            return
        row = {
            "id": self.rid, "chain": step.chain, "step": step.step, "move": step.move, "accepted": step.accepted,
            "changed": step.changed, "text": self.searcher.render(step.state), "log_score": round(step.score, 4),
            "temperature": round(step.temperature, 4),
        }
        self.file.write(json.dumps(row, ensure_ascii=False) + "\n")
