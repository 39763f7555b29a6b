"""How each kind of model is asked the three things QA generation needs.

``QAGenerator`` (``textgen.qa.generator``) runs the same pipeline on any model: sample answers that
are spans of a window, decode the question of each answer, score the pair by a round trip. What
differs between models is only how those three requests are put:

* ``UniLMDriver``, textgen's own backbones: the window behind the task's source prefix (``问答：``);
  the question decoded after the target prefix ``answer [SEP]`` (``prefill.TargetPrefix``); the
  round trip as the reader's log-probability of ``answer [SEP]`` after ``阅读：`` + window and the
  question (``check.answer_log_prob``).
* ``ChatDriver``, a chat LLM (``textgen.models.chat``): the prompts ``qa`` (choose an answer),
  ``qa_question`` (window and answer -> question) and ``qa_check`` (window and question -> answer)
  rendered with the model's chat template; the round trip as the log-probability of the answer and
  the end of the turn after the ``qa_check`` prompt (``check.continuation_log_prob``).

Either way every answer is a span of the window by construction: the span constraint is built from
the window's own text (``spans.answer_constraint``), never from the prompt around it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from textgen.qa.check import answer_log_prob, continuation_log_prob
from textgen.qa.prefill import TargetPrefix
from textgen.qa.spans import DecodedSpelling, Spelling

if TYPE_CHECKING:
    from textgen.prompts import Prompt

ANSWER_TOKENS = 24  # the answer length the model learned (training cut answers at 24 tokens)


class Locator(Protocol):
    def locate(self, adapter: Any, ids: Sequence[int]) -> tuple[int, int] | None: ...


class QADriver(Protocol):
    """What ``QAGenerator`` asks of a model (``adapter`` is what ``generate`` drives)."""

    adapter: Any

    def answer_inputs(self, windows: Sequence[str]) -> list[list[int]]:
        """The prompts from which answers (spans of each window) are sampled."""

    def spelling(self, window: str) -> Locator:
        """Finds the span of ``window`` that a sampled answer's tokens spell."""

    def question_inputs(self, windows: Sequence[str], answers: Sequence[str]) -> tuple[Any, list[list[int]]]:
        """What to decode the questions with (an adapter for ``generate``) and its inputs."""

    def check(self, windows: Sequence[str], answers: Sequence[str], questions: Sequence[Sequence[int]]) -> list[float]:
        """The round trip: per pair, the mean log-probability per token of the answer given the
        window and the question (the question as the token ids its decoder wrote)."""


class UniLMDriver:
    """textgen's UniLM backbones, trained on ``问答：`` (answer [SEP] question) and ``阅读：``
    (question [SEP] answer); ``qa_prefix`` and ``check_prefix`` are the model's source prefixes
    (empty for a model trained without them)."""

    def __init__(self, adapter: Any, *, qa_prefix: str = "", check_prefix: str = "") -> None:
        self.adapter = adapter
        self.qa_prefix = qa_prefix
        self.check_prefix = check_prefix

    def answer_inputs(self, windows: Sequence[str]) -> list[list[int]]:
        return [self.adapter.encode(self.qa_prefix + w) for w in windows]

    def spelling(self, window: str) -> Spelling:
        return Spelling(self.adapter, window)

    def _answer_ids(self, answers: Sequence[str]) -> list[list[int]]:
        return [self.adapter.tokenizer.encode(a)[:ANSWER_TOKENS] for a in answers]

    def question_inputs(self, windows: Sequence[str], answers: Sequence[str]) -> tuple[TargetPrefix, list[list[int]]]:
        sep = self.adapter.tokenizer.sep_id
        prefixed = TargetPrefix(self.adapter, [[*a, sep] for a in self._answer_ids(answers)])
        return prefixed, self.answer_inputs(windows)

    def check(self, windows: Sequence[str], answers: Sequence[str], questions: Sequence[Sequence[int]]) -> list[float]:
        readers = [self.adapter.encode(self.check_prefix + w) for w in windows]
        return answer_log_prob(self.adapter, readers, questions, self._answer_ids(answers))


class ChatDriver:
    """A chat LLM (``textgen.models.chat``) through the task's ``qa``, ``qa_question`` and
    ``qa_check`` prompts (``prompts``: key -> ``Prompt``)."""

    def __init__(self, adapter: Any, prompts: Mapping[str, Prompt]) -> None:
        self.adapter = adapter
        self.prompts = prompts

    def answer_inputs(self, windows: Sequence[str]) -> list[list[int]]:
        return [self.adapter.encode_prompt(self.prompts["qa"], text=w) for w in windows]

    def spelling(self, window: str) -> DecodedSpelling:
        return DecodedSpelling(window)

    def question_inputs(self, windows: Sequence[str], answers: Sequence[str]) -> tuple[Any, list[list[int]]]:
        question = self.prompts["qa_question"]
        return self.adapter, [self.adapter.encode_prompt(question, text=w, answer=a) for w, a in zip(windows, answers)]

    def check(self, windows: Sequence[str], answers: Sequence[str], questions: Sequence[Sequence[int]]) -> list[float]:
        decode = self.adapter.decode
        reader = self.prompts["qa_check"]
        prompts = [self.adapter.encode_prompt(reader, text=w, question=decode(q)) for w, q in zip(windows, questions)]
        end = (self.adapter.turn_end_ids or self.adapter.eos_token_ids)[0]  # answers exactly this, then ends its turn
        targets = [[*self.adapter.source_ids(a), end] for a in answers]
        return continuation_log_prob(self.adapter, prompts, targets)


def driver_for(adapter: Any, source_prefix: Mapping[str, str], prompts: Mapping[str, Prompt]) -> QADriver:
    """The driver of ``adapter`` (``source_prefix``: a UniLM model's, from its textgen.json;
    ``prompts``: a chat model's); ValueError, said before any record, for a model that cannot do QA."""
    from textgen.models.adapters import BackboneSeq2Seq
    from textgen.models.chat import is_chat

    if is_chat(adapter):
        return ChatDriver(adapter, prompts)
    if isinstance(adapter, BackboneSeq2Seq):
        return UniLMDriver(adapter, qa_prefix=source_prefix.get("qa", ""), check_prefix=source_prefix.get("qa_check", ""))
    raise ValueError(f"qa needs a UniLM model in textgen's BERT format (trained on answer [SEP] question) or a chat "
                     f"model (a causal LM whose tokenizer has a chat template); {adapter.name} is a "
                     f"{type(adapter).__name__}")
