"""Fit one SDV synthesizer on a training CSV and sample from it (run by benchmarks/tabular.py with the Python of
``benchmarks/.venvs/sdv``; never imported by genlab).

    python _sdv_runner.py TRAIN.csv OUT_DIR SYNTH BUDGET_S N_ROWS DTYPES.json

For ``ctgan`` and ``tvae`` two probe fits (1 and 2 epochs) give the cost of an epoch and the fixed cost, and the fit
gets as many epochs as fit in the budget (the probes are not counted; a fit more than 15 % off the budget is redone
with the epochs rescaled, at most twice); the Gaussian copula has no epochs and fits once. Writes
``OUT_DIR/synth.csv`` and ``OUT_DIR/fit.json``.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import pandas as pd


def main() -> None:
    train_csv, out_dir, synth, budget, n, dtypes = sys.argv[1:7]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kinds = json.loads(Path(dtypes).read_text())
    df = pd.read_csv(train_csv)
    from sdv.metadata import SingleTableMetadata
    from sdv.single_table import CTGANSynthesizer, GaussianCopulaSynthesizer, TVAESynthesizer

    meta = SingleTableMetadata()
    meta.detect_from_dataframe(df)
    for col, kind in kinds.items():  # the same column types genlab inferred
        sdtype = "categorical" if kind in ("categorical", "boolean") else "numerical"
        meta.update_column(col, sdtype=sdtype)
    budget_s = float(budget)

    def make(epochs: int):
        if synth == "gaussian_copula":
            return GaussianCopulaSynthesizer(meta)
        cls = CTGANSynthesizer if synth == "ctgan" else TVAESynthesizer
        return cls(meta, epochs=epochs, verbose=False)

    # The fit gets the budget: one epoch's cost e and the fixed cost o (metadata, RDT transforms, set-up) come from
    # two probe fits of 1 and 2 epochs (o + e and o + 2e); the real fit then runs floor((budget - o) / e) epochs.
    # The probes are the benchmark's measuring device and are not counted in the fit time.
    epochs, probe = 1, 0.0
    if synth != "gaussian_copula":
        t0 = time.perf_counter()
        make(1).fit(df)
        p1 = time.perf_counter() - t0
        t0 = time.perf_counter()
        make(2).fit(df)
        p2 = time.perf_counter() - t0
        probe = p1 + p2
        # the first fit also pays one-off warm-up (imports, allocator), so p2 - p1 can be tiny or negative: an
        # epoch is taken to cost at least a twentieth of the 2-epoch fit, and the fit is capped at 20,000 epochs
        per_epoch = max(p2 - p1, p2 / 20)
        overhead = max(p2 - 2 * per_epoch, 0.0)
        epochs = min(20_000, max(1, int((budget_s - overhead) / per_epoch)))
    t1 = time.perf_counter()
    model = make(epochs)
    model.fit(df)
    fit_s = time.perf_counter() - t1
    for _ in range(2):  # the estimate was off by more than 15 %: refit once or twice with the epochs rescaled
        if synth == "gaussian_copula" or 0.85 * budget_s <= fit_s <= 1.15 * budget_s:
            break
        epochs = max(1, min(20_000, int(epochs * budget_s / fit_s)))
        t1 = time.perf_counter()
        model = make(epochs)
        model.fit(df)
        fit_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    sample = model.sample(int(n))
    sample_s = time.perf_counter() - t2
    sample.to_csv(out / "synth.csv", index=False)
    info = {"synth": synth, "epochs": epochs, "probe_s": probe, "fit_s": fit_s, "fit_total_s": fit_s,
            "sample_s": sample_s, "rows": int(n), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            / 1024}
    (out / "fit.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info))


if __name__ == "__main__":
    main()
