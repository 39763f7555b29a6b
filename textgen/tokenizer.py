"""Characters-plus-words tokenizer for Chinese (WoBERT style, algorithms.md section 0).

Two modes share one class:

* ``word``: jieba cuts the text (HMM off); a jieba word that is in the vocabulary stays whole,
  anything else falls back to the BERT character/WordPiece rules. Word units shorten sequences
  and are exactly where the large-vocabulary continuation problem (token healing) shows up.
* ``char``: the plain bert-base-chinese rules, so any Chinese BERT ``vocab.txt`` works.

The vocabulary is a BERT ``vocab.txt`` (one token a line), so the directory stays Hugging Face
compatible; the mode and casing live in ``tokenizer_config.json`` beside it.
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_MAX_WORDPIECE_CHARS = 100
_CHAR_FALLBACK = {"“": '"', "”": '"', "‘": "'", "’": "'", "—": "-", "–": "-", "…": "...", "·": ".", "・": "."}


def is_cjk(ch: str) -> bool:
    """True for CJK ideographs (the ranges BERT's BasicTokenizer splits one by one)."""
    cp = ord(ch)
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_word_char(ch: str) -> bool:
    """Characters that form space-separated words (latin letters, digits...)."""
    return not (ch.isspace() or is_cjk(ch) or is_punctuation(ch) or unicodedata.category(ch).startswith("S"))


class ChineseTokenizer:
    """Tokenizer over a BERT vocabulary, with optional whole-word units cut by jieba."""

    def __init__(self, vocab: Sequence[str], mode: str = "word", lowercase: bool = True) -> None:
        if mode not in ("word", "char"):
            raise ValueError(f"tokenizer mode must be 'word' or 'char', not {mode!r}")
        self.vocab: list[str] = list(vocab)
        self.token_to_id: dict[str, int] = {t: i for i, t in enumerate(self.vocab)}
        missing = [t for t in SPECIAL_TOKENS if t not in self.token_to_id]
        if missing:
            raise ValueError(f"vocabulary lacks special tokens {missing}")
        self.mode = mode
        self.lowercase = lowercase
        self.pad_id = self.token_to_id["[PAD]"]
        self.unk_id = self.token_to_id["[UNK]"]
        self.cls_id = self.token_to_id["[CLS]"]
        self.sep_id = self.token_to_id["[SEP]"]
        self.mask_id = self.token_to_id["[MASK]"]
        self.special_ids = frozenset(self.token_to_id[t] for t in self.vocab if t.startswith("[") and t.endswith("]"))
        # Multi-character vocabulary entries made only of CJK characters are the "words".
        self._words = frozenset(t for t in self.vocab if len(t) > 1 and all(is_cjk(c) for c in t))
        self._wordpiece = lru_cache(maxsize=65536)(self._wordpiece_uncached)
        if mode == "word":
            self._jieba = _jieba_for(self._words)

    # ------------------------------------------------------------------ loading / saving
    @classmethod
    def from_dir(cls, path: str | os.PathLike) -> ChineseTokenizer:
        """Read ``vocab.txt`` (+ ``tokenizer_config.json`` when present) from a model directory."""
        path = Path(path)
        vocab = read_vocab(path / "vocab.txt")
        cfg_path = path / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.exists() else {}
        mode = cfg.get("textgen_mode", "char")
        return cls(vocab, mode=mode, lowercase=cfg.get("do_lower_case", True))

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "vocab.txt").write_text("\n".join(self.vocab) + "\n", encoding="utf-8")
        cfg = {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": self.lowercase,
            "tokenize_chinese_chars": True,
            "textgen_mode": self.mode,
            "model_max_length": 512,
        }
        (path / "tokenizer_config.json").write_text(json.dumps(cfg, ensure_ascii=False, indent=2), encoding="utf-8")

    def __len__(self) -> int:
        return len(self.vocab)

    # ------------------------------------------------------------------ text -> tokens
    def _normalize(self, text: str) -> str:
        out = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch) in ("Cc", "Cf") and ch not in "\t\n\r"):
                continue
            out.append(" " if ch.isspace() else ch)
        text = "".join(out)
        if self.lowercase:
            text = unicodedata.normalize("NFD", text.lower())
            text = "".join(c for c in text if unicodedata.category(c) != "Mn")
            text = unicodedata.normalize("NFC", text)
        return text

    def _basic_split(self, text: str) -> list[str]:
        """BERT BasicTokenizer: CJK characters and punctuation alone, other runs split on spaces."""
        pieces: list[str] = []
        buf: list[str] = []
        for ch in text:
            if ch.isspace() or is_cjk(ch) or is_punctuation(ch):
                if buf:
                    pieces.append("".join(buf))
                    buf = []
                if not ch.isspace():
                    pieces.append(ch)
            else:
                buf.append(ch)
        if buf:
            pieces.append("".join(buf))
        return pieces

    def _wordpiece_uncached(self, word: str) -> tuple[str, ...]:
        if word in self.token_to_id:
            return (word,)
        if len(word) == 1:
            # Vocabularies such as bert-base-chinese lack curly quotes and some full-width forms;
            # a close stand-in is better than [UNK] (the original glyph cannot be restored).
            alt = _CHAR_FALLBACK.get(word) or unicodedata.normalize("NFKC", word)
            if alt in self.token_to_id:
                return (alt,)
        if len(word) > _MAX_WORDPIECE_CHARS:
            return ("[UNK]",)
        pieces: list[str] = []
        start = 0
        while start < len(word):
            end = len(word)
            found = None
            while start < end:
                sub = word[start:end] if start == 0 else "##" + word[start:end]
                if sub in self.token_to_id:
                    found = sub
                    break
                end -= 1
            if found is None:
                return ("[UNK]",)
            pieces.append(found)
            start = end
        return tuple(pieces)

    def tokenize(self, text: str) -> list[str]:
        text = self._normalize(text)
        if self.mode == "char":
            chunks = [text]
        else:
            chunks = list(self._jieba.cut(text, HMM=False))
        tokens: list[str] = []
        for chunk in chunks:
            if chunk in self._words:
                tokens.append(chunk)
                continue
            for piece in self._basic_split(chunk):
                tokens.extend(self._wordpiece(piece))
        return tokens

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        ids = [self.token_to_id.get(t, self.unk_id) for t in self.tokenize(text)]
        if add_special_tokens:
            ids = [self.cls_id, *ids, self.sep_id]
        return ids

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        return [self.vocab[i] for i in ids]

    # ------------------------------------------------------------------ tokens -> text
    def token_text(self, token_id: int) -> str:
        """The surface text a token adds (no ``##``); empty for special tokens."""
        if token_id in self.special_ids:
            return ""
        tok = self.vocab[token_id]
        return tok[2:] if tok.startswith("##") else tok

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Clean Chinese: no spaces between CJK characters, ``##`` pieces glued, and a space only
        between two space-separated words (latin words, numbers) as BERT splitting implies."""
        out: list[str] = []
        prev_wordlike = False
        for i in ids:
            i = int(i)
            if i in self.special_ids:
                if skip_special_tokens:
                    continue
                out.append(self.vocab[i])
                prev_wordlike = False
                continue
            tok = self.vocab[i]
            if tok.startswith("##") and len(tok) > 2:
                out.append(tok[2:])
                continue
            wordlike = bool(tok) and _is_word_char(tok[0]) and _is_word_char(tok[-1])
            if wordlike and prev_wordlike:
                out.append(" ")
            out.append(tok)
            prev_wordlike = wordlike
        return "".join(out)


# ---------------------------------------------------------------------- helpers
def read_vocab(path: str | os.PathLike) -> list[str]:
    """One token a line; keeps order (ids are line numbers). Rejects an empty file."""
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    vocab = [line.rstrip("\r") for line in lines]
    if not vocab:
        raise ValueError(f"empty vocabulary file: {path}")
    return vocab


_JIEBA_CACHE: dict[int, object] = {}


def _jieba_for(words: frozenset[str]):
    """A private jieba Tokenizer whose dictionary also knows every vocabulary word, so that a word
    the vocabulary holds is never cut apart just because jieba's default dictionary lacks it."""
    key = hash(words)
    tok = _JIEBA_CACHE.get(key)
    if tok is None:
        import logging

        import jieba

        jieba.setLogLevel(logging.WARNING)
        tok = jieba.Tokenizer()
        tok.initialize()
        for w in words:
            if w not in tok.FREQ or not tok.FREQ[w]:
                tok.add_word(w, freq=max(tok.suggest_freq(w, tune=False), 1))
        _JIEBA_CACHE[key] = tok
    return tok


