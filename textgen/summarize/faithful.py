"""What a summary says that its document does not: numbers and web addresses.

A generator, small or large, can turn 十八万元 into 十八大 or make up a URL; a summary that states a
figure or an address the document lacks is worse than no summary. ``invented`` lists them, so the
summarize task can write the record again under the copy constraint, or fall back to the extraction.

Counted as numbers: runs of digits (ASCII or full-width, with decimal points and thousands
separators, as ``textgen.evaluation.metrics.numbers``) and runs of two or more Chinese numerals
(十八, 十八万, 二〇二四); a run must occur as a whole run of the document. Single numerals (一, 万)
are left alone: they are parts of ordinary words (一些, 万一).
"""

from __future__ import annotations

import re

from textgen.evaluation.metrics import numbers

_CHINESE_NUMBER = re.compile("[零〇一二两三四五六七八九十百千万亿]{2,}")
_URL = re.compile(r"(?:https?://|www\.)[\w\-./?%&=:#~+]+|[\w\-]+(?:\.[\w\-]+)*\.(?:com|cn|net|org|gov|edu)(?:/[\w\-./?%&=]*)?",
                  re.ASCII | re.IGNORECASE)


def invented(summary: str, document: str) -> list[str]:
    """The numbers and web addresses of ``summary`` that ``document`` does not hold, in order."""
    known_numbers = set(numbers(document))
    known_chinese = set(_CHINESE_NUMBER.findall(document))
    known_urls = {u.lower() for u in _URL.findall(document)}
    found = [n for n in numbers(summary) if n not in known_numbers]
    found += [n for n in _CHINESE_NUMBER.findall(summary) if n not in known_chinese]
    found += [u for u in _URL.findall(summary) if u.lower() not in known_urls]
    return found
