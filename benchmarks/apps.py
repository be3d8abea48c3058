"""Models put to work, each against a plain baseline: anomaly detection, denoising, augmentation, semi-supervised
learning and the latent space (issue 15), on mnist (and breast_cancer once the tabular modality exists).

    OMP_NUM_THREADS=2 python benchmarks/apps.py --part anomaly --digits 1,8 --budget 30s
    OMP_NUM_THREADS=2 python benchmarks/apps.py --part table
    OMP_NUM_THREADS=2 python benchmarks/apps.py --part denoise --budget 4m
    OMP_NUM_THREADS=2 python benchmarks/apps.py --part augment --budget 60s
    OMP_NUM_THREADS=2 python benchmarks/apps.py --part ssvae --budget 4m
    OMP_NUM_THREADS=2 python benchmarks/apps.py --part latent

Each part writes ``benchmarks/out/apps_<part>.json`` (and PNG grids beside it) and keeps its runs under
``benchmarks/out/apps/``; a run folder that exists is reused, so parts can be split over several commands (each one
holds the CPU for a few minutes) and ``denoise``'s diffusion run serves ``augment`` and ``latent`` too.

Protocols (all seeds 0; "budget" is training wall-clock per run):

* anomaly — for each held-out digit d: train vae, flow, pixelcnn and diffusion (unconditional) on the 3,600 mnist
  training images of the other digits, and a small local PixelCNN (1 layer, 3×3) as the generic reference of the
  likelihood ratio; score the 1,000 test images; AUROC of each score with the 100 test images of d as anomalies.
  Baseline: scikit-learn's IsolationForest (200 trees) on the flattened training pixels.
* table — breast_cancer (scikit-learn's copy, 357 benign / 212 malignant): train on 70 % of the benign rows
  (seeded), score the other benign rows and every malignant row; IsolationForest on the standardized features as the
  baseline; genlab's table families once the tabular modality (issue 11) registers ``breast_cancer``.
* denoise — 200 mnist test images, noise σ ∈ {0.1, 0.2, 0.5} on the [0, 1] scale (seeded): diffusion (with and
  without the data-consistency step), an unconditional VAE (encode–decode) and non-local means; PSNR and SSIM.
* augment — 100 real labels (10 per class, :func:`genlab.data.labels.labelled_subset`), the fixed CNN with and
  without 1,000 / 5,000 class-balanced samples of each conditional run (vae, gan, flow, diffusion); test accuracy on
  the 1,000 test images. The generators are trained on every training label (the setting where a generator of the
  whole dataset exists); that is stated beside the numbers.
* ssvae — ``genlab train ssvae --labels 100`` for the budget; test accuracy of its classifier against the same
  network trained on the same 100 labels alone (the augment part's real-only CNN, and one without shifts).
* latent — interpolation grids (vae, flow, diffusion) between test digits, and round-trip errors of the inversions
  (VAE encode–decode, flow, DDIM inversion at 10, 50 and 100 steps) on 50 test images.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from typing import Any

import numpy as np
import torch

import genlab
from _common import OUT, print_table, write_results  # benchmarks/_common.py (scripts run from any cwd)
from genlab.apps.anomaly import anomaly_scores, auroc
from genlab.modalities import Examples

RUNS = OUT / "apps"
FIT = {"quiet": True, "seed": 0, "eval_every": 0, "device": "cpu", "checkpoint_every": 100000}
#: model and trainer options per family for a few CPU minutes on mnist
OPTIONS: dict[str, dict[str, Any]] = {
    "vae": {"batch_size": 64},
    "flow": {"levels": 2, "steps": 8, "hidden": 64, "batch_size": 64, "lr": 1e-3, "warmup_steps": 100},
    "pixelcnn": {"hidden": 48, "layers": 6, "kernel": 5, "batch_size": 32, "lr": 1e-3},
    "diffusion": {"batch_size": 64},
    "gan": {"batch_size": 64},
    "reference": {"hidden": 16, "layers": 1, "kernel": 3, "batch_size": 32, "lr": 1e-3},
}
#: evaluation-time settings of the bounds (cheaper than the defaults; stated in RESULTS)
EVAL = {"vae": {"iwae_k": 16}, "diffusion": {"bound_timesteps": 4}, "flow": {"eval_samples": 1}}


def train(name: str, family: str, data: str, budget: str, **extra: Any) -> genlab.Run:
    """Train (or reuse) ``RUNS/name`` and load it."""
    path = RUNS / name
    if not (path / "model.safetensors").is_file():
        opts = {**OPTIONS.get(family, {}), **extra}
        t = time.perf_counter()
        genlab.train(family, data, out=path, overwrite=True, budget=budget, **FIT, **opts)
        print(f"trained {name} ({family}) in {time.perf_counter() - t:.0f} s", flush=True)
    run = genlab.load(path, device="cpu")
    for k, v in EVAL.get(family, {}).items():
        run.model.config = dataclasses.replace(run.model.config, **{k: v})
    return run


def mnist_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from genlab.modalities.image import mnist

    raw = mnist()
    assert raw.y is not None and raw.x_test is not None and raw.y_test is not None
    return raw.x, raw.y, raw.x_test, raw.y_test


def part_anomaly(args: argparse.Namespace) -> dict[str, Any]:
    from sklearn.ensemble import IsolationForest

    x, y, xt, yt = mnist_arrays()
    out: dict[str, Any] = {"digits": {}, "budget": args.budget, "eval": EVAL}
    RUNS.mkdir(parents=True, exist_ok=True)
    partial = OUT / "apps_anomaly.partial.json"  # families scored so far, kept if a command is cut off
    done = json.loads(partial.read_text())["digits"] if partial.is_file() else {}
    for d in [int(v) for v in args.digits.split(",")]:
        data = RUNS / f"mnist-without-{d}.npz"
        if not data.is_file():
            np.savez(data, x=x[y != d], x_test=xt[yt != d])
        res: dict[str, Any] = dict(done.get(str(d), {}))
        ref = train(f"anomaly-{d}-reference", "pixelcnn", str(data), args.ref_budget, conditional=False,
                    **OPTIONS["reference"])
        normal = Examples(torch.from_numpy(xt[yt != d]), [str(i) for i in range(int((yt != d).sum()))])
        odd = Examples(torch.from_numpy(xt[yt == d]), [str(i) for i in range(int((yt == d).sum()))])
        for family in args.families.split(","):
            if family in res:
                continue
            run = train(f"anomaly-{d}-{family}", family, str(data), args.budget, conditional=False)
            t = time.perf_counter()
            sn = anomaly_scores(run, normal, reference=ref)
            sa = anomaly_scores(run, odd, reference=ref)
            res[family] = {s: auroc(sn[s], sa[s]) for s in sn}
            res[family]["score_seconds"] = round(time.perf_counter() - t, 1)
            print(d, family, res[family], flush=True)
            done[str(d)] = res
            partial.write_text(json.dumps({"digits": done}, indent=2))
        forest = IsolationForest(n_estimators=200, random_state=0).fit(x[y != d].reshape(-1, 784) / 255.0)
        score = -forest.score_samples(xt.reshape(-1, 784) / 255.0)
        res["isolation_forest"] = {"pixels": auroc(score[yt != d], score[yt == d])}
        out["digits"][str(d)] = res
    return out


def anomaly_summary(out: dict[str, Any]) -> None:
    """Mean and spread of each AUROC over the held-out digits scored so far (printed and stored)."""
    summary = {}
    families = list(dict.fromkeys(f for res in out["digits"].values() for f in res))
    for fam in families:
        per = [out["digits"][k][fam] for k in out["digits"] if fam in out["digits"][k]]
        for s in per[0]:
            if s == "score_seconds":
                continue
            vals = np.array([p[s] for p in per])
            summary[f"{fam}/{s}"] = {"mean": float(vals.mean()), "std": float(vals.std()), "n": len(vals)}
    out["summary"] = summary
    print_table("AUROC, held-out digit as anomaly", [{"model/score": k, **v} for k, v in summary.items()])


def part_table(args: argparse.Namespace) -> dict[str, Any]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import IsolationForest
    from sklearn.preprocessing import StandardScaler

    bc = load_breast_cancer()
    xb, yb = bc.data, bc.target  # target 1 = benign, 0 = malignant
    rng = np.random.default_rng(0)
    benign = rng.permutation(np.flatnonzero(yb == 1))
    cut = int(0.7 * len(benign))
    fit_idx, held = benign[:cut], benign[cut:]
    malignant = np.flatnonzero(yb == 0)
    scaler = StandardScaler().fit(xb[fit_idx])
    forest = IsolationForest(n_estimators=200, random_state=0).fit(scaler.transform(xb[fit_idx]))
    score = -forest.score_samples(scaler.transform(xb))
    out: dict[str, Any] = {"n_fit": len(fit_idx), "n_normal": len(held), "n_anomalous": len(malignant),
                           "isolation_forest": auroc(score[held], score[malignant])}
    if "breast_cancer" not in genlab.DATASETS:
        out["families"] = "waiting: no tabular modality registers breast_cancer yet (issue 11)"
        print(out)
        return out
    import pandas as pd  # the tabular modality's own dependency

    RUNS.mkdir(parents=True, exist_ok=True)
    cols = [str(c) for c in bc.feature_names]
    pd.DataFrame(xb[fit_idx], columns=cols).to_csv(RUNS / "bc-benign-fit.csv", index=False)
    pd.DataFrame(xb[held], columns=cols).to_csv(RUNS / "bc-benign-held.csv", index=False)
    pd.DataFrame(xb[malignant], columns=cols).to_csv(RUNS / "bc-malignant.csv", index=False)
    out["families"] = {}
    for family in args.table_families.split(","):
        try:
            run = train(f"bc-{family}", family, str(RUNS / "bc-benign-fit.csv"), args.budget)
            sn = anomaly_scores(run, run.modality.read_examples(run, RUNS / "bc-benign-held.csv"))
            sa = anomaly_scores(run, run.modality.read_examples(run, RUNS / "bc-malignant.csv"))
            out["families"][family] = {s: auroc(sn[s], sa[s]) for s in sn}
        except genlab.GenlabError as e:
            out["families"][family] = f"error: {e}"
        print(family, out["families"][family], flush=True)
    return out


def part_denoise(args: argparse.Namespace) -> dict[str, Any]:
    from genlab.apps.denoise import add_noise, denoise, non_local_means, psnr, ssim
    from genlab.report.grids import save_grid

    _, _, xt, yt = mnist_arrays()
    diff = train("diffusion", "diffusion", "mnist", args.budget)
    vae = train("vae-unconditional", "vae", "mnist", args.vae_budget, conditional=False)
    idx = np.concatenate([np.flatnonzero(yt == c)[:20] for c in range(10)])
    x = torch.from_numpy(xt[idx])
    out: dict[str, Any] = {"n": len(x), "budget_diffusion": args.budget, "budget_vae": args.vae_budget, "sigma": {}}
    for sigma in (0.1, 0.2, 0.5):
        noisy = add_noise(x, sigma, seed=0)
        shown = (noisy.clamp(0, 1) * 255).round().to(torch.uint8)
        methods: dict[str, Any] = {"noisy input (clipped)": shown}
        timings = {}
        jobs = {"diffusion, data term c=1": (denoise, (diff, noisy, sigma), {"consistency": 1.0, "progress": False}),
                "diffusion, no data term": (denoise, (diff, noisy, sigma), {"consistency": 0.0, "progress": False}),
                "vae encode-decode": (denoise, (vae, noisy, sigma), {}),
                "non-local means": (non_local_means, (noisy, sigma), {})}
        for name, (fn, fargs, kw) in jobs.items():
            t = time.perf_counter()
            methods[name] = fn(*fargs, **kw)
            timings[name] = time.perf_counter() - t
        rows = {}
        for name, est in methods.items():
            rows[name] = {"psnr": float(psnr(x, est).mean()), "ssim": float(ssim(x, est).mean()),
                          "seconds": round(timings.get(name, 0.0), 1)}
        out["sigma"][str(sigma)] = rows
        save_grid(torch.cat([x[::20], *(m[::20] for m in methods.values())]), OUT / f"apps-denoise-{sigma}.png",
                  nrow=10)
        print_table(f"denoising, sigma {sigma}", [{"method": k, **v} for k, v in rows.items()])
    return out


def part_augment(args: argparse.Namespace) -> dict[str, Any]:
    """Augmentation of 100 labelled mnist images. ``--aug-data full`` trains each generator on every labelled
    training image (an upper bound: the generator saw labels the classifier did not); ``labelled`` trains it on
    the same 100 labelled images only, the scarce-label setting itself. ``ssvae`` is the semi-supervised run of the
    ssvae part (100 labels plus the unlabelled rest)."""
    from genlab.apps.augment import augment
    from genlab.data.labels import labelled_subset

    out: dict[str, Any] = {"budget": args.budget, "generator_data": args.aug_data, "families": {}}
    data = "mnist"
    if args.aug_data == "labelled":
        x, y, xt, yt = mnist_arrays()
        idx = labelled_subset(torch.from_numpy(y), 100, 0).numpy()
        RUNS.mkdir(parents=True, exist_ok=True)
        data = str(RUNS / "mnist-labelled-100.npz")
        np.savez(data, x=x[idx], y=y[idx], x_test=xt, y_test=yt)
    for family in args.aug_families.split(","):
        key = family if args.aug_data == "full" else f"{family} (generator on the 100 labels)"
        if family == "ssvae":
            run, key = train("ssvae-100", "ssvae", "mnist", args.budget, labels=100, shift=2), \
                "ssvae (100 labels + unlabelled)"
        elif family == "diffusion" and args.aug_data == "full":
            run = train("diffusion", "diffusion", "mnist", args.budget)
        else:
            run = train(f"augment-{family}" + ("" if args.aug_data == "full" else "-labelled100"), family, data,
                        args.budget)
        opts = {"steps": 10, "progress": False} if family == "diffusion" else {}
        t = time.perf_counter()
        res = augment(run, labels=100, synthetic_sizes=(1000, 5000), classifier_steps=args.cnn_steps, seed=0,
                      **opts)
        res["seconds"] = round(time.perf_counter() - t, 1)
        out["families"][key] = res
        print(key, res, flush=True)
    return out


def part_ssvae(args: argparse.Namespace) -> dict[str, Any]:
    from genlab.api import load_splits
    from genlab.apps.augment import accuracy, fit_cnn
    from genlab.data.labels import labelled_subset
    from genlab.metrics.classification import classifier_report

    run = train("ssvae-100", "ssvae", "mnist", args.budget, labels=100, shift=2)
    splits = load_splits(run)
    train_s, test = splits.train, splits.test
    assert train_s.y is not None and test.y is not None
    rep = classifier_report(run.model, test)
    idx = labelled_subset(train_s.y, 100, 0)
    base_shift = accuracy(fit_cnn(train_s.x[idx], train_s.y[idx], None, None, run.spec, 0, args.cnn_steps),
                          test.x, test.y)
    steps = json.loads((RUNS / "ssvae-100" / "train_state.json").read_text())["step"]
    out = {"budget": args.budget, "steps": steps, "ssvae_accuracy": rep["accuracy"], "ssvae_nll": rep["nll"],
           "cnn_100_labels_shifts": base_shift, "cnn_steps": args.cnn_steps,
           "kingma_2014_m2_full_mnist_100_labels": 0.8803}
    print(out, flush=True)
    return out


def part_latent(args: argparse.Namespace) -> dict[str, Any]:
    from genlab.apps.latent import interpolate, round_trip
    from genlab.report.grids import save_grid

    _, _, xt, yt = mnist_arrays()
    held_out_flow = RUNS / f"anomaly-{args.digits.split(',')[0]}-flow"  # reuse the anomaly part's flow if there
    flow = genlab.load(held_out_flow, device="cpu") if (held_out_flow / "model.safetensors").is_file() else \
        train("flow-unconditional", "flow", "mnist", args.vae_budget, conditional=False)
    runs = {"vae": train("vae-unconditional", "vae", "mnist", args.vae_budget, conditional=False), "flow": flow,
            "diffusion": train("diffusion", "diffusion", "mnist", args.budget)}
    pairs_a = torch.from_numpy(np.stack([xt[np.flatnonzero(yt == a)[0]] for a in (0, 2, 4, 6)]))
    pairs_b = torch.from_numpy(np.stack([xt[np.flatnonzero(yt == b)[0]] for b in (1, 3, 7, 9)]))
    sample = torch.from_numpy(np.concatenate([xt[np.flatnonzero(yt == c)[:5]] for c in range(10)]))
    out: dict[str, Any] = {"round_trip": {}, "flow_run": str(runs["flow"].path)}
    for name, run in runs.items():
        t = time.perf_counter()
        grid = interpolate(run, pairs_a, pairs_b, steps=8)
        save_grid(grid, OUT / f"apps-interpolate-{name}.png", nrow=8)
        if name == "diffusion":
            for steps in (10, 50, 100):
                run.model.config = dataclasses.replace(run.model.config, inversion_steps=steps)
                rt = round_trip(run, sample)
                out["round_trip"][f"diffusion (DDIM, {steps} steps)"] = rt
            run.model.config = dataclasses.replace(run.model.config, inversion_steps=50)
        else:
            out["round_trip"][name] = round_trip(run, sample)
        print(name, f"{time.perf_counter() - t:.0f} s", flush=True)
    print_table("round trips (50 test images)", [{"model": k, **v} for k, v in out["round_trip"].items()])
    return out


PARTS = {"anomaly": part_anomaly, "table": part_table, "denoise": part_denoise, "augment": part_augment,
         "ssvae": part_ssvae, "latent": part_latent}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", required=True, choices=list(PARTS))
    ap.add_argument("--digits", default="1,8", help="held-out digits (anomaly)")
    ap.add_argument("--families", default="vae,flow,pixelcnn,diffusion", help="anomaly families")
    ap.add_argument("--table-families", default="vae,gan,flow,diffusion,gpt")
    ap.add_argument("--aug-families", default="vae,gan,flow,diffusion")
    ap.add_argument("--aug-data", choices=("full", "labelled"), default="full",
                    help="train the augmenting generators on every labelled image, or on the 100 labelled only")
    ap.add_argument("--budget", default="30s", help="training wall-clock per run")
    ap.add_argument("--ref-budget", default="15s", help="training of the local reference PixelCNN")
    ap.add_argument("--vae-budget", default="60s", help="training of the unconditional VAE/flow")
    ap.add_argument("--cnn-steps", type=int, default=800, help="steps of the fixed CNN classifier")
    args = ap.parse_args()
    torch.manual_seed(0)
    t = time.perf_counter()
    res = PARTS[args.part](args)
    previous = OUT / f"apps_{args.part}.json"
    if previous.is_file():  # parts split over several commands add to what is there
        before = json.loads(previous.read_text())
        for key in ("digits", "families"):
            if isinstance(res.get(key), dict) and isinstance(before.get(key), dict):
                res[key] = {**before[key], **res[key]}
    if args.part == "anomaly":
        anomaly_summary(res)
    res["wall_seconds"] = round(time.perf_counter() - t, 1)
    res["command"] = "python benchmarks/apps.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items())
    print(f"wrote {write_results(f'apps_{args.part}', res)}")


if __name__ == "__main__":
    main()
