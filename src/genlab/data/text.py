"""Text data: files or folders of UTF-8 text, character-level or byte-level BPE tokens, memory-mapped streams.

Representation
--------------
A split is one stream of token ids kept in a memory-mapped file (``uint16``, or ``int32`` for vocabularies past
65,536), so corpora larger than RAM work: training batches read ``batch_size`` random windows of ``block_size``
tokens from it; ``x`` materialises the non-overlapping windows ``(N, block_size)`` as ``int64`` (evaluation).
Documents are joined with the separator token ``<|endoftext|>`` (id 0 for genlab's tokenizers), which models also
use as the start token, so ``log p(window)`` is exact.

Documents and the train/validation split
----------------------------------------
A document is a file. A folder contributes every file matching ``--include`` globs (all files when none are given);
a file goes to validation when a hash of its relative path falls below ``--test-fraction`` (stable as files are
added), with at least one file in each split. A single file is cut once, at the line break nearest to
``1 - test_fraction`` of its length (the tail is validation, as nanoGPT splits tinyshakespeare).

Tokenizers (saved as ``tokenizer.json`` in the run folder)
---------------------------------------------------------
* ``char`` — one id per character seen in the training split (plus ``<|endoftext|>``); bits per character.
* ``bpe`` — byte-level BPE trained on the training split with Hugging Face ``tokenizers`` (``--vocab-size``);
  round-trips any Unicode text exactly; bits per UTF-8 byte.
* a path to a ``tokenizer.json`` or to a run folder: reuse that tokenizer (fine-tuning with ``--init-from``).

Built-in corpora (installed with genlab, nothing downloaded)
-----------------------------------------------------------
* ``pystdlib`` — the ``.py`` sources of this Python's standard library (found with ``sysconfig``), without
  ``site-packages`` and the test suites (``test``/``tests``/``idle_test``, which hold deliberately non-UTF-8
  files), one document per file: ~730 files, ~12 MB for CPython 3.11.
* ``lee`` — the Lee news corpus shipped inside the ``gensim`` wheel (``gensim/test/test_data/lee_background.cor``):
  300 Australian news articles in English, one per line, ~360 kB. Chosen because it is real English prose that
  installs from PyPI with no runtime download (nltk and datasets fetch their corpora at run time); gensim is
  located with ``importlib`` and never imported.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import json
import os
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from genlab.config import check
from genlab.core import DATASETS, DataSpec, register_dataset
from genlab.data import MODALITIES, ArrayDataset, Modality, seeded_generator
from genlab.errors import ConfigError, DataError

EOT = "<|endoftext|>"
TOKENIZER_FILE = "tokenizer.json"


# -- tokenizers ------------------------------------------------------------------------------------

class Tokenizer:
    """A character-level or byte-level BPE tokenizer with ``<|endoftext|>`` as separator/start token.

    Arguments:
        kind: ``char`` or ``bpe``.
        chars: the character vocabulary (``char``), id ``i + 1`` for ``chars[i]``; id 0 is ``<|endoftext|>``.
        hf: a Hugging Face ``tokenizers.Tokenizer`` (``bpe``).
    """

    def __init__(self, kind: str, chars: str = "", hf: Any = None) -> None:
        self.kind, self.chars, self.hf = kind, chars, hf
        if kind == "char":
            self._codes = np.array([ord(c) for c in chars], dtype=np.int64)
            self._order = np.argsort(self._codes)
            self.vocab_size = len(chars) + 1
            self.eot_id = 0
        else:
            self.vocab_size = hf.get_vocab_size()
            eot = hf.token_to_id(EOT)
            self.eot_id = 0 if eot is None else int(eot)

    @property
    def unit(self) -> str:
        """What bits are counted per: ``char`` or ``byte``."""
        return "char" if self.kind == "char" else "byte"

    def encode(self, text: str, strict: bool = False) -> np.ndarray:
        """Token ids ``(n,)`` of ``text``; unknown characters are dropped (``char``), or raise when ``strict``.

        Raises:
            ConfigError: with ``strict`` and a character outside a char vocabulary.
        """
        if self.kind == "bpe":
            return np.asarray(self.hf.encode(text).ids, dtype=np.int64)
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        sorted_codes = self._codes[self._order]
        pos = np.searchsorted(sorted_codes, codes).clip(0, max(len(sorted_codes) - 1, 0))
        known = sorted_codes[pos] == codes if len(sorted_codes) else np.zeros(len(codes), dtype=bool)
        if strict and not known.all():
            bad = text[int(np.flatnonzero(~known)[0])]
            raise ConfigError(f"character {bad!r} is not in this model's vocabulary; remove it from the prompt")
        return self._order[pos[known]] + 1

    def decode(self, ids: Any) -> str:
        """Text of token ids; ``<|endoftext|>`` decodes to nothing."""
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        if self.kind == "bpe":
            return self.hf.decode(ids, skip_special_tokens=True)
        return "".join(self.chars[i - 1] for i in ids if 0 < i <= len(self.chars))

    def units(self, text: str) -> int:
        """Characters (``char``) or UTF-8 bytes (``bpe``) in ``text``: the denominator of bits per char/byte."""
        return len(text) if self.kind == "char" else len(text.encode("utf-8"))

    def to_json(self) -> str:
        """The tokenizer as JSON text (Hugging Face's own format for BPE)."""
        if self.kind == "char":
            return json.dumps({"genlab_char_tokenizer": 1, "chars": self.chars}, ensure_ascii=False)
        return self.hf.to_str()

    @classmethod
    def from_json(cls, text: str) -> Tokenizer:
        """Inverse of :meth:`to_json` (also reads any Hugging Face ``tokenizer.json``)."""
        d = json.loads(text)
        if "genlab_char_tokenizer" in d:
            return cls("char", chars=d["chars"])
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


# -- corpora --------------------------------------------------------------------------------------

@dataclass
class Corpus:
    """Documents as files (read lazily) or as one file cut into a train head and a validation tail."""

    files: list[Path]
    root: Path
    source: str
    single: bool = False
    names: list[str] = field(default_factory=list)


@register_dataset("pystdlib")
def pystdlib() -> Corpus:
    """Python standard library .py sources of this interpreter, test suites excluded (code; a file per document)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "test", "tests", "idle_test"}  # test suites hold deliberately non-UTF-8 sources
    files = sorted(p for p in root.rglob("*.py") if p.is_file() and not skip & set(p.relative_to(root).parts[:-1]))
    if not files:
        raise DataError(f"found no .py files under {root}; this Python has no standard library sources")
    return Corpus(files, root, f"python stdlib {root}")


pystdlib.data_kind = "text"  # type: ignore[attr-defined]  (see genlab.data.data_kind)


@register_dataset("lee")
def lee() -> Corpus:
    """Lee news corpus from the gensim wheel: 300 English news articles, one per line (~360 kB)."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the lee corpus ships with gensim: pip install gensim")
    p = Path(next(iter(spec.submodule_search_locations))) / "test" / "test_data" / "lee_background.cor"
    if not p.is_file():
        raise DataError(f"{p} is missing from the installed gensim; reinstall gensim")
    return Corpus([p], p.parent, "gensim lee_background.cor", single=True)


