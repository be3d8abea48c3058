"""Token machinery shared by every token modality (text, code, molecules, music events): tokenizers with an
``<|endoftext|>`` separator/start token, memory-mapped token streams and the :class:`TokenDataset` over them.

Representation
--------------
A split is one stream of token ids kept in a memory-mapped file (``uint16``, or ``int32`` for vocabularies past
65,536), so corpora larger than RAM work: training batches read ``batch_size`` random windows of ``block_size``
tokens from it; ``x`` materialises the non-overlapping windows ``(N, block_size)`` as ``int64`` (evaluation).
Documents are joined with the separator token ``<|endoftext|>`` (id 0 for genlab's tokenizers), which models also
use as the start token, so ``log p(window)`` is exact.

Tokenizers (saved as ``tokenizer.json`` in the run folder)
---------------------------------------------------------
* ``char`` — one id per character seen in the training split (plus ``<|endoftext|>``); bits per character.
* ``bpe`` — byte-level BPE trained on the training split with Hugging Face ``tokenizers`` (``--vocab-size``);
  round-trips any Unicode text exactly; bits per UTF-8 byte.
* ``smiles`` / ``selfies`` — one id per symbol of a notation, the symbols cut by a regular expression
  (:data:`SYMBOL_PATTERNS`): SMILES bracket atoms, two-letter elements, bonds and ring-bond labels (``%12``), or
  SELFIES ``[...]`` symbols; ``<name>`` special tokens (e.g. property bins ``<qed:7>``) are single symbols in both.
  The vocabulary is every symbol seen in the training split; bits per character.

Documents (molecules) can also be served one per example (:class:`DocumentDataset`): each window starts at a
document and ends with ``<|endoftext|>``, padded with it, so a model learns exactly what it is asked to sample.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from genlab.core import DataSpec
from genlab.data import ArrayDataset, seeded_generator
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


# -- token streams ---------------------------------------------------------------------------------

def cache_root() -> Path:
    """Folder of cached token streams: ``$GENLAB_CACHE/text`` or ``~/.cache/genlab/text``."""
    return Path(os.environ.get("GENLAB_CACHE", Path.home() / ".cache" / "genlab")) / "text"


def write_stream(texts: Iterable[str], tok: Tokenizer, path: Path) -> tuple[int, int]:
    """Encode documents one by one into a binary token file ``<|endoftext|> d1 <|endoftext|> d2 …``.

    Returns:
        (tokens written, characters or bytes of text they encode).
    """
    dtype = np.uint16 if tok.vocab_size <= 65536 else np.int32
    n, units = 0, 0
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        for text in texts:
            ids = tok.encode(text)
            chunk = np.concatenate([[tok.eot_id], ids]).astype(dtype)
            f.write(chunk.tobytes())
            n += len(chunk)
            units += tok.units(text)
    os.replace(tmp, path)
    return n, units


class TokenDataset:
    """One split as a memory-mapped token stream, with the :class:`~genlab.data.Dataset` interface the trainer
    uses (``steps_per_epoch``, ``batch``, ``head``, ``x``, ``y``, ``spec``).

    Arguments:
        stream: token ids (a ``np.memmap`` or array).
        spec: ``DataSpec(kind=…, shape=(block_size,), form="tokens", levels=vocabulary size)``.
        tokenizer: the tokenizer that wrote the stream.
        units: characters (char) or UTF-8 bytes (bpe) of text in the stream.
    """

    augment: Any = None

    def __init__(self, stream: np.ndarray, spec: DataSpec, tokenizer: Tokenizer, units: int) -> None:
        self.stream, self.spec, self.tokenizer, self.units = stream, spec, tokenizer, units
        self.block_size = spec.shape[0]

    @property
    def y(self) -> Tensor | None:
        """Token windows carry no labels."""
        return None

    def __len__(self) -> int:
        return len(self.stream) // self.block_size

    @property
    def x(self) -> Tensor:
        """Non-overlapping windows ``(N, block_size)`` as ``int64`` (materialised on access)."""
        t = self.block_size
        return torch.from_numpy(np.asarray(self.stream[: len(self) * t], dtype=np.int64).reshape(-1, t))

    def steps_per_epoch(self, batch_size: int) -> int:
        """Batches of ``batch_size`` windows that cover the stream once (at least 1).

        Raises:
            DataError: when the stream is shorter than one window.
        """
        if len(self.stream) < self.block_size + 1:
            raise DataError(f"the training text has {len(self.stream)} tokens, fewer than one window of "
                            f"{self.block_size}; lower --block-size")
        return max(1, len(self.stream) // (batch_size * self.block_size))

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[Tensor, None]:
        """``batch_size`` windows at random offsets, a function of (seed, step) only → ``(B, block_size)`` int64."""
        g = seeded_generator("text", seed, step)
        starts = torch.randint(0, len(self.stream) - self.block_size + 1, (batch_size,), generator=g).numpy()
        idx = starts[:, None] + np.arange(self.block_size)  # (B, T)
        return torch.from_numpy(np.asarray(self.stream[idx], dtype=np.int64)), None

    def head(self, n: int) -> ArrayDataset:
        """The first ``n`` non-overlapping windows."""
        t = self.block_size
        x = torch.from_numpy(np.asarray(self.stream[: min(n, len(self)) * t], dtype=np.int64).reshape(-1, t))
        return ArrayDataset(x, None, self.spec)


class DocumentDataset(TokenDataset):
    """One split as one example per document: ``(d_1 … d_n, <|endoftext|>, <|endoftext|> …)`` cut or padded to
    ``block_size``, read from the same memory-mapped stream as :class:`TokenDataset` (molecules, short records).

    With ``<|endoftext|>`` as the start token a model sees each document from its start and learns where it ends,
    exactly as it is asked to sample; the padding after the first ``<|endoftext|>`` is the same token, so the
    log-probability of a window is that of the document and its end (plus the near-certain padding).

    Arguments:
        stream, spec, tokenizer, units: as for :class:`TokenDataset`.
        starts: index in ``stream`` of the ``<|endoftext|>`` before each document.
    """

    def __init__(self, stream: np.ndarray, spec: DataSpec, tokenizer: Tokenizer, units: int,
                 starts: np.ndarray) -> None:
        super().__init__(stream, spec, tokenizer, units)
        self.starts = starts

    def __len__(self) -> int:
        return len(self.starts)

    def rows(self, idx: np.ndarray) -> Tensor:
        """Windows of documents ``idx`` → ``(len(idx), block_size)`` int64, padded after each document's end."""
        eot = self.tokenizer.eot_id
        pos = self.starts[idx][:, None] + 1 + np.arange(self.block_size)  # (B, T)
        inside = pos < len(self.stream)
        w = np.where(inside, np.asarray(self.stream[np.minimum(pos, len(self.stream) - 1)], dtype=np.int64), eot)
        ended = np.cumsum(w == eot, axis=1) > 0
        return torch.from_numpy(np.where(ended, eot, w))

    @property
    def x(self) -> Tensor:
        """Every document's window ``(N, block_size)`` as ``int64``."""
        return self.rows(np.arange(len(self)))

    def steps_per_epoch(self, batch_size: int) -> int:
        if len(self) < batch_size:
            raise DataError(f"the training split has {len(self)} documents, fewer than the batch size "
                            f"{batch_size}; lower --batch-size")
        return len(self) // batch_size

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[Tensor, None]:
        """The documents of ``step``: a fresh permutation each epoch (as :class:`~genlab.data.ArrayDataset`)."""
        per_epoch = self.steps_per_epoch(batch_size)
        epoch, k = divmod(step, per_epoch)
        perm = torch.randperm(len(self), generator=seeded_generator("order", seed, epoch)).numpy()
        return self.rows(perm[k * batch_size : (k + 1) * batch_size]), None

    def head(self, n: int) -> ArrayDataset:
        """The first ``n`` documents."""
        return ArrayDataset(self.rows(np.arange(min(n, len(self)))), None, self.spec)


