"""MOSES-style table on moses-100k: rnn, gpt and vae (SMILES and SELFIES) trained for a wall-clock budget each,
sampled, and scored with the MOSES metric set against the MOSES test set, beside the published rows and the
same-n ceiling; conditional MAD of a property-conditioned rnn; sampling throughput and metric time.

Every piece is one command (to keep each lock-held step short) and resumes: a trained run or a written evaluation
is reused. Results accumulate in benchmarks/out/molecules.json.

    OMP_NUM_THREADS=2 python benchmarks/molecules.py --part train --run rnn-smiles --budget 5m
    OMP_NUM_THREADS=2 python benchmarks/molecules.py --part eval --run rnn-smiles --samples 10000
    OMP_NUM_THREADS=2 python benchmarks/molecules.py --part condition --run rnn-smiles --samples 1000 \
        --guidance 1,2,3 [--temperature 0.85]
    OMP_NUM_THREADS=2 python benchmarks/molecules.py --part temperature --run rnn-smiles --samples 10000 \
        --temperature 0.9
    python benchmarks/molecules.py --part table
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from _common import OUT, print_table, write_results  # benchmarks/_common.py (scripts run from any cwd)

RUNS = OUT / "molecules"
RESULTS = OUT / "molecules.json"
COMMON = {"quiet": True, "device": "cpu", "eval_every": 0, "checkpoint_every": 1000, "n_samples": 16}
#: the runs of the table: family, tokenizer and options (sized for a few CPU-minutes each)
CONFIGS: dict[str, dict[str, Any]] = {
    "rnn-smiles": {"family": "rnn", "tokenizer": "smiles", "n_layer": 2, "hidden": 384, "n_embd": 64,
                   "batch_size": 64, "lr": 2e-3, "properties": ("qed", "logp", "sa"), "property_dropout": 0.5},
    "gpt-smiles": {"family": "gpt", "tokenizer": "smiles", "n_layer": 4, "n_head": 4, "n_embd": 128,
                   "batch_size": 64, "lr": 1e-3, "properties": ("qed", "logp", "sa"), "property_dropout": 0.5},
    "vae-smiles": {"family": "vae", "tokenizer": "smiles", "latent_dim": 64, "hidden": 256, "seq_embd": 64,
                   "seq_decoder": 384, "seq_layers": 2, "beta": 0.1, "kl_warmup": 600, "sample_mode": "sample",
                   "batch_size": 64, "lr": 1e-3},
    "rnn-selfies": {"family": "rnn", "tokenizer": "selfies", "n_layer": 2, "hidden": 384, "n_embd": 64,
                    "batch_size": 64, "lr": 2e-3, "properties": ("qed", "logp", "sa"), "property_dropout": 0.5},
    "gpt-selfies": {"family": "gpt", "tokenizer": "selfies", "n_layer": 4, "n_head": 4, "n_embd": 128,
                    "batch_size": 64, "lr": 1e-3, "properties": ("qed", "logp", "sa"), "property_dropout": 0.5},
    "vae-selfies": {"family": "vae", "tokenizer": "selfies", "latent_dim": 64, "hidden": 256, "seq_embd": 64,
                    "seq_decoder": 384, "seq_layers": 2, "beta": 0.1, "kl_warmup": 400, "sample_mode": "sample",
                    "batch_size": 64, "lr": 1e-3},
}
#: conditions of the MAD measurement: near the middle and the tails of each property's MOSES distribution
TARGETS = ("qed=0.9", "qed=0.6", "logp=1", "logp=3.5", "sa=2", "sa=3.5")


def load() -> dict[str, Any]:
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"runs": {}}


def save(res: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")


def train(name: str, budget: str) -> None:
    import genlab

    cfg = dict(CONFIGS[name])
    family = cfg.pop("family")
    t0 = time.perf_counter()
    run = genlab.train(family, "moses-100k", out=RUNS / name, overwrite=True, budget=budget, **COMMON, **cfg)
    res = load()
    res["runs"].setdefault(name, {})["train"] = {"budget": budget, "steps": run.summary["step"],
                                                 "train_seconds": run.summary["elapsed"],
                                                 "wall_seconds": time.perf_counter() - t0,
                                                 "params": sum(p.numel() for p in run.model.parameters()),
                                                 "options": {k: list(v) if isinstance(v, tuple) else v
                                                             for k, v in cfg.items()}}
    save(res)
    print(json.dumps(res["runs"][name]["train"], indent=1))


def evaluate(name: str, samples: int) -> None:
    import genlab

    t0 = time.perf_counter()
    rep = genlab.evaluate(RUNS / name, samples=samples, nll_examples=2000)
    res = load()
    res["runs"].setdefault(name, {})["eval"] = {**rep, "wall_seconds": time.perf_counter() - t0}
    save(res)
    m, c = rep["moses"], rep.get("ceiling", {})
    print_table(f"{name}: {samples} samples", [{"metric": k, "value": v, "same-n ceiling": c.get(k)}
                                                for k, v in m.items() if isinstance(v, float)])
    print(f"samples/s {rep['samples_per_s']:.1f}, metric time {rep['metrics_seconds']:.1f} s "
          f"({json.dumps(m.get('seconds'))})")


def condition(name: str, samples: int, scales: tuple[float, ...] = (1.0,), temp: float = 1.0) -> None:
    """MAD of asked vs obtained property for each target, conditional vs unconditional (same model), at each
    classifier-free guidance scale of the property prefix (1 = the prefix alone; ``--guidance``), both sampled at
    temperature ``temp``."""
    import numpy as np
    import torch

    import genlab
    from genlab.data.molecules import properties
    from genlab.modalities.molecule import run_conditions

    run = genlab.load(RUNS / name)
    mod = run.modality
    conds = run_conditions(run.spec)
    assert conds is not None, f"{name} was trained without --properties"
    t0 = time.perf_counter()
    uncond = mod.smiles(run, torch.cat([genlab.sample(run, 500, seed=100 + i, temperature=temp)
                                        for i in range(samples // 500)]))
    names = list(conds.names)
    u_props = properties(uncond, names)
    rows, guided = [], {}
    for scale in scales:
        out = guided.setdefault(str(scale), {})
        for target in TARGETS:
            prop, value = target.split("=")
            if prop not in names:
                continue
            x = torch.cat([genlab.sample(run, 500, seed=i, condition=target, guidance=scale,
                                         temperature=temp)
                           for i in range(samples // 500)])
            smiles = mod.smiles(run, x)
            got = properties(smiles, [prop])[prop]
            ok, u_ok = np.isfinite(got), np.isfinite(u_props[prop])
            r = {"condition": target, "guidance": scale, "temperature": temp, "valid": float(ok.mean()),
                 "MAD": float(np.abs(got[ok] - float(value)).mean()), "mean": float(got[ok].mean()),
                 "MAD unconditional": float(np.abs(u_props[prop][u_ok] - float(value)).mean()),
                 "unconditional valid": float(u_ok.mean()), "unconditional mean": float(u_props[prop][u_ok].mean()),
                 "unique": len(set(s for s, k in zip(smiles, ok, strict=True) if k)) / max(1, int(ok.sum()))}
            rows.append(r)
            out[target] = r
    res = load()
    key = "condition" if temp == 1.0 else f"condition@T{temp:g}"
    res["runs"].setdefault(name, {})[key] = {"samples": samples, "temperature": temp, "targets": guided.get("1.0", {}),
                                             "guided": guided, "wall_seconds": time.perf_counter() - t0}
    save(res)
    print_table(f"{name}: conditional sampling at temperature {temp:g}, {samples} molecules per target", rows)


def temperature(name: str, samples: int, temp: float) -> None:
    """The MOSES metric set (without KL) of ``samples`` molecules drawn at sampling temperature ``temp``."""
    import torch

    import genlab
    from genlab.metrics.molecules import moses_metrics
    from genlab.modalities.molecule import molecule_sets, reference_sets

    run = genlab.load(RUNS / name)
    mod = run.modality
    sets = molecule_sets(mod.data_config(run.config, run.path))
    test_ref, sf_ref = reference_sets(sets)
    t0 = time.perf_counter()
    x = torch.cat([genlab.sample(run, 500, seed=i, temperature=temp) for i in range(samples // 500)])
    sample_s = time.perf_counter() - t0
    m = moses_metrics(mod.smiles(run, x), test_ref, frozenset(sets.train), test_scaffolds=sf_ref)
    res = load()
    res["runs"].setdefault(name, {}).setdefault("temperature", {})[str(temp)] = {
        **m, "samples_per_s": samples / sample_s, "wall_seconds": time.perf_counter() - t0}
    save(res)
    print_table(f"{name}: {samples} samples at temperature {temp}",
                [{"metric": k, "value": v} for k, v in m.items() if isinstance(v, float)])


def table() -> None:
    from genlab.metrics.molecules import MOSES_TABLE

    res = load()
    keys = ("valid", "unique@1000", "unique@10000", "Novelty", "FCD/Test", "FCD/TestSF", "SNN/Test", "Frag/Test",
            "Scaf/Test", "IntDiv", "IntDiv2", "Filters", "KL")
    rows = []
    ceiling = None
    for name, r in res["runs"].items():
        if "eval" not in r:
            continue
        m = r["eval"]["moses"]
        rows.append({"model": f"genlab {name} ({r.get('train', {}).get('budget', '?')})",
                     **{k: m.get(k) for k in keys}})
        ceiling = ceiling or r["eval"].get("ceiling")
    if ceiling:
        rows.append({"model": f"same-n ceiling (n={ceiling.get('n')})", **{k: ceiling.get(k) for k in keys}})
    rows += [{"model": f"MOSES {k}", **{kk: v.get(kk) for kk in keys}} for k, v in MOSES_TABLE.items()]
    print_table("MOSES metrics on moses-100k (genlab) beside the published MOSES rows", rows)
    print("wrote", write_results("molecules", {"table": rows, **res}))


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["train", "eval", "condition", "temperature", "table"], required=True)
    ap.add_argument("--run", choices=list(CONFIGS))
    ap.add_argument("--budget", default="5m")
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--guidance", default="1", help="condition: comma-separated guidance scales (1 = off)")
    ap.add_argument("--temperature", type=float, default=None,
                    help="the sampling temperature (temperature: default 0.9; condition: default 1)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.part == "train":
        train(args.run, args.budget)
    elif args.part == "eval":
        evaluate(args.run, args.samples)
    elif args.part == "condition":
        condition(args.run, args.samples, tuple(float(g) for g in args.guidance.split(",")),
                  1.0 if args.temperature is None else args.temperature)
    elif args.part == "temperature":
        temperature(args.run, args.samples, 0.9 if args.temperature is None else args.temperature)
    else:
        table()


if __name__ == "__main__":
    main()
