"""GPT benchmark: nanoGPT's "baby GPT" on tinyshakespeare, genlab vs a plain fp32 eager PyTorch reference.

    OMP_NUM_THREADS=2 python benchmarks/gpt_shakespeare.py --task baby              # 2000 iters per variant
    OMP_NUM_THREADS=2 python benchmarks/gpt_shakespeare.py --task kv                # KV-cache decoding speed-up
    OMP_NUM_THREADS=2 python benchmarks/gpt_shakespeare.py --task best --budget 10m # best val loss in 10 min
    OMP_NUM_THREADS=2 python benchmarks/gpt_shakespeare.py --task code --budget 10m # pystdlib code model
    python benchmarks/gpt_shakespeare.py --task baby --iters 20                     # smoke test

Baby GPT (nanoGPT ``config/train_shakespeare_char.py`` with its CPU overrides): character level, 4 layers,
4 heads, 128 dims, context 64, batch 12, 2000 iterations, AdamW (β2 0.99, weight decay 0.1, clip 1.0),
lr 1e-3 with 100 warm-up steps and cosine decay to 1e-4 at 2000, no dropout, no biases.

Variants (genlab's char tokenizer; all but ``nanogpt`` on the same batches, drawn by ``TokenDataset.batch``):

* ``nanogpt`` — nanoGPT's ``model.py``/``train.py`` on CPU as its README runs it (``--device=cpu --compile=False
  --eval_iters=20 --log_interval=1``), re-written here (no nanoGPT code is copied or fetched): fp32 eager,
  ``F.scaled_dot_product_attention(is_causal=True)``, exact ``nn.GELU``, ``F.layer_norm`` without bias, AdamW
  unfused (nanoGPT fuses only on CUDA), ``loss.item()`` every iteration, batches of ``x = data[i:i+T]``,
  ``y = data[i+1:i+1+T]`` stacked window by window from the memory-mapped stream with torch's global RNG (seed
  1337), and ``estimate_loss`` (20 batches of train and of val) every 250 iterations. Its wall time is reported
  with and without those evaluations.
* ``reference`` — the same model written plainly in this file: fp32, eager, explicit softmax attention with a
  mask, ``nn.GELU``, default (for-loop) AdamW. Our own code, not nanoGPT's.
* ``genlab-fp32`` — genlab's GPT (``F.scaled_dot_product_attention``), fp32 eager, fused AdamW.
* ``genlab-bf16`` — the same under bf16 autocast.
* ``genlab-bf16-compile`` / ``genlab-fp32-compile`` — the same with ``torch.compile`` of the loss.
* ``genlab-trainer`` — the product path: ``genlab.train("gpt", …, precision="bf16", compile=True)`` end to
  end (``genlab train gpt … --precision bf16 --compile``), compilation included in its wall time.
* ``genlab-default`` — the README's plain command, no speed flags (``--precision auto --compile auto`` by
  default): ``genlab train gpt --data tinyshakespeare.txt --tokenizer char --block-size 64 --n-layer 4
  --n-head 4 --n-embd 128 --batch-size 12 --max-steps 2000 --lr 1e-3 --dropout 0``, its own loop with its
  default held-out evaluations (every 250 steps), everything included in its wall time.

``val (same windows)`` scores every variant on the same targets: each non-overlapping 64-token window of the
validation text, tokens 2…64 predicted from the 1…63 tokens before them in the window (nanoGPT's windows).

The variants train interleaved, ``--chunk`` iterations each in turn (rotating order), so a change in the
load of a shared VM hits all of them alike; ``genlab-trainer`` runs after them. Every variant reports wall
time, tokens/s, the final validation loss (mean next-token NLL over every non-overlapping 64-token window of
the validation text, first token predicted from ``<|endoftext|>``; the nanoGPT-comparable loss that skips
that first position is reported too) and the model FLOPs utilisation ``6·N + 12·L·T·d`` FLOPs/token (PaLM
appendix B) against the bf16 matmul peak measured here (``mfu``) and against the fp32 one
(``mfu_fp32_peak``). Results go to ``benchmarks/out/gpt_shakespeare_<task>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import genlab
from _common import OUT, print_table, write_results  # benchmarks/_common.py (scripts run from any cwd)
from genlab.config import build
from genlab.core import Batch
from genlab.modalities.text import TextDataConfig, load_text

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
BABY = {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "batch_size": 12, "iters": 2000, "lr": 1e-3,
        "min_lr": 1e-4, "warmup": 100, "weight_decay": 0.1, "betas": (0.9, 0.99), "grad_clip": 1.0}


# -- the plain reference ----------------------------------------------------------------------------

class RefBlock(nn.Module):
    """Pre-LN block written plainly: explicit attention matrix, masked softmax, GELU MLP (fp32, eager)."""

    def __init__(self, d: int, heads: int, t: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d, bias=False), nn.LayerNorm(d, bias=False)
        self.qkv, self.proj = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
        self.fc, self.out = nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)
        self.register_buffer("mask", torch.tril(torch.ones(t, t, dtype=torch.bool)))

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))  # (B, nh, T, hs)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)  # (B, nh, T, T)
        att = att.masked_fill(~self.mask[:t, :t], float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class RefGPT(nn.Module):
    """The baby GPT written plainly (learned positions, tied head, no biases), same init as genlab's."""

    def __init__(self, vocab: int, t: int, layers: int, heads: int, d: int) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(t, d)
        self.blocks = nn.ModuleList(RefBlock(d, heads, t) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d, bias=False)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.wte.weight
        for name, p in self.named_parameters():
            if p.dim() == 2:
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * layers) if name.endswith(("proj.weight", "out.weight"))
                                else 0.02)

    def forward(self, idx: Tensor) -> Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln_f(x))

    def loss(self, x: Tensor, bos: int = 0) -> Tensor:
        inp = torch.cat([torch.full_like(x[:, :1], bos), x[:, :-1]], 1)
        return F.cross_entropy(self(inp).flatten(0, 1), x.flatten())


