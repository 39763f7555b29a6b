"""``textgen title --server URL ARGS...`` as a process: ``python tests/serve_client.py URL ARGS...``.

Until the task commands have the ``--server`` flag (cli/options.py, cli/tasks.py), the command's own
steps run with cli/client.py's ``run_remote`` in place of the runner, as the lines to add to
cli/tasks.py do; once they have it, this is the real command. With ``TEXTGEN_REPORT_TORCH=1`` the
last line on stderr says whether torch was imported (the client must not import it).
"""

from __future__ import annotations

import atexit
import inspect
import os
import sys

if os.environ.get("TEXTGEN_REPORT_TORCH"):
    atexit.register(lambda: print("TORCH-IMPORTED" if "torch" in sys.modules else "NO-TORCH", file=sys.stderr))

from textgen.cli import tasks  # noqa: E402

URL, ARGS = sys.argv[1], sys.argv[2:]


def run_task(name, v):
    """``cli.tasks.run_task`` with the server in place of the runner."""
    from textgen.cli.client import run_remote
    from textgen.cli.console import fail, set_quiet
    from textgen.cli.output import OutputError, Sink, StopGuard

    tasks._check_usage(v)
    set_quiet(v["quiet"])
    v["server"] = URL
    options = {o: v[o] for o in tasks.TASKS[name].options if v[o] is not None}
    try:
        tasks.TASKS[name].checked(options)
    except ValueError as exc:
        fail(str(exc))
    sink = Sink(v["format"].value, StopGuard(), output=v["output"], output_dir=v["output_dir"], resume=v["resume"])
    try:
        sink.prepare(v["input"], reads_stdin=v["text"] is None and v["input"] is None)
        records = tasks._records(v, exclude=sink.own_files(), on_skip=print)
        if isinstance(records, list):
            sink.check_targets(records)
    except OutputError as exc:
        sink.close()
        fail(str(exc))
    return run_remote(name, records, sink, v, options=options, decoding=tasks.decoding_overrides(v))


if "server" in inspect.signature(tasks.task_command("title")).parameters:
    sys.argv = ["textgen", "title", "--server", URL, *ARGS]
else:
    tasks.run_task = run_task
    sys.argv = ["textgen", "title", *ARGS]
from textgen.cli.app import main  # noqa: E402

main()
