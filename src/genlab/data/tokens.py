"""Token machinery shared by every token modality (text, code, molecules, music events): tokenizers with an
``<|endoftext|>`` separator/start token, memory-mapped token streams and the :class:`TokenDataset` over them.

Representation
--------------
A split is one stream of token ids kept in a memory-mapped file (``uint16``, or ``int32`` for vocabularies past
65,536), so corpora larger than RAM work: training batches read ``batch_size`` random windows of ``block_size``
tokens from it; ``x`` materialises the non-overlapping windows ``(N, block_size)`` as ``int64`` (evaluation).
Documents are joined with the separator token ``<|endoftext|>`` (id 0 for genlab's tokenizers), which models also
use as the start token, so ``log p(window)`` is exact.

Tokenizers (``char``, ``bpe``, ``smiles``, ``selfies``) live in the torch-free :mod:`genlab.data.vocab`; their names
are importable from here too.

Documents (molecules) can also be served one per example (:class:`DocumentDataset`): each window starts at a
document and ends with ``<|endoftext|>``, padded with it, so a model learns exactly what it is asked to sample.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from genlab.core import DataSpec
from genlab.data import ArrayDataset, seeded_generator
from genlab.data.vocab import EOT, SYMBOL_PATTERNS, TOKENIZER_FILE, Tokenizer, train_bpe, train_char, train_symbols
from genlab.errors import DataError

__all__ = ["EOT", "SYMBOL_PATTERNS", "TOKENIZER_FILE", "DocumentDataset", "TokenDataset", "Tokenizer", "cache_root",
           "token_streams", "train_bpe", "train_char", "train_symbols", "write_stream"]

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