class NanoBlock(nn.Module):
    """nanoGPT's ``Block``: pre-LN, ``scaled_dot_product_attention(is_causal=True)``, exact GELU, no biases."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln_1, self.ln_2 = nn.Parameter(torch.ones(d)), nn.Parameter(torch.ones(d))
        self.c_attn, self.c_proj = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
        self.c_fc, self.mlp_proj = nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)
        self.gelu = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.c_attn(F.layer_norm(x, (d,), self.ln_1, None, 1e-5)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(b, t, d))
        return x + self.mlp_proj(self.gelu(self.c_fc(F.layer_norm(x, (d,), self.ln_2, None, 1e-5))))


class NanoGPT(nn.Module):
    """nanoGPT's ``GPT`` at the baby configuration: learned positions, weight tying, its init."""

    def __init__(self, vocab: int, t: int, layers: int, heads: int, d: int) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(t, d)
        self.h = nn.ModuleList(NanoBlock(d, heads) for _ in range(layers))
        self.ln_f = nn.Parameter(torch.ones(d))
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.wte.weight = self.lm_head.weight
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith(("c_proj.weight", "mlp_proj.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for blk in self.h:
            x = blk(x)
        logits = self.lm_head(F.layer_norm(x, (x.shape[-1],), self.ln_f, None, 1e-5))
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)


class NanoVariant:
    """nanoGPT's training loop on CPU (its README's command at the baby configuration), runnable in chunks."""

    name = "nanogpt"

    def __init__(self, cfg: dict[str, Any], train: Any, vocab: int) -> None:
        torch.manual_seed(1337)
        self.cfg, self.data = cfg, train.stream
        self.model = NanoGPT(vocab, cfg["block_size"], cfg["n_layer"], cfg["n_head"], cfg["n_embd"])
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        rest = [p for p in self.model.parameters() if p.dim() < 2]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                                      {"params": rest, "weight_decay": 0.0}], lr=cfg["lr"], betas=cfg["betas"])
        self.wall, self.eval_s, self.it, self.loss = 0.0, 0.0, 0, float("nan")
        self.compile_s = 0.0
        self.X, self.Y = self.get_batch()

    def get_batch(self) -> tuple[Tensor, Tensor]:
        t, data = self.cfg["block_size"], self.data
        ix = torch.randint(len(data) - t, (self.cfg["batch_size"],))
        x = torch.stack([torch.from_numpy(data[i : i + t].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1 : i + 1 + t].astype(np.int64)) for i in ix])
        return x, y

    @torch.no_grad()
    def estimate_loss(self) -> None:
        self.model.eval()
        for _ in range(2 * 20):  # train and val splits, eval_iters = 20 (both drawn from one stream here)
            x, y = self.get_batch()
            self.model(x, y)[1].item()
        self.model.train()

    def run(self, n: int) -> None:
        cfg, stop = self.cfg, min(self.it + n, self.cfg["iters"])
        t0 = time.perf_counter()
        for it in range(self.it, stop):
            for g in self.opt.param_groups:
                g["lr"] = lr_at(it, cfg)
            if it % 250 == 0:
                te = time.perf_counter()
                self.estimate_loss()
                self.eval_s += time.perf_counter() - te
            _, loss = self.model(self.X, self.Y)
            self.X, self.Y = self.get_batch()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg["grad_clip"])
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            self.loss = loss.item()  # log_interval = 1
        self.wall += time.perf_counter() - t0
        self.it = stop

    def nll(self, x: Tensor) -> Tensor:
        """``(B, T)`` NLL with column 0 undefined (NaN): nanoGPT has no start token; columns 1… are the
        same-window targets."""
        logits, _ = self.model(x[:, :-1])
        out = F.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten(), reduction="none").view(len(x), -1)
        return torch.cat([torch.full_like(out[:, :1], float("nan")), out], 1)

    def result(self, val: Tensor) -> dict[str, Any]:
        self.model.eval()
        return measure(self.name, self.model, self.nll, self.cfg, val, self.wall, final_train_loss=self.loss,
                       compile_s=0.0, eval_s=self.eval_s, wall_without_eval_s=self.wall - self.eval_s)


