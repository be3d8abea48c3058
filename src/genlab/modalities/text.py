"""Text and code: UTF-8 files, folders or built-in corpora, as character or byte-level BPE token windows.

Data: :mod:`genlab.data.text` finds and splits the documents, :mod:`genlab.data.tokens` tokenizes them into cached
memory-mapped streams; the run keeps its tokenizer as ``tokenizer.json``. Samples are token ids; they are written
and printed as decoded text (a single sample streams as it is generated). Evaluation reports validation loss,
perplexity and bits per character/byte (:mod:`genlab.metrics.text`), and with ``--continuations`` BLEU, chrF and
ROUGE of greedy continuations of held-out prompts.

Tokenizer option: ``char``, ``bpe``, or a path to a ``tokenizer.json`` / run folder whose tokenizer to reuse
(fine-tuning with ``--init-from``).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import Tensor

from genlab.checkpoint import write_bytes
from genlab.config import build, check
from genlab.core import DataSpec
from genlab.data.text import doc_text, find_corpus, split_documents
from genlab.data.tokens import TOKENIZER_FILE, Tokenizer, token_streams, train_bpe, train_char
from genlab.data.vocab import text_pieces
from genlab.errors import CapabilityError, DataError
from genlab.modalities.base import (
    Column,
    Evaluation,
    Examples,
    Modality,
    Progress,
    Splits,
    TextBatch,
    TextDelta,
    TextStream,
    likelihood_rows,
    read_artifact,
    register_modality,
)
from genlab.samplers.decoding import DecodingOptions, next_token, rows_can_join

if TYPE_CHECKING:
    from genlab.data import Dataset
    from genlab.run import Run


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


def load_text(cfg: TextDataConfig) -> Splits:
    """Read, split, tokenize and memory-map text as ``cfg`` says (token streams are cached by content key).

    Returns:
        the train and validation token streams, the preprocessing record and the ``tokenizer.json`` artifact.

    Raises:
        DataError: for missing, binary or non-UTF-8 files, or validation text shorter than one window.
    """
    corpus = find_corpus(cfg.data, cfg.include)
    train_docs, val_docs = split_documents(corpus, cfg.test_fraction, cfg.max_docs)
    fixed = Tokenizer.load(cfg.tokenizer) if cfg.tokenizer not in ("char", "bpe") else None
    stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in corpus.files]
    key = json.dumps([stats, cfg.test_fraction, cfg.max_docs, cfg.tokenizer if fixed is None else fixed.to_json(),
                      cfg.vocab_size if cfg.tokenizer == "bpe" else 0])

    def make_tokenizer() -> Tokenizer:
        if fixed is not None:
            return fixed
        if cfg.tokenizer == "char":
            return train_char(doc_text(d) for d in train_docs)
        return train_bpe((doc_text(d) for d in train_docs), cfg.vocab_size)

    train, val, meta = token_streams(key, make_tokenizer, lambda: (doc_text(d) for d in train_docs),
                                     lambda: (doc_text(d) for d in val_docs),
                                     DataSpec(kind="text", shape=(cfg.block_size,), form="tokens"), corpus.source)
    if len(val) == 0:
        raise DataError(f"the validation text of {cfg.data} has {len(val.stream)} tokens, fewer than one window of "
                        f"{cfg.block_size}; lower --block-size or raise --test-fraction")
    tok = train.tokenizer
    prep = {"source": meta["source"], "tokenizer": tok.kind, "vocab_size": tok.vocab_size, "unit": tok.unit,
            "train_tokens": meta["train_tokens"], "val_tokens": meta["val_tokens"], "train_docs": meta["train_docs"],
            "val_docs": meta["val_docs"], "cache": meta["cache"]}
    return Splits(train, val, prep, {TOKENIZER_FILE: tok.to_json().encode("utf-8")})


@dataclass(frozen=True)
class TextEvalOptions:
    """Options of ``genlab eval`` on text runs.

    Arguments:
        continuations: also score this many greedy continuations of held-out prompts (BLEU, chrF, ROUGE-1/2/L
            against the held-out text); 0 = off.
    """

    continuations: int = 0

    def __post_init__(self) -> None:
        check(self.continuations >= 0, "--continuations must be >= 0")


def run_tokenizer(run: Run) -> Tokenizer:
    """The tokenizer of a text run.

    Raises:
        DataError: when the run has none.
    """
    tok = run.artifacts.get("tokenizer")
    if not isinstance(tok, Tokenizer):
        raise DataError(f"{run.path} has no {TOKENIZER_FILE}; text runs need their tokenizer")
    return tok


@register_modality("text")
class TextModality(Modality):
    """UTF-8 text as token windows ``int64 (N, block_size)``."""

    config_cls = TextDataConfig
    forms = ("tokens",)
    capabilities = frozenset({"stream", "prompt"})
    artifact_files = (TOKENIZER_FILE,)
    sample_formats = ("txt",)
    default_samples = 1
    prints_samples = True
    eval_options_cls = TextEvalOptions
    eval_keys = ("likelihood", "loss", "perplexity", "bits_per_token")

    def load(self, cfg: Any, form: str) -> Splits:
        return load_text(cfg)

    def claims(self, path: Path) -> int:
        return 1 if path.is_file() or path.is_dir() else 0

    def data_config(self, run_config: Mapping[str, Any], path: Path | None) -> Any:
        """The run's data config, with the tokenizer pointed at the run's own copy (a fine-tuned run must not
        need its base run any more)."""
        data = dict(run_config["data"])
        if "tokenizer" in data and path is not None and (path / TOKENIZER_FILE).is_file():
            data["tokenizer"] = str(path)
        return build(self.config_cls, data)

    def open_artifacts(self, files: Mapping[str, bytes]) -> dict[str, Any]:
        return read_artifact(files, TOKENIZER_FILE, "tokenizer", Tokenizer.from_json)

    # -- samples -----------------------------------------------------------------------------------
    def texts(self, run: Run, samples: Tensor) -> list[str]:
        """Decoded text of each sample."""
        tok = run_tokenizer(run)
        return [tok.decode(row) for row in samples.tolist()]

    def show(self, run: Run, samples: Tensor) -> str:
        return "\n\n".join(f"--- sample {i} ---\n{t}" for i, t in enumerate(self.texts(run, samples))) + "\n"

    def write_samples(self, run: Run, samples: Tensor, path: Path, fmt: str, labels: Tensor | None = None,
                      options: Mapping[str, Any] | None = None) -> Path:
        write_bytes(path, self.show(run, samples).encode("utf-8"))
        return path

    def render(self, run: Run, samples: Tensor) -> tuple[str, bytes]:
        return "text/plain; charset=utf-8", self.show(run, samples).encode("utf-8")

    def stream(self, run: Run, *, seed: int = 0, options: Mapping[str, Any] | None = None) -> Iterator[str]:
        """The prompt, then the text of one sample piece by piece as tokens are generated (a split UTF-8 character
        waits for its rest), cut before the first stop string."""
        model = run.model
        opts = dict(options or {})
        tok = run_tokenizer(run)
        prompt = str(opts.get("prompt", ""))
        stops = tuple(opts.get("stop", ()))
        tok.encode(prompt, strict=True)  # a bad prompt fails before anything is printed
        g = torch.Generator(device=model.device).manual_seed(seed)
        yield from text_pieces(prompt, (int(t[0]) for t in model.stream(1, generator=g, **opts)), tok.decode, stops)

    # -- applications --------------------------------------------------------------------------------
    def read_examples(self, run: Run, source: Path | None = None) -> Examples:
        """Text to score with a run: the run's validation windows (None), or every document (file) at ``source``
        (a file or a folder, as ``--data`` reads them), each tokenized with the run's tokenizer as the training
        stream is (``<|endoftext|>`` first) and cut into non-overlapping windows of the run's block size; ``units``
        maps each window to its document.

        Raises:
            DataError: for unreadable files, or a document shorter than one window.
        """
        if source is None:
            return super().read_examples(run, None)
        tok = run_tokenizer(run)
        t = int(run.spec.shape[0])
        corpus = find_corpus(str(source), tuple(run.config.get("data", {}).get("include", ())))
        windows, units, names = [], [], []
        for i, path in enumerate(corpus.files):
            ids = np.concatenate([[tok.eot_id], tok.encode(doc_text(path))]).astype(np.int64)
            n = len(ids) // t
            if n == 0:
                raise DataError(f"{path.name} has {len(ids)} tokens, fewer than one window of {t}; give longer "
                                "documents")
            windows.append(torch.from_numpy(ids[: n * t].reshape(n, t)))
            units.append(torch.full((n,), i, dtype=torch.long))
            names.append(str(path.relative_to(corpus.root)) if path != corpus.root else path.name)
        return Examples(torch.cat(windows), names, None, torch.cat(units))

    def stream_texts(self, run: Run, n: int, *, seed: int = 0, options: Mapping[str, Any] | None = None
                     ) -> TextStream:
        """``n`` continuations of the prompt generated together, as text pieces per token (a split UTF-8
        character waits for its rest); a sample ends at a stop string (cut before it), at ``<|endoftext|>``
        (finish ``stop``) or after ``max_tokens`` tokens (``length``). ``samples`` holds the generated ids
        ``(n, max_tokens)``, padded with ``<|endoftext|>`` after each sample's end."""
        model = run.model
        if not model.streaming:
            raise CapabilityError(f"family '{model.family}' cannot stream its samples")
        opts = dict(options or {})
        tok = run_tokenizer(run)
        prompt = str(opts.get("prompt", ""))
        stops = tuple(opts.get("stop", ()))
        prompt_ids: np.ndarray | list[int] = tok.encode(prompt, strict=True) if prompt else []
        limit = int(opts.get("max_tokens") or run.spec.shape[0])
        g = torch.Generator(device=model.device).manual_seed(seed)
        out = TextStream(len(prompt_ids), iter(()))

        def steps() -> Iterator[list[TextDelta]]:
            rows = [_RowText(tok, stops, limit) for _ in range(n)]
            gen = cast(Generator[Tensor, None, None], model.stream(n, generator=g, **opts))
            try:
                for t in gen:
                    yield [dataclasses.replace(r.push(int(t[i])), index=i) for i, r in enumerate(rows) if not r.done]
                    if all(r.done for r in rows):
                        break
            finally:
                gen.close()  # a stream cut short (a client gone) still leaves what it generated in samples
                out.samples = torch.stack([r.row() for r in rows])

        out.steps = steps()
        return out

    def text_batch(self, run: Run, slots: int, *, seed: int = 0, options: Mapping[str, Any] | None = None
                   ) -> TextBatch | None:
        """Generations of one prompt that join and leave a running batch between steps, for a family with a
        ``row_decoder`` (``gpt``) and options it can decode that way (:func:`rows_can_join`); None otherwise."""
        model = run.model
        make = cast("Callable[[int], Any] | None", getattr(model, "row_decoder", None))
        if make is None:
            return None
        o = DecodingOptions(**dict(options or {}))
        decoder = make(slots) if rows_can_join(o) else None
        if decoder is None:
            return None
        tok = run_tokenizer(run)
        limit = o.max_tokens or run.spec.shape[0]
        ctx = cast("Callable[[str], list[int]]", model.context_ids)(o.prompt)
        if not decoder.fits(len(ctx), limit):
            return None  # past the block size only the fixed-batch decoder (which re-encodes a window) can go
        g = torch.Generator(device=model.device).manual_seed(seed)
        return _TextRows(decoder, ctx, o, functools.partial(_RowText, tok, o.stop, limit), g)

    # -- monitoring --------------------------------------------------------------------------------
    def drift_features(self, run: Run, samples: Tensor) -> dict[str, np.ndarray]:
        """Per sample (token ids, cut at the first ``<|endoftext|>``): ``nll`` — mean negative log-likelihood per
        token under the run's model as loaded at deploy time (the log of its perplexity), ``length`` — characters
        of its text, and ``distinct2`` — distinct token bigrams over all its bigrams (Li et al., 2016,
        arXiv:1510.03055, per sample)."""
        tok = run_tokenizer(run)
        lm: Any = run.model  # a token model with token_nll (as the text metrics use)
        rows = [r[: r.index(tok.eot_id)] if tok.eot_id in r else r for r in samples.tolist()]
        block = run.spec.shape[0]
        nll = np.full(len(rows), np.nan)
        with torch.no_grad():
            for length in sorted({min(len(r), block) for r in rows if r}):
                idx = [i for i, r in enumerate(rows) if r and min(len(r), block) == length]
                x = torch.tensor([rows[i][:length] for i in idx], dtype=torch.long, device=lm.device)
                for lo in range(0, len(idx), 64):
                    per_token = lm.token_nll(x[lo : lo + 64]).double().mean(1).cpu().numpy()
                    nll[idx[lo : lo + 64]] = per_token
        lengths = np.array([len(tok.decode(r)) for r in rows], dtype=np.float64)
        distinct = np.array([len(set(itertools.pairwise(r))) / (len(r) - 1) if len(r) > 1 else 1.0
                             for r in rows])
        return {"nll": nll, "length": lengths, "distinct2": distinct}

    def drift_statistics(self, run: Run, reference: Mapping[str, np.ndarray], window: Mapping[str, np.ndarray],
                         origin: np.ndarray | None = None) -> dict[str, float]:
        """``log_perplexity``: |Δ mean NLL per token| (empty samples left out); ``length``: the KS distance of the
        length distributions; ``distinct2``: |Δ mean distinct-2|."""
        from genlab.metrics.drift import ks_distance, mean_shift

        ref_nll, win_nll = reference["nll"], window["nll"]
        ref_nll, win_nll = ref_nll[np.isfinite(ref_nll)], win_nll[np.isfinite(win_nll)]
        return {"log_perplexity": mean_shift(ref_nll, win_nll) if len(ref_nll) and len(win_nll) else 0.0,
                "length": ks_distance(reference["length"], window["length"]),
                "distinct2": mean_shift(reference["distinct2"], window["distinct2"])}

    # -- evaluation --------------------------------------------------------------------------------
    def likelihood(self, run: Run, test: Dataset, batch_size: int) -> dict[str, Any]:
        from genlab.metrics.text import language_model_report

        return language_model_report(run.model, test.x, run_tokenizer(run), batch_size)

    def sample_metrics(self, run: Run, splits: Splits, options: Any, evaluation: Evaluation, *, seed: int,
                       progress: Progress) -> None:
        from genlab.metrics.text import continuation_report

        if options.continuations:
            progress("continuations", 0, 1)
            evaluation.report.update(continuation_report(run.model, splits.test.x, run_tokenizer(run),
                                                         options.continuations, seed=seed))
            progress("continuations", 1, 1)

    def rows(self, report: Mapping[str, Any]) -> list[tuple[str, str]]:
        rows = likelihood_rows(report)
        for name, key in (("val loss (nats/token)", "loss"), ("perplexity", "perplexity"),
                          ("bits/char", "bits_per_char"), ("bits/byte", "bits_per_byte"), ("BLEU", "bleu"),
                          ("chrF", "chrf"), ("ROUGE-1", "rouge1"), ("ROUGE-2", "rouge2"), ("ROUGE-L", "rougeL")):
            if key in report:
                rows.append((name, f"{report[key]:.4f}"))
        return rows

    def summary(self, report: Mapping[str, Any]) -> dict[str, Any]:
        return {k: report.get(k) for k in ("loss", "perplexity", "bits_per_char", "bits_per_byte", "bleu", "chrf",
                                           "rougeL") if k in report}

    def columns(self) -> list[tuple[str, str, list[Column]]]:
        return [("Language modelling", "On the held-out text; lower is better except for the overlap scores.",
                 [Column("loss", "val loss", False), Column("perplexity", "perplexity", False),
                  Column("bits_per_char", "bits/char", False), Column("bits_per_byte", "bits/byte", False),
                  Column("bleu", "BLEU", True), Column("chrf", "chrF", True), Column("rougeL", "ROUGE-L", True)])]


