"""``textgen serve``: warm models behind an HTTP API (docs/serve.md).

* ``served.Served``: the models a server was started with, loaded once through the runner, and
  the checked jobs of requests (``Runner.job``: the checks of a local run);
* ``batcher.Batcher``: dynamic batching, one worker thread per model;
* ``app.build_app``: the FastAPI app (``/v1/tasks/{task}``, ``/v1/models``, ``/health``), behind
  a guard for the token and the body size; ``openai``: ``/v1/completions`` and
  ``/v1/chat/completions``;
* ``run``: binding (loopback unless told otherwise) and running it under uvicorn, with a graceful
  shutdown on SIGTERM.

FastAPI and uvicorn are the ``serve`` extra (``pip install 'textgen-zh[serve]'``); nothing here is
imported by ``textgen`` itself or by the other commands.
"""

from __future__ import annotations