# -- measurement helpers ------------------------------------------------------------------------------

def matmul_peak(dtype: torch.dtype, n: int = 1024, seconds: float = 2.0) -> float:
    """Measured matmul throughput (FLOP/s) of ``n × n`` products in ``dtype`` on this CPU."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(3):
        a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def flops_per_token(model: nn.Module, layers: int, d: int, t: int) -> float:
    """``6·N + 12·L·T·d``: forward+backward FLOPs per token, N without position embeddings (PaLM, app. B)."""
    n = sum(p.numel() for name, p in model.named_parameters() if "wpe" not in name)
    return 6 * n + 12 * layers * t * d


def lr_at(it: int, cfg: dict[str, Any]) -> float:
    """nanoGPT's schedule: linear warm-up, cosine from ``lr`` to ``min_lr`` at ``iters``."""
    if it < cfg["warmup"]:
        return cfg["lr"] * (it + 1) / (cfg["warmup"] + 1)
    p = min(1.0, (it - cfg["warmup"]) / max(1, cfg["iters"] - cfg["warmup"]))
    return cfg["min_lr"] + 0.5 * (1 + math.cos(math.pi * p)) * (cfg["lr"] - cfg["min_lr"])


@torch.no_grad()
def val_loss(loss_fn: Any, windows: Tensor, autocast: bool) -> tuple[float, float, float]:
    """(mean NLL over all val tokens, the same without each window's first position — the same-window loss: tokens
    2…T from the window's earlier tokens —, and the standard deviation of nanoGPT's estimate of the latter — the
    mean over 20 batches of 12 random windows — over 200 seeded draws), nats.
    """
    per_window = []
    for lo in range(0, len(windows), 256):
        x = windows[lo : lo + 256]
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        with ctx:
            per_window.append(loss_fn(x).float())  # (B, T)
    nll = torch.cat(per_window)
    skip = nll[:, 1:].mean(1)  # (N,)
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([skip[torch.randint(len(skip), (240,), generator=g)].mean() for _ in range(200)])
    return float(nll.mean()), float(skip.mean()), float(draws.std())


