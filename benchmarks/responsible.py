"""Responsible-generation benchmarks (issue 16): memorization of an overfit vs a normal diffusion model, Tree-Ring
TPR@1%FPR clean and under attacks with its FID cost, the text watermark's z-scores and perplexity cost, DP-SGD on
mnist at ε = 1, 8, ∞, and signing/verifying speed with tamper detection.

Each part runs on its own (``--part memorization|treering|inversion-probe|recovery-probe|text|dp|dp-table|signing``)
and writes ``benchmarks/out/responsible_<part>.json``. The diffusion runs that memorization and Tree-Ring read
are trained by ``--part train --run NAME --budget 10m`` first: ``diff-normal``, genlab's default diffusion network
on the 4,000 mnist training digits; ``diff-overfit``, the same network on 100 of them (10 per class, ``mnist100.npz``);
``diff-overfit-wide``, a wider network with attention at 14×14 too, on the same 100; ``diff-overfit-mlp``, the
non-local MLP denoiser (``--denoiser mlp``) on the same 100, and ``diff-normal-mlp`` the same on the 4,000.
"""

from __future__ import annotations

import argparse
import io
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import genlab
from _common import OUT, print_table, write_results

RUNS = OUT / "i16"
RESULTS = Path(__file__).resolve().parent / "results"


def draw(run, n, seed=0, batch=250, **opts):
    return torch.cat([genlab.sample(run, min(batch, n - lo), seed=seed + lo, progress=False, **opts)
                      for lo in range(0, n, batch)])


def invert(run, x, steps, batch=250):
    """The DDIM-inverted noise of ``uint8`` images ``x``, ``batch`` at a time."""
    return torch.cat([run.model.invert(x[lo : lo + batch], steps=steps) for lo in range(0, len(x), batch)])


#: the diffusion runs: genlab's default network on normal data and on 100 images trained to memorize them, and a
#: wider network on the same 100 (with attention at 14×14 as well, constant lr): a local convolutional denoiser
#: composes patches rather than copying (Kamb & Ganguli 2024, arXiv:2412.20292), and memorization grows with model
#: size (Gu et al. 2023, arXiv:2310.02664); the MLP over the whole image has no locality, so it can reach the
#: memorizing empirical optimum
_OVERFIT = {"data": str(RUNS / "mnist100.npz"), "batch_size": 50, "ema_decay": 0.995, "warmup_steps": 50}
#: the non-local MLP denoiser (``--denoiser mlp``), on the 100 digits and, as its control, on the 4,000
_MLP = {"batch_size": 100, "ema_decay": 0.995, "warmup_steps": 50, "denoiser": "mlp", "prediction": "x0",
        "model_channels": 256, "mlp_widths": (1024, 1024, 1024)}
TRAIN_RUNS = {"diff-normal": {"data": "mnist"},
              "diff-overfit": _OVERFIT,
              "diff-overfit-wide": {**_OVERFIT, "model_channels": 48, "attn_resolutions": (14, 7),
                                    "schedule": "constant"},
              "diff-overfit-mlp": {**_OVERFIT, **_MLP},
              "diff-normal-mlp": {"data": "mnist", **_MLP}}


def mnist100() -> Path:
    """The first 10 training digits of each class of genlab's ``mnist`` split, with its test split as ``x_test``."""
    from genlab.modalities.image import mnist

    raw = mnist()
    pick = np.concatenate([np.flatnonzero(raw.y == c)[:10] for c in range(10)])
    path = RUNS / "mnist100.npz"
    RUNS.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=raw.x[pick], y=raw.y[pick], x_test=raw.x_test, y_test=raw.y_test)
    return path


def _last_log(path: Path) -> dict:
    import json

    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    return rows[-1] if rows else {}


def part_train(args):
    if args.run not in TRAIN_RUNS:
        raise SystemExit(f"--run must be one of {', '.join(TRAIN_RUNS)}")
    if TRAIN_RUNS[args.run]["data"] == _OVERFIT["data"]:
        mnist100()
    opts = dict(TRAIN_RUNS[args.run])
    data = opts.pop("data")
    if args.resume:  # continue the run to a longer total budget (its schedule stretches to the new budget)
        run = genlab.train("diffusion", out=RUNS / args.run, resume=True, budget=args.budget, quiet=True)
    else:
        run = genlab.train("diffusion", data, out=RUNS / args.run, overwrite=True, budget=args.budget,
                           quiet=True, device="cpu", eval_every=0, n_samples=16, seed=0, **opts)
    info = {"run": args.run, "budget": args.budget, "steps": run.summary["step"], "elapsed": run.summary["elapsed"],
            "train images": len(genlab.api.load_splits(run).train), "options": TRAIN_RUNS[args.run],
            "last log": _last_log(run.path / "metrics.jsonl")}
    print(info)
    write_results(f"responsible_train_{args.run}", info)