def token_streams(key: str, make_tokenizer: Callable[[], Tokenizer], train_texts: Callable[[], Iterable[str]],
                  val_texts: Callable[[], Iterable[str]], spec: DataSpec, source: str, documents: bool = False
                  ) -> tuple[TokenDataset, TokenDataset, dict[str, Any]]:
    """Train and validation token streams, built once and cached under :func:`cache_root` by ``key``.

    Arguments:
        key: everything the streams depend on (files and their sizes/times, split and tokenizer options).
        make_tokenizer: builds the tokenizer (trained on the training texts, or a fixed one).
        train_texts, val_texts: the documents of each split, as callables so a cache hit reads nothing.
        spec: the spec of the data (``levels`` is filled in from the tokenizer).
        source: where the texts come from (recorded in the metadata).
        documents: serve one example per document (:class:`DocumentDataset`) instead of random windows.

    Returns:
        (train, validation, metadata: token, unit and document counts, the cache folder).
    """
    folder = cache_root() / hashlib.blake2b(key.encode(), digest_size=12).hexdigest()
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        tok = make_tokenizer()
        (folder / TOKENIZER_FILE).write_text(tok.to_json(), encoding="utf-8")
        counts = {"train_docs": 0, "val_docs": 0}

        def counted(texts: Iterable[str], name: str) -> Iterator[str]:
            for t in texts:
                counts[name] += 1
                yield t

        n_tr, u_tr = write_stream(counted(train_texts(), "train_docs"), tok, folder / "train.bin")
        n_va, u_va = write_stream(counted(val_texts(), "val_docs"), tok, folder / "val.bin")
        meta = {"train_tokens": n_tr, "train_units": u_tr, "val_tokens": n_va, "val_units": u_va,
                "dtype": "uint16" if tok.vocab_size <= 65536 else "int32", "source": source, **counts}
        tmp = folder / "meta.json.tmp"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, meta_path)
    meta = json.loads(meta_path.read_text())
    tok = Tokenizer.from_json((folder / TOKENIZER_FILE).read_text(encoding="utf-8"))
    spec = dataclasses.replace(spec, form="tokens", levels=tok.vocab_size)

    def stream(name: str, n: int) -> np.ndarray:
        if n == 0:
            return np.zeros(0, dtype=meta["dtype"])
        return np.memmap(folder / name, dtype=meta["dtype"], mode="r", shape=(n,))

    def split(name: str, n: int, units: int) -> TokenDataset:
        s = stream(name, n)
        if documents:
            return DocumentDataset(s, spec, tok, units, np.flatnonzero(np.asarray(s) == tok.eot_id))
        return TokenDataset(s, spec, tok, units)

    train = split("train.bin", meta["train_tokens"], meta["train_units"])
    val = split("val.bin", meta["val_tokens"], meta["val_units"])
    return train, val, {**meta, "cache": str(folder)}