class Variant:
    """One variant's model, optimizer and step function, trained in chunks so variants can be interleaved."""

    def __init__(self, name: str, cfg: dict[str, Any], train: Any, vocab: int) -> None:
        torch.manual_seed(0)
        self.name, self.cfg = name, cfg
        t, bsz = cfg["block_size"], cfg["batch_size"]
        bf16, compiled = "bf16" in name, "compile" in name
        if name == "reference":
            model: Any = RefGPT(vocab, t, cfg["n_layer"], cfg["n_head"], cfg["n_embd"])
            step_loss = model.loss

            def nll(x: Tensor) -> Tensor:
                inp = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], 1)
                return F.cross_entropy(model(inp).float().flatten(0, 1), x.flatten(), reduction="none").view_as(x)
        else:
            gpt = genlab.create("gpt", train.spec, n_layer=cfg["n_layer"], n_head=cfg["n_head"],
                                n_embd=cfg["n_embd"], dropout=0.0, bias=False)
            model = gpt

            def step_loss(x: Tensor) -> Tensor:
                return gpt.loss(Batch(x))[0]

            nll = gpt.token_nll
            if compiled:
                step_loss = torch.compile(step_loss)
        decay = [p for p in model.parameters() if p.dim() >= 2]
        rest = [p for p in model.parameters() if p.dim() < 2]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                                      {"params": rest, "weight_decay": 0.0}], lr=cfg["lr"], betas=cfg["betas"],
                                     fused=name != "reference")
        self.model, self.step_loss, self.nll = model, step_loss, nll
        self.ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
        self.batches = [train.batch(i, bsz, 0)[0] for i in range(cfg["iters"])]
        self.compile_s, self.wall, self.it, self.loss = 0.0, 0.0, 0, float("nan")
        model.train()
        if compiled:  # compile outside the timed loop, then restore the initial weights
            state = {k: v.clone() for k, v in model.state_dict().items()}
            t0 = time.perf_counter()
            with self.ctx():
                step_loss(self.batches[0]).backward()
            self.compile_s = time.perf_counter() - t0
            model.load_state_dict(state)
            model.zero_grad(set_to_none=True)

    def run(self, n: int) -> None:
        """Train the next ``n`` iterations, adding their wall time to ``self.wall``."""
        model, opt, cfg = self.model, self.opt, self.cfg
        stop = min(self.it + n, cfg["iters"])
        t0 = time.perf_counter()
        for it in range(self.it, stop):
            for g in opt.param_groups:
                g["lr"] = lr_at(it, cfg)
            with self.ctx():
                loss = self.step_loss(self.batches[it])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
            opt.step()
        self.wall += time.perf_counter() - t0
        self.it = stop
        self.loss = float(loss.detach())

    def result(self, val: Tensor) -> dict[str, Any]:
        self.model.eval()
        return measure(self.name, self.model, self.nll, self.cfg, val, self.wall, final_train_loss=self.loss,
                       compile_s=self.compile_s)


def measure(name: str, model: nn.Module, nll: Any, cfg: dict[str, Any], val: Tensor, wall: float,
            **extra: Any) -> dict[str, Any]:
    """One table row: throughput, validation losses and achieved FLOP/s of a model trained for ``wall`` seconds."""
    vl, vl_skip, spread = val_loss(nll, val, autocast=False)
    tokens = cfg["iters"] * cfg["batch_size"] * cfg["block_size"]
    fpt = flops_per_token(model, cfg["n_layer"], cfg["n_embd"], cfg["block_size"])
    return {"variant": name, "wall_s": wall, "tokens_per_s": tokens / wall, "val_loss": vl,
            "val_loss_nanogpt": vl_skip, "nanogpt_estimate_std": spread, "flops_per_token": fpt,
            "achieved_gflops": fpt * tokens / wall / 1e9, **extra}


def default_variant(cfg: dict[str, Any], data: str, val: Tensor) -> dict[str, Any]:
    """The README's plain command (no speed flags: ``--precision auto --compile auto``), its own loop and its
    default held-out evaluations; wall time = the trainer's ``elapsed`` (compilation, if chosen, included)."""
    out = OUT / "gpt_shakespeare_default_run"
    run = genlab.train("gpt", data, out=out, overwrite=True, tokenizer="char", block_size=cfg["block_size"],
                       n_layer=cfg["n_layer"], n_head=cfg["n_head"], n_embd=cfg["n_embd"], dropout=0.0,
                       batch_size=cfg["batch_size"], max_steps=cfg["iters"], lr=cfg["lr"], quiet=True)
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines() if r.strip()]
    decision = next((r for r in rows if "compile" in r), {})
    return measure("genlab-default", run.model, run.model.token_nll, cfg, val, run.summary["elapsed"],
                   final_train_loss=float("nan"), compile_s=decision.get("compile_s", 0.0),
                   precision=run.summary["precision"], compiled=run.summary.get("compile"),
                   compile_decision=decision)