lee.data_kind = "text"  # type: ignore[attr-defined]


def read_text(path: Path) -> str:
    """The UTF-8 text of ``path`` (a leading BOM dropped).

    Raises:
        DataError: for binary or non-UTF-8 files, in one line naming the file.
    """
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path} ({e.strerror})") from None
    if b"\x00" in raw[:8192]:
        raise DataError(f"{path} looks binary (it holds NUL bytes); exclude it with --include globs such as '*.txt'")
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (bad byte at offset {e.start}); convert it to UTF-8 or exclude "
                        "it with --include") from None


def find_corpus(data: str, include: tuple[str, ...]) -> Corpus:
    """Resolve ``--data`` to a corpus: a built-in name, a text file, or a folder filtered by ``include`` globs.

    Raises:
        DataError: for unknown names, missing paths or folders with no matching files.
    """
    if data in DATASETS:
        corpus = DATASETS[data]()
        if not isinstance(corpus, Corpus):
            raise DataError(f"'{data}' is not a text dataset; text built-ins: pystdlib, lee")
    else:
        p = Path(data).expanduser()
        if p.is_file():
            corpus = Corpus([p], p.parent, str(p), single=True)
        elif p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file()
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            corpus = Corpus(files, p, str(p))
        else:
            raise DataError(f"{data} is neither a text file, a folder nor a built-in text dataset (pystdlib, lee)")
    if include and not corpus.single:
        corpus.files = [f for f in corpus.files
                        if any(fnmatch.fnmatch(f.name, g) or fnmatch.fnmatch(str(f.relative_to(corpus.root)), g)
                               for g in include)]
    if not corpus.files:
        raise DataError(f"{data} has no files matching --include {','.join(include) or '*'}")
    return corpus


