"""Text metrics: validation loss, perplexity, bits per character/byte, and BLEU / chrF / ROUGE of prompt
continuations against held-out references.

Definitions: over ``N`` evaluated tokens with total negative log-likelihood ``L`` nats, loss ``= L / N``,
perplexity ``= exp(L / N)`` and bits per unit ``= L / (U · ln 2)`` where ``U`` counts the characters (char
tokenizer) or UTF-8 bytes (byte-level BPE) those tokens encode (``<|endoftext|>`` counts as none), so models with
different tokenizers are comparable. A model that is uniform over a vocabulary of ``V`` tokens has perplexity ``V``.

Overlap metrics are computed by the reference libraries, never re-implemented here: BLEU and chrF with
``sacrebleu`` (Post, "A Call for Clarity in Reporting BLEU Scores", 2018, arXiv:1804.08771), ROUGE-1/2/L with
``rouge-score`` (Lin, "ROUGE", 2004).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from genlab.data.tokens import Tokenizer
from genlab.samplers.decoding import generate


def perplexity(mean_nll_nats: float) -> float:
    """``exp`` of the mean per-token negative log-likelihood in nats."""
    return float(math.exp(mean_nll_nats))


def unit_counts(tok: Tokenizer) -> np.ndarray:
    """Characters (char) or UTF-8 bytes (byte-level BPE) each token id stands for → ``(V,)`` int64."""
    counts = np.zeros(tok.vocab_size, dtype=np.int64)
    if tok.kind == "char":
        counts[1:] = 1
        return counts
    if tok.symbols:  # a symbol notation (SMILES/SELFIES): the characters of each symbol
        counts[1:] = [len(sym) for sym in tok.symbols]
        return counts
    special = {t.content for t in tok.hf.get_added_tokens_decoder().values()}
    for i in range(tok.vocab_size):
        s = tok.hf.id_to_token(i)
        counts[i] = 0 if s is None or s in special else len(s)  # byte-level: one symbol per byte
    return counts


@torch.no_grad()
def token_nll(model: Any, windows: Tensor, batch_size: int = 32) -> Tensor:
    """Per-token negative log-likelihood (nats) of windows ``(N, T)`` under a token model → ``(N, T)`` float64."""
    model.eval()
    out = [model.token_nll(windows[lo : lo + batch_size].to(model.device)).double().cpu()
           for lo in range(0, len(windows), batch_size)]
    return torch.cat(out)


def language_model_report(model: Any, windows: Tensor, tok: Tokenizer, batch_size: int = 32) -> dict[str, Any]:
    """Loss, perplexity, bits per token and per char/byte of ``model`` on windows ``(N, T)`` of token ids."""
    nll = token_nll(model, windows, batch_size)
    units = int(unit_counts(tok)[windows.numpy()].sum())
    total = float(nll.sum())
    mean = total / nll.numel()
    lp = -nll.sum(1)
    return {
        "likelihood": "exact",
        "loss": mean,
        "perplexity": perplexity(mean),
        "bits_per_token": mean / math.log(2),
        f"bits_per_{tok.unit}": total / (max(units, 1) * math.log(2)),
        "unit": tok.unit,
        "nll_nats": float(-lp.mean()),
        "nll_nats_sem": float(lp.std() / math.sqrt(len(lp))) if len(lp) > 1 else 0.0,
        "bits_per_dim": mean / math.log(2),
        "n_examples": len(windows),
        "n_tokens": int(nll.numel()),
        "n_units": units,
    }


def overlap_scores(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """Corpus BLEU and chrF (sacrebleu) and mean ROUGE-1/2/L F1 (rouge-score) of hypotheses vs references."""
    import sacrebleu
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    rouge = {k: 0.0 for k in ("rouge1", "rouge2", "rougeL")}
    for h, r in zip(hypotheses, references, strict=True):
        for k, s in scorer.score(r, h).items():
            rouge[k] += s.fmeasure / len(hypotheses)
    return {"bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
            "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score,
            **{k: 100 * v for k, v in rouge.items()}}


@torch.no_grad()
def continuation_report(model: Any, windows: Tensor, tok: Tokenizer, n: int = 32, temperature: float = 0.0,
                        seed: int = 0) -> dict[str, Any]:
    """Split ``n`` held-out windows in half, continue each first half with the model, score against the second.

    Arguments:
        model: a token model with ``decoder`` (e.g. :class:`~genlab.models.gpt.GPT`).
        windows: held-out token windows ``(N, T)``.
        tok: the run's tokenizer.
        n: prompts to continue (spread evenly over the windows).
        temperature: sampling temperature (0 = greedy, deterministic).
        seed: seed for sampled continuations.
    """
    model.eval()
    idx = torch.linspace(0, len(windows) - 1, min(n, len(windows))).round().long()
    w = windows[idx].to(model.device)
    half = w.shape[1] // 2
    bos = torch.full_like(w[:, :1], model.config.bos_id)
    g = torch.Generator(device=model.device).manual_seed(seed)
    steps = list(generate(model.decoder(len(w)), torch.cat([bos, w[:, :half]], dim=1), w.shape[1] - half,
                          temperature=temperature, generator=g))
    hyps = [tok.decode(row) for row in torch.stack(steps, 1).tolist()]
    refs = [tok.decode(row) for row in w[:, half:].tolist()]
    return {"continuations": len(w), "prompt_tokens": half, **overlap_scores(hyps, refs),
            "example": {"prompt": tok.decode(w[0, :half].tolist()), "continuation": hyps[0], "reference": refs[0]}}