class _RowText:
    """One sample's text as its tokens come: the new piece per token (a split UTF-8 character waits for its rest),
    cut before a stop string, ended by ``<|endoftext|>`` or the token limit."""

    def __init__(self, tok: Tokenizer, stops: tuple[str, ...], limit: int) -> None:
        self.tok, self.stops, self.limit = tok, stops, limit
        self.ids: list[int] = []
        self.shown = ""
        self.done = False

    def push(self, tid: int) -> TextDelta:
        """The sample's delta after token ``tid`` (index 0: the caller sets it)."""
        if tid == self.tok.eot_id:
            self.done = True
            return TextDelta(0, "", "stop")
        self.ids.append(tid)
        text = self.tok.decode(self.ids)
        cut = min((text.find(s) for s in self.stops if s in text), default=-1)
        if cut >= 0:
            self.done = True
            return TextDelta(0, text[len(self.shown) : max(cut, len(self.shown))], "stop")
        if len(self.ids) >= self.limit:
            self.done = True
            return TextDelta(0, text[len(self.shown) :], "length")
        if text.endswith("\ufffd"):
            return TextDelta(0, "")
        piece, self.shown = text[len(self.shown) :], text
        return TextDelta(0, piece)

    def row(self) -> Tensor:
        """The generated ids ``(limit,)``, padded with ``<|endoftext|>``."""
        out = torch.full((self.limit,), self.tok.eot_id, dtype=torch.long)
        if self.ids:
            out[: len(self.ids)] = torch.tensor(self.ids[: self.limit])
        return out


