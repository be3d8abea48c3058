"""Tokenizers with an ``<|endoftext|>`` separator/start token, saved as ``tokenizer.json`` (numpy only, no torch,
so the exported-model runtime decodes with the very same ids).

* ``char`` — one id per character seen in the training split (plus ``<|endoftext|>``); bits per character.
* ``bpe`` — byte-level BPE trained on the training split with Hugging Face ``tokenizers`` (``--vocab-size``);
  round-trips any Unicode text exactly; bits per UTF-8 byte.
* ``smiles`` / ``selfies`` — one id per symbol of a notation, the symbols cut by a regular expression
  (:data:`SYMBOL_PATTERNS`): SMILES bracket atoms, two-letter elements, bonds and ring-bond labels (``%12``), or
  SELFIES ``[...]`` symbols; ``<name>`` special tokens (e.g. property bins ``<qed:7>``) are single symbols in both.
  The vocabulary is every symbol seen in the training split; bits per character.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genlab.errors import ConfigError, DataError

EOT = "<|endoftext|>"
TOKENIZER_FILE = "tokenizer.json"

_SPECIAL = r"<[^<>\s]+>"
#: regular expressions that cut a text into the symbols of a notation (the last alternative keeps any other
#: character as a symbol of its own, so every text splits)
SYMBOL_PATTERNS: dict[str, str] = {
    # Schwaller et al., "Molecular Transformer", 2019, arXiv:1811.02633 (the SMILES regex)
    "smiles": _SPECIAL + r"|\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$"
              r"|%[0-9]{2}|[0-9]|.",
    # Krenn et al., "SELFIES", 2020, arXiv:1905.13741: every symbol is bracketed; "." separates fragments
    "selfies": _SPECIAL + r"|\[[^\]]*\]|\.|.",
}


class Tokenizer:
    """A character-level, byte-level BPE or symbol (SMILES/SELFIES) tokenizer with ``<|endoftext|>`` as
    separator/start token.

    Arguments:
        kind: ``char``, ``bpe``, or a notation of :data:`SYMBOL_PATTERNS` (``smiles``, ``selfies``).
        chars: the character vocabulary (``char``), id ``i + 1`` for ``chars[i]``; id 0 is ``<|endoftext|>``.
        hf: a Hugging Face ``tokenizers.Tokenizer`` (``bpe``).
        symbols: the symbol vocabulary (``smiles``/``selfies``), id ``i + 1`` for ``symbols[i]``.
    """

    def __init__(self, kind: str, chars: str = "", hf: Any = None, symbols: tuple[str, ...] = ()) -> None:
        self.kind, self.chars, self.hf, self.symbols = kind, chars, hf, tuple(symbols)
        if kind == "char":
            self._codes = np.array([ord(c) for c in chars], dtype=np.int64)
            self._order = np.argsort(self._codes)
            self.vocab_size = len(chars) + 1
            self.eot_id = 0
        elif kind in SYMBOL_PATTERNS:
            self._regex = re.compile(SYMBOL_PATTERNS[kind])
            self._ids = {sym: i + 1 for i, sym in enumerate(self.symbols)}
            self.vocab_size = len(self.symbols) + 1
            self.eot_id = 0
        else:
            self.vocab_size = hf.get_vocab_size()
            eot = hf.token_to_id(EOT)
            self.eot_id = 0 if eot is None else int(eot)

    @property
    def unit(self) -> str:
        """What bits are counted per: ``char`` or ``byte``."""
        return "byte" if self.kind == "bpe" else "char"

    def encode(self, text: str, strict: bool = False) -> np.ndarray:
        """Token ids ``(n,)`` of ``text``; unknown characters are dropped (``char``), or raise when ``strict``.

        Raises:
            ConfigError: with ``strict`` and a character outside a char vocabulary.
        """
        if self.kind == "bpe":
            return np.asarray(self.hf.encode(text).ids, dtype=np.int64)
        if self.kind in SYMBOL_PATTERNS:
            ids = [self._ids.get(sym, -1) for sym in self.split(text)]
            if strict and -1 in ids:
                bad = self.split(text)[ids.index(-1)]
                raise ConfigError(f"symbol {bad!r} is not in this model's vocabulary; remove it from the prompt")
            return np.asarray([i for i in ids if i >= 0], dtype=np.int64)
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        sorted_codes = self._codes[self._order]
        pos = np.searchsorted(sorted_codes, codes).clip(0, max(len(sorted_codes) - 1, 0))
        known = sorted_codes[pos] == codes if len(sorted_codes) else np.zeros(len(codes), dtype=bool)
        if strict and not known.all():
            bad = text[int(np.flatnonzero(~known)[0])]
            raise ConfigError(f"character {bad!r} is not in this model's vocabulary; remove it from the prompt")
        return self._order[pos[known]] + 1

    def split(self, text: str) -> list[str]:
        """The symbols of ``text`` in a symbol notation (``smiles``/``selfies``)."""
        return self._regex.findall(text)

    def fits(self, text: str) -> bool:
        """Whether every symbol (or character) of ``text`` is in the vocabulary, so it encodes losslessly."""
        if self.kind == "bpe":
            return True
        if self.kind == "char":
            return set(text) <= set(self.chars)
        return all(sym in self._ids for sym in self.split(text))

    def decode(self, ids: Any) -> str:
        """Text of token ids; ``<|endoftext|>`` decodes to nothing."""
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        if self.kind == "bpe":
            return self.hf.decode(ids, skip_special_tokens=True)
        if self.kind in SYMBOL_PATTERNS:
            return "".join(self.symbols[i - 1] for i in ids if 0 < i <= len(self.symbols))
        return "".join(self.chars[i - 1] for i in ids if 0 < i <= len(self.chars))

    def units(self, text: str) -> int:
        """Characters (``char``) or UTF-8 bytes (``bpe``) in ``text``: the denominator of bits per char/byte."""
        return len(text.encode("utf-8")) if self.kind == "bpe" else len(text)

    def to_json(self) -> str:
        """The tokenizer as JSON text (Hugging Face's own format for BPE)."""
        if self.kind == "char":
            return json.dumps({"genlab_char_tokenizer": 1, "chars": self.chars}, ensure_ascii=False)
        if self.kind in SYMBOL_PATTERNS:
            return json.dumps({"genlab_symbol_tokenizer": 1, "kind": self.kind, "symbols": list(self.symbols)},
                              ensure_ascii=False)
        return self.hf.to_str()

    @classmethod
    def from_json(cls, text: str) -> Tokenizer:
        """Inverse of :meth:`to_json` (also reads any Hugging Face ``tokenizer.json``)."""
        d = json.loads(text)
        if "genlab_char_tokenizer" in d:
            return cls("char", chars=d["chars"])
        if "genlab_symbol_tokenizer" in d:
            if d.get("kind") not in SYMBOL_PATTERNS:
                raise ValueError(f"unknown symbol notation {d.get('kind')!r}")
            return cls(d["kind"], symbols=tuple(d["symbols"]))
        from tokenizers import Tokenizer as HFTokenizer

        return cls("bpe", hf=HFTokenizer.from_str(text))

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Read a ``tokenizer.json``, or the one inside a run folder.

        Raises:
            DataError: when there is none or it cannot be read.
        """
        p = Path(path)
        if p.is_dir():
            p = p / TOKENIZER_FILE
        if not p.is_file():
            raise DataError(f"no tokenizer at {p}; give char, bpe, a tokenizer.json or a text run folder")
        try:
            return cls.from_json(p.read_text(encoding="utf-8"))
        except Exception as e:
            raise DataError(f"cannot read tokenizer {p} ({str(e).splitlines()[0]})") from None


def train_char(texts: Any) -> Tokenizer:
    """A character vocabulary of every character in the iterable of strings ``texts``."""
    seen: set[str] = set()
    for t in texts:
        seen.update(t)
    return Tokenizer("char", chars="".join(sorted(seen)))


def train_symbols(texts: Any, kind: str, extra: Iterable[str] = ()) -> Tokenizer:
    """A symbol vocabulary (notation ``kind`` of :data:`SYMBOL_PATTERNS`) of every symbol in the iterable of
    strings ``texts``, plus the ``extra`` symbols (e.g. special tokens that must exist even if unseen)."""
    regex = re.compile(SYMBOL_PATTERNS[kind])
    seen: set[str] = set(extra)
    for t in texts:
        seen.update(regex.findall(t))
    return Tokenizer(kind, symbols=tuple(sorted(seen)))


def train_bpe(texts: Any, vocab_size: int) -> Tokenizer:
    """Byte-level BPE (GPT-2 style) trained on the iterable of strings ``texts`` with Hugging Face ``tokenizers``.

    References:
        Sennrich et al., "Neural Machine Translation of Rare Words with Subword Units", 2016, arXiv:1508.07909.
    """
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return Tokenizer("bpe", hf=tok)


def text_pieces(prompt: str, tokens: Iterable[int], decode: Callable[[list[int]], str],
                stops: Sequence[str] = ()) -> Iterator[str]:
    """The prompt, then the text of a stream of token ids piece by piece as they come (a split UTF-8 character
    waits for its rest), cut before the first stop string, then a newline."""
    yield prompt
    ids: list[int] = []
    shown = ""
    for t in tokens:
        ids.append(int(t))
        text = decode(ids)
        cut = min((text.find(s) for s in stops if s in text), default=-1)
        if cut >= 0:
            yield text[len(shown) : cut]
            break
        if not text.endswith("\ufffd"):
            yield text[len(shown) :]
            shown = text
    yield "\n"