def trainer_variant(cfg: dict[str, Any], data: str, val: Tensor) -> dict[str, Any]:
    """The product path: ``genlab.train`` with bf16 autocast and ``compile`` (its own loop, logging, checkpoint).

    Its wall time is the trainer's own ``elapsed``: it includes the compilation in the first step.
    """
    out = OUT / "gpt_shakespeare_trainer_run"
    t0 = time.perf_counter()
    run = genlab.train("gpt", data, out=out, overwrite=True, tokenizer="char", block_size=cfg["block_size"],
                       n_layer=cfg["n_layer"], n_head=cfg["n_head"], n_embd=cfg["n_embd"], dropout=0.0, bias=False,
                       batch_size=cfg["batch_size"], max_steps=cfg["iters"], lr=cfg["lr"],
                       min_lr_ratio=cfg["min_lr"] / cfg["lr"], warmup_steps=cfg["warmup"], betas=cfg["betas"],
                       weight_decay=cfg["weight_decay"], grad_clip=cfg["grad_clip"], precision="bf16", compile=True,
                       eval_every=0, n_samples=1, quiet=True, device="cpu")
    total = time.perf_counter() - t0
    return measure("genlab-trainer", run.model, run.model.token_nll, cfg, val, run.summary["elapsed"],
                   final_train_loss=float("nan"), compile_s=0.0, total_with_setup_s=total)