def build_vocab(
    texts: Iterable[str],
    *,
    max_chars: int = 8000,
    min_char_count: int = 2,
    num_words: int = 8000,
    min_word_count: int = 5,
    lowercase: bool = True,
) -> list[str]:
    """A vocabulary from a corpus: special tokens, characters by frequency, then the top-N jieba words.

    Non-CJK runs (latin words, numbers) are kept as whole tokens when frequent and always
    backed by single characters plus ``##`` continuation characters so nothing becomes [UNK].
    """
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    norm = ChineseTokenizer(list(SPECIAL_TOKENS), mode="char", lowercase=lowercase)
    chars: Counter[str] = Counter()
    words: Counter[str] = Counter()
    latin: Counter[str] = Counter()
    for text in texts:
        text = norm._normalize(text)
        for piece in norm._basic_split(text):
            if len(piece) == 1:
                chars[piece] += 1
            else:
                latin[piece] += 1
                chars.update(piece)
        for w in jieba.cut(text, HMM=False):
            if len(w) > 1 and all(is_cjk(c) for c in w):
                words[w] += 1
    vocab = list(SPECIAL_TOKENS)
    char_list = [c for c, n in chars.most_common(max_chars) if n >= min_char_count]
    vocab += char_list
    # "##x" continuations for every non-CJK character so latin words always decompose.
    vocab += ["##" + c for c in char_list if not is_cjk(c) and not is_punctuation(c)]
    vocab += [w for w, n in latin.most_common(500) if n >= min_word_count and w not in set(vocab)]
    vocab += [w for w, n in words.most_common(num_words) if n >= min_word_count]
    return list(dict.fromkeys(vocab))
