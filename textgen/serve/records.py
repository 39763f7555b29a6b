"""A request's records: the JSON objects of ``POST /v1/tasks/{task}``, read as JSONL lines are.

Each item of ``"records"`` becomes a ``textgen.io.Record`` by the rule a ``.jsonl`` input line
follows (``textgen.io``): the text from ``"text"``, the id from ``"id"`` (else its position from
1, keeping its JSON type), the other fields kept for the task (search's ``"keywords"``, qa's
``"answer"``); an item that is not an object, has no usable text or a bad id is an error record,
answered in its place like any other. Repeated ids are made unique as in a batch file
(``unique_ids``). A test checks that both readings agree.
"""

from __future__ import annotations

import json
import math
from typing import Any

from textgen.io import Record, make_record, unique_ids


def request_record(obj: Any, n: int) -> Record:
    """The record of the ``n``-th (from 1) item of a request (``textgen.io``'s JSONL rule)."""
    where = f"record {n}"
    if not isinstance(obj, dict):
        return Record(n, None, error=f"{where}: not a JSON object")
    rid = obj.get("id")
    if rid is None:
        rid = n
    elif not isinstance(rid, (str, int, float)) or (isinstance(rid, float) and not math.isfinite(rid)):
        return Record(n, None, error=f"{where}: the id must be a string or a number, not {json.dumps(rid)}")
    text = obj.get("text")
    if not isinstance(text, str):
        problem = "no 'text' field" if "text" not in obj else "field 'text' is null" if text is None else "field 'text' is not a string"
        return Record(rid, None, error=f"{where}: {problem}", fields=obj)
    return make_record(rid, text, fields=obj)


def request_records(items: list[Any]) -> list[Record]:
    """The records of a request's ``"records"``, in order, with unique ids."""
    return list(unique_ids([request_record(obj, n) for n, obj in enumerate(items, 1)]))