def true_copies(x, train):
    """Ground truth for the detector, independent of its tiled and relative criteria: a sample is a *copy* of its
    nearest training image ``x_j`` (whole-image RMS distance) when it lies within half the distance from ``x_j``
    to the training image nearest to it, i.e. unambiguously in ``x_j``'s own neighbourhood. → (copy mask,
    distance, half-gap)."""
    from genlab.audit.memorization import tiled_distances

    d = tiled_distances(x, train, tiles=1)  # (N, M) whole-image RMS in [0, 1]
    gaps = tiled_distances(train, train, tiles=1)
    gaps.fill_diagonal_(float("inf"))
    half = gaps.min(1).values / 2  # (M,)
    dist, idx = d.min(1)
    return dist < half[idx], dist, half[idx]


def part_memorization(args):
    from genlab.audit.memorization import copy_flags, copy_scores, extraction_attack
    from genlab.report.html import pairs_png

    rows, out = [], {}
    for name in args.runs.split(","):
        if not (RUNS / name / "config.json").is_file():
            print(f"skip {name}: not trained (--part train --run {name})")
            continue
        run = genlab.load(RUNS / name, device="cpu")
        splits = genlab.api.load_splits(run)
        t0 = time.perf_counter()
        x = draw(run, args.n)
        res = copy_scores(x, splits.train.x, splits.test.x[:500])
        res["extraction"] = extraction_attack(x, splits.train.x)
        res["seconds"] = time.perf_counter() - t0
        # the detector's per-sample flags, with the settings copy_scores used, against the ground truth
        *_, flag = copy_flags(x, splits.train.x, tiles=res["tiles"], k=res["k"], threshold=res["threshold"])
        copy, dist, half = true_copies(x, splits.train.x)
        n_copy = int(copy.sum())
        res["ground_truth"] = {"copies": n_copy, "flagged_copies": int((flag & copy).sum()),
                               "flagged_non_copies": int((flag & ~copy).sum()),
                               "recall": float((flag & copy).sum() / n_copy) if n_copy else None,
                               "median_distance": float(dist.median()), "median_half_gap": float(half.median())}
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"responsible-{name}-pairs.png").write_bytes(pairs_png(x, splits.train.x, res["pairs"]))
        out[name] = res
        gt = res["ground_truth"]
        rows.append({"model": name, "train images": len(splits.train), "samples": len(x),
                     "flagged": res["flagged_share"], "held-out flagged": res["test_flagged_share"],
                     "relative median": res["relative_median"], "copies (truth)": n_copy,
                     "copies flagged": gt["recall"], "non-copies flagged": gt["flagged_non_copies"],
                     "clusters": res["extraction"]["n_clusters"], "extracted": res["extraction"]["n_extracted"]})
    print_table("memorization", rows)
    write_results("responsible_memorization", {"n": args.n, "rows": rows, "runs": out})


