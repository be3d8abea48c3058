"""Run molsets' ``get_all_metrics`` on the inputs the parity benchmark wrote (runs inside benchmarks/.venvs/molsets,
never in genlab's venv; genlab is not importable there).

Usage: python _molsets_reference.py INPUT.json OUTPUT.json
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    with open(src) as f:
        data = json.load(f)
    import moses  # the shims in sitecustomize.py make it import with current RDKit, pandas and numpy

    t0 = time.perf_counter()
    metrics = moses.get_all_metrics(data["gen"], k=[1000, 10000], n_jobs=1, device="cpu", test=data["test"],
                                    test_scaffolds=data["test_scaffolds"], train=data["train"])
    seconds = time.perf_counter() - t0
    out = {k: float(v) for k, v in metrics.items()}
    with open(dst, "w") as f:
        json.dump({"metrics": out, "seconds": seconds, "moses": moses.__version__}, f)


if __name__ == "__main__":
    main()