class _TextRows(TextBatch):
    """:class:`TextBatch` over a family's row decoder: every live generation draws its next token in one network
    call per step; one that ends leaves its row, and a new one takes a free row at the next step."""

    def __init__(self, decoder: Any, ctx: list[int], o: DecodingOptions, new_row: Callable[[], _RowText],
                 generator: torch.Generator) -> None:
        self.decoder, self.ctx, self.o, self.new_row, self.g = decoder, ctx, o, new_row, generator
        self.prompt_tokens = len(ctx) - 1
        self._ids: list[int] = []  # generation id per decoder row
        self._logits: list[Tensor] = []  # next-token logits per decoder row, (V,) each
        self._text: dict[int, _RowText] = {}
        self._next = 0

    @property
    def live(self) -> int:
        return len(self._ids)

    @property
    def room(self) -> int:
        return self.decoder.slots - len(self._ids)

    def add(self) -> int:
        self._logits.append(self.decoder.add(self.ctx))
        rid, self._next = self._next, self._next + 1
        self._ids.append(rid)
        self._text[rid] = self.new_row()
        return rid

    def _drop(self, row: int) -> None:
        moved = self.decoder.remove(row)
        self._ids[row], self._logits[row] = self._ids[moved], self._logits[moved]
        self._ids.pop()
        self._logits.pop()

    def step(self) -> list[TextDelta]:
        if not self._ids:
            return []
        o = self.o
        with torch.no_grad():
            tok = next_token(torch.stack(self._logits), o.temperature, o.top_k, o.top_p, self.g)  # (live,)
        toks = tok.tolist()
        deltas, ended = [], []
        for row, (rid, t) in enumerate(zip(self._ids, toks, strict=True)):
            text = self._text[rid]
            deltas.append(dataclasses.replace(text.push(t), index=rid))
            if text.done:
                ended.append(row)
        for row in reversed(ended):  # the last row moves into a freed one: go from the end
            self._drop(row)
            toks[row] = toks[len(self._ids)]
        if self._ids:
            logits = self.decoder.step(torch.tensor(toks[: len(self._ids)], device=tok.device))
            self._logits = list(logits.unbind(0))
        return deltas

    def remove(self, index: int) -> None:
        if index in self._ids:
            self._drop(self._ids.index(index))
        self._text[index].done = True

    def samples(self, indices: Sequence[int]) -> Tensor:
        return torch.stack([self._text[i].row() for i in indices])
