"""Question-answer pairs from a passage: the algorithm behind ``textgen qa`` (docs/qa.md).

Two-stage UniLM generation (algorithms.md 3): an answer is sampled from the passage, then its
question is decoded. The modules, in the order a passage meets them:

* ``script``: traditional passages read in simplified characters, offsets kept;
* ``windows``: the training windows around an answer, and tiles covering a long passage;
* ``spans``: answers constrained to one piece of the window (text-level copy), located in it;
* ``prefill``: decoding the question after the target prefix ``answer [SEP]``;
* ``check``: the round trip, the reader's log-probability of the answer given the question;
* ``pairs``: pairs, duplicates, question marks;
* ``drivers``: how a UniLM model or a chat LLM is asked for answers, questions and round trips;
* ``generator``: the pipeline (``QAGenerator``);
* ``rule``: the rule baseline; ``evaluate``: scoring against reading-comprehension data.

``windows``, ``spans``, ``prefill``, ``check``, ``drivers`` and ``generator`` import torch; the task imports
them only when it generates, so ``--help`` stays instant.
"""