def split_documents(corpus: Corpus, test_fraction: float, max_docs: int | None) -> tuple[list[Any], list[Any]]:
    """Train and validation documents: ``Path`` objects, or ``(path, lo, hi)`` character ranges of a single file."""
    if corpus.single:
        text = read_text(corpus.files[0])
        n = len(text)
        cut = text.rfind("\n", 0, int(n * (1 - test_fraction)))
        cut = cut + 1 if cut > 0 else int(n * (1 - test_fraction))
        if cut <= 0 or cut >= n:
            raise DataError(f"{corpus.files[0]} is too short to split into train and validation text")
        return [(corpus.files[0], 0, cut)], [(corpus.files[0], cut, n)]
    files = corpus.files[:max_docs] if max_docs else corpus.files
    if len(files) < 2:
        raise DataError(f"{corpus.source} has {len(files)} file; need at least 2 to split by document "
                        "(or give a single file)")

    def frac(p: Path) -> float:
        h = hashlib.blake2b(str(p.relative_to(corpus.root)).encode(), digest_size=8).digest()
        return int.from_bytes(h, "little") / 2**64

    val = [p for p in files if frac(p) < test_fraction] or [max(files, key=frac)]
    if len(val) == len(files):
        val = val[:-1]
    train = [p for p in files if p not in set(val)]
    return train, val


def _doc_text(doc: Any) -> str:
    if isinstance(doc, tuple):
        p, lo, hi = doc
        return read_text(p)[lo:hi]
    return read_text(doc)


# -- token streams ---------------------------------------------------------------------------------

def cache_root() -> Path:
    """Folder of cached token streams: ``$GENLAB_CACHE/text`` or ``~/.cache/genlab/text``."""
    return Path(os.environ.get("GENLAB_CACHE", Path.home() / ".cache" / "genlab")) / "text"


def write_stream(docs: list[Any], tok: Tokenizer, path: Path) -> tuple[int, int]:
    """Encode documents one by one into a binary token file ``<|endoftext|> d1 <|endoftext|> d2 …``.

    Returns:
        (tokens written, characters or bytes of text they encode).
    """
    dtype = np.uint16 if tok.vocab_size <= 65536 else np.int32
    n, units = 0, 0
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        for doc in docs:
            text = _doc_text(doc)
            ids = tok.encode(text)
            chunk = np.concatenate([[tok.eot_id], ids]).astype(dtype)
            f.write(chunk.tobytes())
            n += len(chunk)
            units += tok.units(text)
    os.replace(tmp, path)
    return n, units


class TokenDataset:
    """One split as a memory-mapped token stream, with the :class:`~genlab.data.ArrayDataset` interface the
    trainer uses (``steps_per_epoch``, ``batch``, ``head``, ``x``, ``y``, ``spec``).

    Arguments:
        stream: token ids (a ``np.memmap`` or array).
        spec: ``DataSpec(kind="text", shape=(block_size,), vocab_size=…)``.
        tokenizer: the tokenizer that wrote the stream.
        units: characters (char) or UTF-8 bytes (bpe) of text in the stream.
        artifacts: files ``api.train`` writes into the run folder (``tokenizer.json``).
    """

    y: Tensor | None = None
    augment: Any = None

    def __init__(self, stream: np.ndarray, spec: DataSpec, tokenizer: Tokenizer, units: int,
                 artifacts: dict[str, bytes] | None = None) -> None:
        self.stream, self.spec, self.tokenizer, self.units = stream, spec, tokenizer, units
        self.artifacts = artifacts or {}
        self.block_size = spec.shape[0]

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


