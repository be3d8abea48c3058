"""``genlab audit RUN``: memorization, privacy and bias audits of a run, written as ``audit.json``, a
``MODEL_CARD.md`` (data, intended use, metrics, the audit figures, known limitations) and an *Audit* section of the
run's ``report.html``.

What is audited depends on the run's kind of data: an audit per modality kind is registered with
:func:`register_audit` (images and text here; the table audit — demographic parity of a protected column, DCR —
plugs in the same way once the tabular modality is registered).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from genlab.core import Registry
from genlab.errors import CapabilityError, ConfigError

if TYPE_CHECKING:
    from genlab.modalities.base import Splits
    from genlab.run import Run

CARD, RESULT = "MODEL_CARD.md", "audit.json"
_START, _END = "<!-- genlab-audit:start -->", "<!-- genlab-audit:end -->"


@dataclass(frozen=True)
class AuditOptions:
    """What ``genlab audit`` draws (every field is a ``--field-name`` option).

    Arguments:
        samples: generated samples scored (memorization, DCR, bias; also the extraction attack's pool).
        members: training members and as many held-out examples for membership inference.
        seed: sampling seed.
    """

    samples: int = 500
    members: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if self.samples < 20:
            raise ConfigError(f"--samples must be at least 20, got {self.samples}")
        if self.members < 10:
            raise ConfigError(f"--members must be at least 10, got {self.members}")


AuditFn = Callable[["Run", "Splits", AuditOptions], tuple[dict[str, Any], list[str]]]
AUDITS: Registry[AuditFn] = Registry("audit")


def register_audit(kind: str) -> Callable[[AuditFn], AuditFn]:
    """Function decorator: the audit of runs of modality ``kind``: ``fn(run, splits, options) -> (result, html
    blocks)``."""
    return AUDITS.register(kind)


def _batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, size: int = 100) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([fn(x[lo : lo + size]).cpu() for lo in range(0, len(x), size)])


@register_audit("image")
def audit_images(run: Run, splits: Splits, opts: AuditOptions) -> tuple[dict[str, Any], list[str]]:
    """Images: tiled/feature copy detection, extraction attack, membership inference, DCR, class bias."""
    from genlab.audit.bias import class_balance, per_class_accuracy
    from genlab.audit.memorization import copy_scores, extraction_attack
    from genlab.audit.privacy import as_vectors, dcr, membership_inference
    from genlab.metrics.features import feature_net
    from genlab.metrics.images import draw_samples
    from genlab.report.html import image_block, pairs_png

    model = run.model
    x, labels, _ = draw_samples(model, opts.samples, seed=opts.seed)
    train, test = splits.train, splits.test
    net = None
    try:
        net = feature_net("classifier", run.data, run.spec)
    except Exception:  # no shipped classifier for this data: pixel-space audits only
        net = None
    feats = None
    probs = test_probs = None
    if net is not None:
        fs, probs = net(x)
        ft, _ = net(train.x)
        fh, test_probs = net(test.x)
        feats = (fs, ft, fh)
    memo = copy_scores(x, train.x, test.x, features=feats)
    memo["extraction"] = extraction_attack(x, train.x)
    m = min(opts.members, len(train), len(test))
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(opts.seed))[:m]
    members, non = train.x[idx], test.x[:m]
    lp_m = lp_n = None
    if model.likelihood != "none":
        ym = None if train.y is None or not model.conditional else train.y[idx]
        yn = None if test.y is None or not model.conditional else test.y[:m]
        lp_m = torch.cat([model.log_prob(members[lo : lo + 100].to(model.device),
                                         None if ym is None else ym[lo : lo + 100].to(model.device)).cpu()
                          for lo in range(0, m, 100)])
        lp_n = torch.cat([model.log_prob(non[lo : lo + 100].to(model.device),
                                         None if yn is None else yn[lo : lo + 100].to(model.device)).cpu()
                          for lo in range(0, m, 100)])
    v = lambda t: as_vectors(t, 256)  # noqa: E731
    privacy = {"membership": membership_inference(v(members), v(non), v(x), lp_m, lp_n),
               "dcr": dcr(v(x), v(train.x), v(test.x), seed=opts.seed)}
    if run.path is not None and (Path(run.path) / "privacy.json").is_file():
        privacy["dp"] = json.loads((Path(run.path) / "privacy.json").read_text())
    bias: dict[str, Any] = {}
    if probs is not None and train.y is not None:
        pred = probs.argmax(1).numpy()
        k = run.spec.num_classes
        if labels is not None:
            ref = None
            if test_probs is not None and test.y is not None:
                tp, ty = test_probs.argmax(1).numpy(), test.y.numpy()
                ref = [float((tp[ty == c] == c).mean()) for c in range(k)]
            bias["per_class_accuracy"] = per_class_accuracy(pred, labels.numpy(), k, ref)
        else:
            prior = np.bincount(train.y.numpy(), minlength=k) / len(train.y)
            bias["class_balance"] = class_balance(pred, prior)
    else:
        bias["note"] = "no shipped classifier for this data: class balance and per-class accuracy not measured"
    blocks = []
    if memo["pairs"]:
        blocks.append(image_block("most copy-like samples (top) and their nearest training images (bottom)",
                                  pairs_png(x, train.x, memo["pairs"])))
    return {"memorization": memo, "privacy": privacy, "bias": bias}, blocks


@register_audit("text")
def audit_text(run: Run, splits: Splits, opts: AuditOptions) -> tuple[dict[str, Any], list[str]]:
    """Text: verbatim n-gram copies, likelihood membership inference, gendered-term representation."""
    from genlab.audit.bias import gender_representation
    from genlab.audit.memorization import verbatim_ngrams
    from genlab.audit.privacy import auc
    from genlab.modalities.text import run_tokenizer

    model, tok = run.model, run_tokenizer(run)
    n = max(1, opts.samples // 10)  # text samples are long: a tenth as many
    g = torch.Generator(device=model.device).manual_seed(opts.seed)
    with torch.no_grad():
        ids = model.sample(n, generator=g).cpu()
    texts = [tok.decode(r) for r in ids.tolist()]
    stream = np.asarray(getattr(splits.train, "stream", splits.train.x.flatten().numpy()))
    memo = {"verbatim": verbatim_ngrams(ids.tolist(), stream, n=16)}
    m = min(opts.members, len(splits.train), len(splits.test))
    mem, non = splits.train.head(m).x, splits.test.head(m).x
    lp = lambda t: _batched(lambda b: model.log_prob(b.to(model.device)), t, 32)  # noqa: E731
    privacy = {"membership": {"n_members": len(mem), "n_non_members": len(non),
                              "likelihood_auc": auc(lp(mem).numpy(), lp(non).numpy())}}
    train_text = tok.decode(stream[: 200_000].tolist())
    bias = {"gender_samples": gender_representation(texts), "gender_training": gender_representation([train_text])}
    return {"memorization": memo, "privacy": privacy, "bias": bias}, []


def audit(source: Run | str | Path, *, write: bool = True, **options: Any) -> dict[str, Any]:
    """Audit a run: memorization, privacy (membership inference, DCR, the DP budget spent) and bias.

    Arguments:
        source: a run or its folder.
        write: write ``audit.json``, ``MODEL_CARD.md`` and the *Audit* section of ``report.html`` into the run.
        **options: :class:`AuditOptions` fields (``samples``, ``members``, ``seed``).

    Returns:
        the audit (JSON-able), with the paths written under ``"files"``.

    Raises:
        CapabilityError: for a kind of data with no registered audit; ConfigError for bad options.
    """
    from genlab.api import as_run, load_splits
    from genlab.config import build

    run = as_run(source)
    opts = build(AuditOptions, options)
    kind = run.modality.kind
    if kind not in AUDITS:
        raise CapabilityError(f"no audit is registered for {kind} data (audits exist for: {', '.join(AUDITS)})")
    splits = load_splits(run)
    result, blocks = AUDITS[kind](run, splits, opts)
    result = {"family": run.family, "data": run.data, "kind": kind, "options": vars(opts), **result}
    result = json.loads(json.dumps(result, default=_jsonable))
    if write and run.path is not None:
        from genlab.checkpoint import write_bytes, write_json

        folder = Path(run.path)
        write_json(folder / RESULT, result)
        write_bytes(folder / CARD, model_card(run, result).encode("utf-8"))
        report = write_section(folder / "report.html", audit_html(result, blocks), f"{run.family} run {folder.name}")
        result["files"] = [str(folder / RESULT), str(folder / CARD), str(report)]
    return result


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, torch.Tensor):
        return v.tolist()
    return str(v)


def _pct(v: Any) -> str:
    return "–" if not isinstance(v, int | float) or not math.isfinite(v) else f"{100 * v:.1f}%"


def _num(v: Any, d: int = 3) -> str:
    return "–" if not isinstance(v, int | float) or not math.isfinite(v) else f"{v:.{d}f}"


def audit_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """``(figure, value)`` rows of an audit, for the CLI table, the model card and the report."""
    rows: list[tuple[str, str]] = []
    memo, priv, bias = result.get("memorization", {}), result.get("privacy", {}), result.get("bias", {})
    if "flagged_share" in memo:
        rows.append(("samples flagged as copies (tiled pixels)", f"{_pct(memo['flagged_share'])} of "
                     f"{memo['n_samples']} (held-out real images: {_pct(memo.get('test_flagged_share'))})"))
        if "feature_flagged_share" in memo:
            rows.append(("samples flagged as copies (classifier features)",
                         f"{_pct(memo['feature_flagged_share'])} (held-out: "
                         f"{_pct(memo.get('feature_test_flagged_share'))})"))
        ext = memo.get("extraction", {})
        rows.append(("extraction attack", f"{ext.get('n_extracted', 0)} training images extracted from "
                     f"{ext.get('n_clusters', 0)} clusters of ≥ {ext.get('clique')} near-identical generations"))
    if "verbatim" in memo:
        vb = memo["verbatim"]
        rows.append((f"verbatim {vb['n']}-token copies", f"{_pct(vb['ngram_share'])} of generated {vb['n']}-grams; "
                     f"{_pct(vb['samples_with_copy'])} of samples contain one"))
    mia = priv.get("membership", {})
    if "likelihood_auc" in mia:
        rows.append(("membership inference AUC (likelihood)", _num(mia["likelihood_auc"])))
    if "distance_auc" in mia:
        rows.append(("membership inference AUC (nearest sample)", _num(mia["distance_auc"])))
    if "dcr" in priv:
        d = priv["dcr"]
        rows.append(("DCR train / holdout (median)", f"{_num(d['dcr_train_median'])} / "
                     f"{_num(d['dcr_holdout_median'])}; closer to train: {_pct(d['closer_to_train_share'])}"))
    if "dp" in priv:
        dp = priv["dp"]
        eps = dp.get("epsilon_spent")
        rows.append(("differential privacy", f"ε = {_num(eps, 2) if eps is not None else '∞'}, δ = {dp['delta']:g}, "
                     f"C = {dp['max_grad_norm']:g}, σ = {_num(dp['noise_multiplier'])}, {dp['steps']} steps"))
    else:
        rows.append(("differential privacy", "none (trained without --dp-epsilon)"))
    if "class_balance" in bias:
        cb = bias["class_balance"]
        rows.append(("class balance vs training prior", f"TV {_num(cb['tv'])}, χ² p = {cb['chi2_p_value']:.2g}; "
                     f"class {cb['most_over']} ×{_num(cb['max_ratio'], 2)}, class {cb['most_under']} "
                     f"×{_num(cb['min_ratio'], 2)}"))
    if "per_class_accuracy" in bias:
        pa = bias["per_class_accuracy"]
        rows.append(("per-class accuracy of conditional samples", f"mean {_num(pa['mean'])}, worst class "
                     f"{pa['worst_class']} {_num(pa['min'])}, gap {_num(pa['gap'])}"))
    if "gender_samples" in bias:
        gs, gt = bias["gender_samples"], bias["gender_training"]
        rows.append(("female share of gendered terms", f"samples {_pct(gs['shares'].get('female'))} "
                     f"({gs['terms']} terms) vs training {_pct(gt['shares'].get('female'))}"))
    if "demographic_parity" in bias:
        dpar = bias["demographic_parity"]
        rows.append(("demographic-parity difference", f"real {_num(dpar['difference_real'])}, synthetic "
                     f"{_num(dpar['difference_synthetic'])}"))
    return rows


def model_card(run: Run, result: dict[str, Any]) -> str:
    """``MODEL_CARD.md`` text: model, data, intended use, metrics, audit figures, limitations."""
    cfg = run.config
    folder = Path(run.path).name if run.path is not None else "(in memory)"
    ev: dict[str, Any] = {}
    if run.path is not None and (Path(run.path) / "eval.json").is_file():
        ev = json.loads((Path(run.path) / "eval.json").read_text())
    lines = [f"# Model card: {run.family} on {run.data} ({folder})", "",
             "Written by `genlab audit`; every figure below was measured on this run.", "", "## Model", "",
             f"- family: `{run.family}` (likelihood: {run.model.likelihood}); genlab "
             f"{cfg.get('genlab_version', '?')}; created {cfg.get('created', '?')}",
             f"- parameters: {sum(p.numel() for p in run.model.parameters()):,}",
             f"- options: `{json.dumps(cfg.get('model', {}))}`", "", "## Data", "",
             f"- `{run.data}` ({run.modality.kind}), examples of shape {tuple(run.spec.shape)}"
             + (f", {run.spec.num_classes} classes" if run.spec.num_classes else ""),
             f"- preprocessing: `{json.dumps(cfg.get('preprocessing', {}))}`", "",
             "## Intended use", "",
             "Research and teaching: studying generative models, their sample quality, likelihoods and failure "
             "modes. Not for producing content presented as real, not for decisions about people, and not for "
             "release of samples from private data unless the model was trained with differential privacy and "
             "the audit below is acceptable. Sign what you publish (`genlab sample … --sign`) and consider a "
             "watermark (`--watermark KEY`) where the family offers one.", "", "## Metrics", ""]
    if ev:
        for k in ("bits_per_dim", "nll_nats"):
            if k in ev:
                lines.append(f"- {k.replace('_', ' ')}: {_num(ev[k], 4)} ({ev.get('likelihood', '')}) on the "
                             f"{ev.get('split', 'test')} split")
        img = ev.get("images", {})
        for name in ("classifier", "inception"):
            if name in img:
                lines.append(f"- FID ({name} features): {_num(img[name]['fid'])} with {img['n_samples']} samples")
    else:
        lines.append("- none recorded: run `genlab eval RUN` to add likelihood and sample-quality figures")
    lines += ["", "## Audit", "", "| figure | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in audit_rows(result)]
    lines += ["", "## Known limitations", "",
              "- Copy detection compares against this run's training split only, in pixel (and, where a shipped "
              "classifier exists, feature) space; a copy of data outside it, or a transformed copy, is not caught.",
              "- Membership-inference AUCs are from simple attacks (likelihood threshold, nearest generated "
              "sample) on a few hundred examples; stronger attacks can do better, so an AUC near 0.5 is not a "
              "proof of privacy. Only differential privacy gives a guarantee, and only for the ε recorded above.",
              "- Bias figures use the shipped classifier (whose own per-class errors are listed beside them) or "
              "fixed gendered word lists; they measure representation, not harm.",
              "- Small CPU-trained models: sample quality is far below published models of the same family.", ""]
    return "\n".join(lines)


def audit_html(result: dict[str, Any], blocks: list[str]) -> str:
    """The *Audit* section body: the figures table, then the image blocks."""
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in audit_rows(result))
    body = f"<table><tr><th>figure</th><th>value</th></tr>{rows}</table>"
    return body + "".join(blocks)


def write_section(path: Path, body: str, title: str) -> Path:
    """Put the *Audit* section into ``report.html`` (replacing an earlier one; a new page when there is none)."""
    from genlab.report.html import render, write_report

    section = f"{_START}<h2>Audit</h2>{body}{_END}"
    if path.is_file():
        page = path.read_text(encoding="utf-8")
        if _START in page and _END in page:
            page = page[: page.index(_START)] + section + page[page.index(_END) + len(_END) :]
        elif "</body>" in page:
            page = page.replace("</body>", section + "</body>", 1)
        else:
            page += section
        return write_report(path, page)
    return write_report(path, render(f"genlab: {title}", [("", "")]).replace("<h2></h2>", section, 1))