def attack(x, kind, seed=0):
    """JPEG q=25, Gaussian noise σ=0.1, random 75 % crop resized back, resize to half and back."""
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    if kind == "clean":
        return x
    if kind == "jpeg":
        out = []
        for im in x[:, 0].numpy():
            buf = io.BytesIO()
            Image.fromarray(im).save(buf, format="JPEG", quality=25)
            out.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L")))
        return torch.from_numpy(np.stack(out))[:, None]
    if kind == "noise":
        v = x.double() / 255 + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)
        return (v.clamp(0, 1) * 255).round().to(torch.uint8)
    h = x.shape[-1]
    if kind == "crop":
        side = round(0.75 * h)
        out = []
        for im in x.double():
            i, j = (int(v) for v in torch.randint(0, h - side + 1, (2,), generator=g))
            out.append(torch.nn.functional.interpolate(im[None, :, i : i + side, j : j + side], size=(h, h),
                                                       mode="bilinear", align_corners=False)[0])
        return torch.stack(out).round().clamp(0, 255).to(torch.uint8)
    if kind == "resize":
        small = torch.nn.functional.interpolate(x.double(), size=(h // 2, h // 2), mode="bilinear",
                                                align_corners=False, antialias=True)
        return torch.nn.functional.interpolate(small, size=(h, h), mode="bilinear", align_corners=False
                                               ).round().clamp(0, 255).to(torch.uint8)
    raise ValueError(kind)


def tpr_at_fpr(neg_scores, pos_scores, fpr=0.01):
    """TPR at the threshold that lets ``fpr`` of the negatives through (higher score = watermarked)."""
    thr = np.quantile(neg_scores, 1 - fpr, method="higher")
    return float(np.mean(pos_scores > thr)), float(np.mean(neg_scores > thr))


def part_treering(args):
    from genlab.audit.privacy import auc
    from genlab.audit.watermark import TREE_RING_TESTS, TreeRing
    from genlab.metrics.distribution import fid
    from genlab.metrics.features import feature_net, reference_features

    run = genlab.load(RUNS / "diff-normal", device="cpu")
    key = "benchmark-key"
    t0 = time.perf_counter()
    marked = draw(run, args.n, seed=10_000, watermark=key)
    clean = draw(run, args.n, seed=20_000)
    t_sample = time.perf_counter() - t0
    ring = TreeRing(key, tuple(run.spec.shape))
    net = feature_net("classifier", "mnist", run.spec)
    test = genlab.api.load_splits(run).test
    real, _ = reference_features(net, test.x)
    fids = {"clean": fid(real, net(clean)[0]), "watermarked": fid(real, net(marked)[0])}
    rows, out = [], {"fid": fids, "n": args.n, "steps": args.steps, "radius": ring.radius,
                     "sample_seconds": t_sample}
    for kind in ("clean", "jpeg", "noise", "crop", "resize"):
        t0 = time.perf_counter()
        noise = {}
        for name, x in (("marked", marked), ("clean", clean)):
            xs = attack(x, kind, seed=1)
            noise[name] = invert(run, xs, args.steps)
        seconds = time.perf_counter() - t0
        for test in TREE_RING_TESTS:  # both tests read the same recovered noise
            p = {name: ring.p_values(v, test) for name, v in noise.items()}
            s_pos, s_neg = -np.log10(np.clip(p["marked"], 1e-300, 1)), -np.log10(np.clip(p["clean"], 1e-300, 1))
            tpr, fpr = tpr_at_fpr(s_neg, s_pos)
            row = {"attack": kind, "test": test, "TPR@1%FPR": tpr, "FPR used": fpr, "AUC": auc(s_pos, s_neg),
                   "TPR at p<0.01": float(np.mean(p["marked"] < 0.01)),
                   "FPR at p<0.01": float(np.mean(p["clean"] < 0.01)),
                   "median p (marked)": float(np.median(p["marked"])), "inversion s": seconds}
            rows.append(row)
            out[f"{kind}/{test}"] = {**row, "p_marked": p["marked"].tolist(), "p_clean": p["clean"].tolist()}
    print_table(f"Tree-Ring, {args.n} + {args.n} samples, {args.steps} inversion steps; FID clean "
                f"{fids['clean']:.2f} vs watermarked {fids['watermarked']:.2f}", rows)
    write_results("responsible_treering", {"rows": rows, **out})


def part_inversion_probe(args):
    """Where Tree-Ring's recovery loses the key: 40 class-conditional marked and clean samples of diff-normal per
    sampler (the default DPM-Solver++ and DDIM-50), inverted with the null or the true label, with and without
    clipping x̂_0, over 20 or 50 DDIM steps; the TPR/FPR at p < 0.01 of both tests and the median z."""
    from genlab.audit.watermark import TreeRing
    from genlab.data.images import to_model
    from genlab.samplers.invert import ddim_invert

    run = genlab.load(RUNS / "diff-normal", device="cpu")
    m, ring, n = run.model, TreeRing("benchmark-key", tuple(run.spec.shape)), 40
    lab = torch.arange(n) % 10
    rows = []
    torch.set_grad_enabled(False)
    for sampler, steps in (("dpmpp_2m", None), ("ddim", 50)):
        xs = {name: genlab.sample(run, n, seed=seed, label=lab, sampler=sampler, steps=steps, progress=False,
                                  **({"watermark": "benchmark-key"} if name == "marked" else {}))
              for name, seed in (("marked", 1), ("clean", 2))}
        for label in ("null", "true"):
            for clip in (True, False):
                for inv in (20, 50):
                    den = m.denoiser(None if label == "null" else lab, clip=clip)
                    z = {k: ddim_invert(m.schedule, den, to_model(v), inv, show_progress=False) for k, v in xs.items()}
                    row = {"sampler": sampler, "inversion label": label, "clip": clip, "inversion steps": inv}
                    for test in ("correlation", "distance"):
                        row[f"{test} TPR"] = float(np.mean(ring.p_values(z["marked"], test) < 0.01))
                        row[f"{test} FPR"] = float(np.mean(ring.p_values(z["clean"], test) < 0.01))
                    row["median z marked"] = float(np.median(ring.correlation(z["marked"])))
                    row["median z clean"] = float(np.median(ring.correlation(z["clean"])))
                    rows.append(row)
    exact = float(np.median(ring.correlation(ring.noise(n, torch.Generator().manual_seed(0)))))
    print_table(f"Tree-Ring recovery, {n} + {n} samples (an exact key gives z = {exact:.1f})", rows)
    write_results("responsible_inversion_probe", {"rows": rows, "exact_z": exact})


def part_recovery_probe(args):
    """How much of the initial noise's spectrum survives sample → uint8 → attack → DDIM inversion, per Fourier
    radius: a per-coefficient random key (the spectrum of a fixed Gaussian image, so Hermitian and of unit variance)
    over radii 1..``--probe-radius`` (the zero frequency left free) starts 200 samples, 200 start from plain noise;
    both are attacked and inverted like ``--part treering``. Per radius ρ: the gain ``a = Σ Re(k̄ y) / Σ |k|²`` of the
    recovered coefficients ``y ≈ a k + e`` (the same projection of the unmarked samples is the estimate's noise
    floor), the null sd of a real part, and the per-coefficient SNR ``a·rms|k| / sd``. A matched filter over the
    independent coefficients (half of each ring) of a unit-strength key on a set of radii has
    ``z ≈ √(Σ_ρ n_ρ/2 · SNR_ρ²)``: the table gives it for the default key's radii (1..4) and for every probed radius,
    the most a key of noise-like strength could reach after the attack (fixing all of them fixes every sample)."""
    from genlab.audit.watermark import TreeRing
    from genlab.data.images import to_uint8
    from genlab.metrics.distribution import fid
    from genlab.metrics.features import feature_net, reference_features
    from genlab.samplers import SAMPLERS, sample_loop

    run = genlab.load(RUNS / "diff-normal", device="cpu")
    m, n, top = run.model, args.n, args.probe_radius
    torch.set_grad_enabled(False)
    h, w = m.spec.shape[1:]
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    rho = (((yy - h // 2) ** 2 + (xx - w // 2) ** 2).double().sqrt()).round().long()  # (H, W) ring index
    mask = (rho >= 1) & (rho <= top)
    key = torch.where(mask, TreeRing.spectrum(torch.randn(h, w, generator=torch.Generator().manual_seed(123),
                                                          dtype=torch.float64)), 0)  # (H, W) complex

    def sample_from(x_t, seed):  # the default sampler (DPM-Solver++ 2M, its default steps) from given noise
        g = torch.Generator().manual_seed(seed)
        label = m.check_cond(len(x_t), None, g)
        s = SAMPLERS["dpmpp_2m"](m.schedule, 0.0)
        return torch.cat([to_uint8(sample_loop(s, m.denoiser(None if label is None else label[lo : lo + 250]),
                                               x_t[lo : lo + 250], None, g, False)) for lo in range(0, len(x_t), 250)])

    g = torch.Generator().manual_seed(10_000)
    noise = torch.randn((n, *m.spec.shape), generator=g)
    f = TreeRing.spectrum(noise[:, 0])
    f[:, mask] = key[mask]
    marked_noise = noise.clone()
    marked_noise[:, 0] = TreeRing.image(f).float()
    marked = sample_from(marked_noise, 1)
    clean = sample_from(torch.randn((n, *m.spec.shape), generator=g), 2)
    net = feature_net("classifier", "mnist", run.spec)
    real, _ = reference_features(net, genlab.api.load_splits(run).test.x)
    fids = {"clean": fid(real, net(clean)[0]), "probe key": fid(real, net(marked)[0])}
    rows, out = [], {"n": n, "steps": args.steps, "probe_radius": top, "fid": fids, "radii": {}}
    for kind in ("clean", "jpeg", "noise", "crop", "resize"):
        y = {name: TreeRing.spectrum(invert(run, xs, args.steps)[:, 0])
             for name, xs in (("marked", attack(marked, kind, seed=1)), ("clean", attack(clean, kind, seed=1)))}
        per = []
        for r in range(1, top + 1):
            sel = mask & (rho == r)
            k = key[sel]
            gain = {nm: float((v[:, sel] * k.conj()).real.sum() / (k.abs() ** 2).sum() / n) for nm, v in y.items()}
            sd = float(y["clean"][:, sel].abs().pow(2).mean().sqrt() / math.sqrt(2))
            snr = gain["marked"] * float(k.abs().pow(2).mean().sqrt()) / sd
            per.append({"radius": r, "coefficients": int(sel.sum()), "gain": gain["marked"],
                        "gain of unmarked": gain["clean"], "null sd": sd, "SNR": snr})
        z = {f"z, radii 1..{hi}": math.sqrt(sum(p["coefficients"] / 2 * max(p["SNR"], 0) ** 2 for p in per
                                                 if p["radius"] <= hi)) for hi in (4, top)}
        rows.append({"attack": kind, **{f"gain ρ={p['radius']}": p["gain"] for p in per}, **z})
        out["radii"][kind] = per
    print_table(f"Recovery per Fourier radius, {n} + {n} samples, {args.steps} inversion steps; FID clean "
                f"{fids['clean']:.2f}, probe key {fids['probe key']:.2f}", rows)
    write_results("responsible_recovery_probe", {"rows": rows, **out})


def edit(ids, frac, vocab, rng, mode):
    """Paraphrase-like token edits: substitute (or insert/delete) a share ``frac`` of tokens at random."""
    out = []
    for t in ids:
        r = rng.random()
        if r < frac:
            if mode == "substitute":
                out.append(int(rng.integers(vocab)))
            elif rng.random() < 0.5:
                out.extend([t, int(rng.integers(vocab))])  # insert
            # else: delete
        else:
            out.append(t)
    return out


def part_text(args):
    from genlab.audit.watermark import GreenList

    run_dir = RUNS / "gpt-shakespeare"
    if not (run_dir / "model.safetensors").is_file():
        genlab.train("gpt", args.text, out=run_dir, overwrite=True, budget=args.gpt_budget, tokenizer="char",
                     block_size=128, n_layer=4, n_head=4, n_embd=128, batch_size=32, quiet=True, eval_every=0,
                     device="cpu", n_samples=1)
    run = genlab.load(run_dir, device="cpu")
    model, key, n, T = run.model, "text-key", args.n_text, 200
    bos, vocab = model.config.bos_id, run.spec.levels
    rng = np.random.default_rng(0)

    def ppl(ids):  # the clean model's perplexity of the first block of generated tokens
        with torch.no_grad():
            return float(torch.exp(model.token_nll(ids[:, : run.spec.shape[0]]).mean()))

    rows, out = [], {}
    clean = genlab.sample(run, n, max_tokens=T, seed=1)
    base_ppl = ppl(clean)
    zc = [GreenList(key, vocab).score(r, bos)["z"] for r in clean.tolist()]
    rows.append({"delta": 0.0, "edit": "-", "z mean": float(np.mean(zc)), "z>4 rate": float(np.mean(np.array(zc) > 4)),
                 "PPL": base_ppl, "PPL cost": 0.0})
    for delta in args.deltas:
        t0 = time.perf_counter()
        marked = genlab.sample(run, n, max_tokens=T, seed=1, watermark=key, watermark_delta=delta)
        gen_s = time.perf_counter() - t0
        gl = GreenList(key, vocab, delta=delta)
        p = ppl(marked)
        for label, rows_ in (("-", marked.tolist()),
                             *((f"substitute {int(100 * f)}%", [edit(r, f, vocab, rng, "substitute")
                                                                for r in marked.tolist()]) for f in (0.1, 0.2, 0.3)),
                             ("insert/delete 20%", [edit(r, 0.2, vocab, rng, "indel") for r in marked.tolist()])):
            zs = np.array([gl.score(r, bos)["z"] for r in rows_])
            row = {"delta": delta, "edit": label, "z mean": float(zs.mean()), "z>4 rate": float((zs > 4).mean())}
            if label == "-":
                for k in (50, 100):
                    row[f"z>4 @{k} tok"] = float(np.mean([gl.score(r[:k], bos)["z"] > 4 for r in rows_]))
                row.update({"PPL": p, "PPL cost": p / base_ppl - 1, "gen s": gen_s})
            rows.append(row)
    print_table(f"green-list watermark, {n} samples x {T} tokens, gamma 0.25", rows)
    write_results("responsible_text", {"rows": rows, "n": n, "tokens": T, "run": str(run_dir), **out})


def part_dp(args):
    from genlab.audit.model_card import AuditOptions, audit_images

    rows = []
    common = {"max_steps": args.dp_steps, "batch_size": 128, "widths": (16, 32), "latent_dim": 16, "hidden": 128,
              "lr": 2e-3, "quiet": True, "eval_every": 0, "device": "cpu", "n_samples": 20, "iwae_k": 16}
    for eps in args.eps:
        label = "inf (no DP)" if eps == "none" else f"{eps}"
        extra = {} if eps == "none" else {"dp_epsilon": float(eps), "dp_delta": 1e-5, "dp_max_grad_norm": 1.0}
        out_dir = RUNS / f"vae-dp-{eps}"
        t0 = time.perf_counter()
        run = genlab.train("vae", "mnist", out=out_dir, overwrite=True, **common, **extra)
        train_s = time.perf_counter() - t0
        ev = genlab.evaluate(run, max_examples=500, samples=500, features=["classifier"])
        res, _ = audit_images(run, genlab.api.load_splits(run), AuditOptions(samples=500, members=300))
        img = ev["images"]
        priv = res["privacy"]
        rows.append({"epsilon": label, "eps spent": (run.summary.get("privacy") or {}).get("epsilon_spent"),
                     "sigma": (run.summary.get("privacy") or {}).get("noise_multiplier"),
                     "bits/dim": ev["bits_per_dim"], "FID (clf)": img["classifier"]["fid"],
                     "class acc": img["classes"].get("class_accuracy"),
                     "MIA AUC lik": priv["membership"]["likelihood_auc"],
                     "MIA AUC dist": priv["membership"]["distance_auc"],
                     "DCR ratio": priv["dcr"]["dcr_ratio"], "train s": train_s})
    print_table(f"VAE on mnist, {args.dp_steps} steps of batch 128, with and without DP-SGD", rows)
    write_results("responsible_dp", {"rows": rows, "options": {k: str(v) for k, v in common.items()}})


def part_dp_table(args):
    """The table VAE on abalone (3,341 training rows) at ε = 1, 8, ∞, scored by genlab's tabular metrics on the
    real test split: quality, detection AUC, utility (R² of train-on-synthetic vs train-on-real) and the
    membership-inference AUC / distance to closest record."""
    from genlab.metrics.tabular import table_report
    from genlab.modalities.tabular import sample_frame

    rows = []
    common = {"max_steps": args.dp_steps, "batch_size": 256, "hidden": 256, "latent_dim": 64, "quiet": True,
              "eval_every": 0, "device": "cpu", "n_samples": 16}
    for eps in args.eps:
        label = "inf (no DP)" if eps == "none" else f"{eps}"
        extra = {} if eps == "none" else {"dp_epsilon": float(eps), "dp_delta": 1e-5, "dp_max_grad_norm": 1.0}
        t0 = time.perf_counter()
        run = genlab.train("vae", "abalone", out=RUNS / f"vae-table-dp-{eps}", overwrite=True, **common, **extra)
        train_s = time.perf_counter() - t0
        splits = genlab.api.load_splits(run)
        codec = splits.train.codec
        synth = sample_frame(run, len(splits.train), seed=0)
        rep = table_report(splits.train.frame, splits.test.frame, synth, codec.columns, target=codec.target, seed=0)
        priv = (run.summary.get("privacy") or {})
        rows.append({"epsilon": label, "eps spent": priv.get("epsilon_spent"), "sigma": priv.get("noise_multiplier"),
                     "quality": rep["quality"], "detection AUC": rep["detection"]["auc"],
                     "utility R2": rep["utility"].get("synthetic"), "real R2": rep["utility"].get("real"),
                     "MIA AUC": rep["privacy"]["mia_auc"], "closer to train": rep["privacy"]["closer_to_train"],
                     "train s": train_s})
    print_table(f"table VAE on abalone, {args.dp_steps} steps of batch 256, with and without DP-SGD", rows)
    write_results("responsible_dp_table", {"rows": rows, "options": {k: str(v) for k, v in common.items()}})


def part_signing(args):
    from genlab.audit import keys, provenance
    from genlab.report.grids import save_grid

    work = RUNS / "signing"
    work.mkdir(parents=True, exist_ok=True)
    ident = keys.init_keys(work / "keys", force=True, name="benchmark")
    from genlab.modalities.image import mnist

    test = torch.from_numpy(mnist().x_test)
    rng = random.Random(0)
    rows, out = [], {}
    for kind in ("png", "npz"):
        t_write = t_sign = t_verify = 0.0
        files = []
        for i in range(args.files):
            path = work / f"f{i}.{kind}"
            x = test[16 * (i % 60) : 16 * (i % 60) + 16]
            t0 = time.perf_counter()
            if kind == "png":
                save_grid(x, path)
            else:
                np.savez(path, x=x.numpy())
            t1 = time.perf_counter()
            provenance.sign_file(path, provenance.provenance_record(seed=i), identity=ident)
            t2 = time.perf_counter()
            assert provenance.verify_file(path, keys=work / "keys").status == "valid"
            t3 = time.perf_counter()
            t_write, t_sign, t_verify = t_write + t1 - t0, t_sign + t2 - t1, t_verify + t3 - t2
            files.append(path)
        caught, missed = 0, []
        for path in files:  # one byte flipped in each signed file (the image, or the sidecar for .npz)
            target = path if kind == "png" else path.with_name(path.name + provenance.SIDECAR)
            data = bytearray(target.read_bytes())
            pos = rng.randrange(len(data))
            data[pos] ^= rng.randrange(1, 256)
            target.write_bytes(bytes(data))
            ok = provenance.verify_file(path, keys=work / "keys").status == "invalid"
            caught += ok
            if not ok:
                missed.append((path.name, pos))
        n = args.files
        rows.append({"file": kind, "write ms": 1000 * t_write / n, "sign ms": 1000 * t_sign / n,
                     "verify ms": 1000 * t_verify / n, "sign / write": t_sign / t_write,
                     "tampered caught": f"{caught}/{n}", "size KB": files[0].stat().st_size / 1024})
        out[kind] = {"missed": missed}
    print_table(f"signing and verifying {args.files} files each", rows)
    write_results("responsible_signing", {"rows": rows, **out})


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--part", required=True, choices=["train", "memorization", "treering", "inversion-probe",
                                                        "recovery-probe", "text",
                                                        "dp", "dp-table", "signing"])
    ap.add_argument("--run", default="diff-normal", help=f"--part train: one of {', '.join(TRAIN_RUNS)}")
    ap.add_argument("--runs", default="diff-overfit-mlp,diff-normal-mlp,diff-overfit-wide,diff-overfit,diff-normal",
                    help="--part memorization: the trained runs to score, comma-separated")
    ap.add_argument("--budget", default="10m", help="--part train: training budget (in all, with --resume)")
    ap.add_argument("--resume", action="store_true", help="--part train: continue the run to --budget")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--steps", type=int, default=25, help="DDIM inversion steps")
    ap.add_argument("--probe-radius", type=int, default=10, help="--part recovery-probe: the largest radius keyed")
    ap.add_argument("--text", default="/work/shared/data/tinyshakespeare.txt")
    ap.add_argument("--gpt-budget", default="3m")
    ap.add_argument("--n-text", type=int, default=64)
    ap.add_argument("--deltas", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    ap.add_argument("--eps", nargs="+", default=["none", "8", "1"])
    ap.add_argument("--dp-steps", type=int, default=400)
    ap.add_argument("--files", type=int, default=100)
    args = ap.parse_args()
    torch.manual_seed(0)
    {"train": part_train, "memorization": part_memorization, "treering": part_treering,
     "inversion-probe": part_inversion_probe, "recovery-probe": part_recovery_probe, "text": part_text,
     "dp": part_dp, "dp-table": part_dp_table, "signing": part_signing}[args.part](args)


if __name__ == "__main__":
    main()