@dataclass(frozen=True)
class TextDataConfig:
    """How to read and tokenize text.

    Arguments:
        data: a built-in corpus (``pystdlib``, ``lee``), a text file, or a folder of text files.
        include: file-name globs a folder's files must match, e.g. ``*.py`` (none = every file).
        tokenizer: ``char``, ``bpe``, or a ``tokenizer.json`` / run folder whose tokenizer to reuse.
        vocab_size: BPE vocabulary size (including ``<|endoftext|>``).
        block_size: tokens per training window (the model's context length).
        test_fraction: share of documents (or of a single file's tail) held out for validation.
        max_docs: use at most this many files of a folder (None = all).
    """

    data: str = "lee"
    include: tuple[str, ...] = ()
    tokenizer: str = "char"
    vocab_size: int = 4096
    block_size: int = 128
    test_fraction: float = 0.1
    max_docs: int | None = None

    def __post_init__(self) -> None:
        check(256 + 1 <= self.vocab_size <= 1_000_000, "--vocab-size must be between 257 and 1,000,000")
        check(2 <= self.block_size <= 65536, f"--block-size must be between 2 and 65536, got {self.block_size}")
        check(0 < self.test_fraction < 1, f"--test-fraction must be in (0, 1), got {self.test_fraction}")
        check(self.max_docs is None or self.max_docs > 1, "--max-docs must be at least 2")


def load_text(cfg: TextDataConfig) -> tuple[TokenDataset, TokenDataset, dict[str, Any]]:
    """Read, split, tokenize and memory-map text as ``cfg`` says (token streams are cached by content key).

    Returns:
        (train, validation, preprocessing record).
    """
    corpus = find_corpus(cfg.data, cfg.include)
    train_docs, val_docs = split_documents(corpus, cfg.test_fraction, cfg.max_docs)
    fixed = None
    if cfg.tokenizer not in ("char", "bpe"):
        fixed = Tokenizer.load(cfg.tokenizer)
    stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in corpus.files]
    key_src = json.dumps([stats, cfg.test_fraction, cfg.max_docs, cfg.tokenizer if fixed is None else fixed.to_json(),
                          cfg.vocab_size if cfg.tokenizer == "bpe" else 0])
    folder = cache_root() / hashlib.blake2b(key_src.encode(), digest_size=12).hexdigest()
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        if fixed is not None:
            tok = fixed
        elif cfg.tokenizer == "char":
            tok = train_char(_doc_text(d) for d in train_docs)
        else:
            tok = train_bpe((_doc_text(d) for d in train_docs), cfg.vocab_size)
        (folder / TOKENIZER_FILE).write_text(tok.to_json(), encoding="utf-8")
        n_tr, u_tr = write_stream(train_docs, tok, folder / "train.bin")
        n_va, u_va = write_stream(val_docs, tok, folder / "val.bin")
        meta = {"train_tokens": n_tr, "train_units": u_tr, "val_tokens": n_va, "val_units": u_va,
                "dtype": "uint16" if tok.vocab_size <= 65536 else "int32", "source": corpus.source,
                "train_docs": len(train_docs), "val_docs": len(val_docs)}
        tmp = folder / "meta.json.tmp"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, meta_path)
    meta = json.loads(meta_path.read_text())
    tok_json = (folder / TOKENIZER_FILE).read_text(encoding="utf-8")
    tok = Tokenizer.from_json(tok_json)
    spec = DataSpec(kind="text", shape=(cfg.block_size,), vocab_size=tok.vocab_size)

    def stream(name: str, n: int) -> np.ndarray:
        if n == 0:
            return np.zeros(0, dtype=meta["dtype"])
        return np.memmap(folder / name, dtype=meta["dtype"], mode="r", shape=(n,))

    artifacts = {TOKENIZER_FILE: tok_json.encode("utf-8")}
    train = TokenDataset(stream("train.bin", meta["train_tokens"]), spec, tok, meta["train_units"], artifacts)
    val = TokenDataset(stream("val.bin", meta["val_tokens"]), spec, tok, meta["val_units"], artifacts)
    if len(val) == 0:
        raise DataError(f"the validation text of {cfg.data} has {len(val.stream)} tokens, fewer than one window of "
                        f"{cfg.block_size}; lower --block-size or raise --test-fraction")
    prep = {"source": meta["source"], "tokenizer": tok.kind, "vocab_size": tok.vocab_size, "unit": tok.unit,
            "train_tokens": meta["train_tokens"], "val_tokens": meta["val_tokens"], "train_docs": meta["train_docs"],
            "val_docs": meta["val_docs"], "cache": str(folder)}
    return train, val, prep


MODALITIES["text"] = Modality(TextDataConfig, load_text)
