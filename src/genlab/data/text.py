"""Text corpora: built-in ``pystdlib`` and ``lee``, user files and folders, UTF-8 checks, the split by document.

Documents and the train/validation split
----------------------------------------
A document is a file. A folder contributes every file matching ``--include`` globs (all files when none are given);
a file goes to validation when a hash of its relative path falls below ``--test-fraction`` (stable as files are
added), with at least one file in each split. A single file is cut once, at the line break nearest to
``1 - test_fraction`` of its length (the tail is validation, as nanoGPT splits tinyshakespeare).

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
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genlab.core import DATASETS, datasets_of, register_dataset
from genlab.errors import DataError


@dataclass
class Corpus:
    """Documents as files (read lazily) or as one file cut into a train head and a validation tail."""

    files: list[Path]
    root: Path
    source: str
    single: bool = False
    names: list[str] = field(default_factory=list)


@register_dataset("pystdlib", kind="text")
def pystdlib() -> Corpus:
    """Python standard library .py sources of this interpreter, test suites excluded (code; a file per document)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "test", "tests", "idle_test"}  # test suites hold deliberately non-UTF-8 sources
    files = sorted(p for p in root.rglob("*.py") if p.is_file() and not skip & set(p.relative_to(root).parts[:-1]))
    if not files:
        raise DataError(f"found no .py files under {root}; this Python has no standard library sources")
    return Corpus(files, root, f"python stdlib {root}")


@register_dataset("lee", kind="text")
def lee() -> Corpus:
    """Lee news corpus from the gensim wheel: 300 English news articles, one per line (~360 kB)."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the lee corpus ships with gensim: pip install gensim")
    p = Path(next(iter(spec.submodule_search_locations))) / "test" / "test_data" / "lee_background.cor"
    if not p.is_file():
        raise DataError(f"{p} is missing from the installed gensim; reinstall gensim")
    return Corpus([p], p.parent, "gensim lee_background.cor", single=True)


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
        if DATASETS[data].kind != "text":
            raise DataError(f"'{data}' is not a text dataset; text built-ins: {', '.join(datasets_of('text'))}")
        corpus = DATASETS[data]()
    else:
        p = Path(data).expanduser()
        if p.is_file():
            corpus = Corpus([p], p.parent, str(p), single=True)
        elif p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file()
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            corpus = Corpus(files, p, str(p))
        else:
            raise DataError(f"{data} is neither a text file, a folder nor a built-in text dataset "
                            f"({', '.join(datasets_of('text'))})")
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


def doc_text(doc: Any) -> str:
    """The text of a document from :func:`split_documents`."""
    if isinstance(doc, tuple):
        p, lo, hi = doc
        return read_text(p)[lo:hi]
    return read_text(doc)