def task_baby(args: argparse.Namespace) -> dict[str, Any]:
    cfg = {**BABY, "iters": args.iters}
    loaded = load_text(build(TextDataConfig, {"data": str(args.data), "block_size": cfg["block_size"]}))
    train, val_ds, prep = loaded.train, loaded.test, loaded.preprocessing
    val = val_ds.x
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    peak = max(peaks.values())
    names = args.variants.split(",")
    variants: list[Any] = [NanoVariant(cfg, train, prep["vocab_size"]) if n == "nanogpt" else
                           Variant(n, cfg, train, prep["vocab_size"]) for n in names
                           if n not in ("genlab-trainer", "genlab-default")]
    for k in range(0, cfg["iters"], args.chunk):  # interleaved chunks, rotating order: fair under drifting load
        r = (k // args.chunk) % len(variants)
        for v in variants[r:] + variants[:r]:
            v.run(args.chunk)
    rows = [v.result(val) for v in variants]
    if "genlab-default" in names:
        rows.append(default_variant(cfg, str(args.data), val))
    if "genlab-trainer" in names:
        rows.append(trainer_variant(cfg, str(args.data), val))
    for r in rows:
        r["mfu"] = r["achieved_gflops"] * 1e9 / peak
        r["mfu_fp32_peak"] = r["achieved_gflops"] * 1e9 / peaks["fp32"]
        print(f"{r['variant']}: {r['wall_s']:.1f}s, {r['tokens_per_s']:.0f} tok/s, val {r['val_loss']:.4f}",
              flush=True)
    ref = next((r for r in rows if r["variant"] == "reference"), None)
    nano = next((r for r in rows if r["variant"] == "nanogpt"), None)
    for r in rows:
        r["speedup_vs_reference"] = r["tokens_per_s"] / ref["tokens_per_s"] if ref else float("nan")
        r["speedup_vs_nanogpt"] = nano["wall_s"] / r["wall_s"] if nano else float("nan")
    print_table(f"baby GPT on tinyshakespeare, {cfg['iters']} iters, {torch.get_num_threads()} threads "
                f"(peak fp32 {peaks['fp32'] / 1e9:.1f}, bf16 {peaks['bf16'] / 1e9:.1f} GFLOP/s)",
                [{k: r[k] for k in ("variant", "wall_s", "tokens_per_s", "speedup_vs_nanogpt",
                                     "speedup_vs_reference", "val_loss", "val_loss_nanogpt", "nanogpt_estimate_std",
                                     "mfu", "mfu_fp32_peak", "compile_s")} for r in rows])
    return {"config": cfg, "data": prep, "matmul_peak_flops": peaks, "rows": rows}


def task_kv(args: argparse.Namespace) -> dict[str, Any]:
    """Decoding time with the KV cache vs recomputing the full context, for a few context lengths."""
    rows = []
    for t in (64, 256, 512):
        spec = genlab.DataSpec(kind="text", shape=(t,), vocab_size=66)
        model = genlab.create("gpt", spec, n_layer=4, n_head=4, n_embd=128).eval()
        times = {}
        for kv in (True, False):
            g = torch.Generator().manual_seed(0)
            t0 = time.perf_counter()
            x = model.sample(1, generator=g, max_tokens=t, kv_cache=kv, temperature=0.0)
            times[kv] = time.perf_counter() - t0
            if kv:
                first = x
        assert torch.equal(first, x), "greedy tokens differ between cached and full decoding"
        rows.append({"context": t, "kv_cache_s": times[True], "full_recompute_s": times[False],
                     "speedup": times[False] / times[True], "tokens_per_s_kv": t / times[True]})
    print_table("greedy decoding of a full context, 4x128 GPT, batch 1", rows)
    return {"rows": rows}


def task_budget(args: argparse.Namespace, code: bool) -> dict[str, Any]:
    """Train genlab's GPT for a wall-clock budget; report val metrics and a sample."""
    if code:
        opts = {"tokenizer": "bpe", "vocab_size": 2048, "block_size": 128, "n_layer": 4, "n_head": 4, "n_embd": 192,
                "batch_size": 24, "lr": 2e-3, "warmup_steps": 100}
        data, prompt, name = "pystdlib", "def fibonacci(n):", "code"
    else:
        opts = {"tokenizer": "char", "block_size": 128, "n_layer": 4, "n_head": 4, "n_embd": 192, "batch_size": 24,
                "lr": 2e-3, "warmup_steps": 100}
        data, prompt, name = str(args.data), "ROMEO:", "best"
    out = OUT / f"gpt_{name}_run"
    run = genlab.train("gpt", data, out=out, overwrite=True, budget=args.budget, precision=args.precision,
                       compile=True, dropout=0.0, eval_every=0, n_samples=1, quiet=True, device="cpu", **opts)
    ev = genlab.evaluate(out)
    model = genlab.load(out, device="cpu").model
    x = genlab.sample(model, 1, seed=0, prompt=prompt, max_tokens=200, temperature=0.8, top_k=40)
    text = model.decode(x)[0]
    unit = ev["unit"]
    print_table(f"{name}: genlab GPT, {args.budget} on {data}",
                [{"steps": run.summary["step"], "val_loss": ev["loss"], f"bits_per_{unit}": ev[f"bits_per_{unit}"],
                  "perplexity": ev["perplexity"]}])
    print(text)
    return {"options": opts, "budget": args.budget, "steps": run.summary["step"], "eval": ev, "sample": text}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=["baby", "kv", "best", "code"], default="baby")
    p.add_argument("--data", type=Path, default=SHAKESPEARE, help="tinyshakespeare.txt")
    p.add_argument("--iters", type=int, default=2000)
    p.add_argument("--chunk", type=int, default=100, help="iterations per variant before switching (interleaving)")
    p.add_argument("--variants", default="reference,genlab-fp32,genlab-bf16,genlab-fp32-compile,genlab-bf16-compile,"
                                         "genlab-trainer")
    p.add_argument("--budget", default="10m")
    p.add_argument("--precision", default="bf16")
    args = p.parse_args()
    if args.task in ("baby", "best") and not args.data.is_file():
        raise SystemExit(f"{args.data} not found; pass --data path/to/tinyshakespeare.txt")
    res = {"baby": task_baby, "kv": task_kv}[args.task](args) if args.task in ("baby", "kv") else \
        task_budget(args, code=args.task == "code")
    path = write_results(f"gpt_shakespeare_{args.task}", {"task": args.task, **res})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
