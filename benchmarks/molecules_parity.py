"""Parity of genlab's MOSES metrics with molsets' ``get_all_metrics`` on 2,000 fixed molecules, and their speed.

molsets 0.3.1 does not import with current RDKit, pandas and numpy, so the reference runs in a venv of its own,
``benchmarks/.venvs/molsets``, built here: molsets and fcd-torch installed with ``--no-deps``, a ``sitecustomize.py``
with the compatibility shims (``rdkit.six``, ``DataFrame.append``, ``np.NaN``), and the scientific stack (torch,
RDKit, numpy, pandas, scipy) of the running interpreter's environment visible read-only through a ``.pth`` file, so
both sides use the very same RDKit and the comparison measures the metric code alone. genlab is not importable there.

The molecules (fixed, from the molsets data files): 1,900 scaffold-test molecules as the "generated" set plus 60
duplicates and 40 broken SMILES (unclosed rings / branches), 2,000 test molecules as the test set, 2,000 other
scaffold-test molecules as the scaffold test set, and 20,000 training molecules plus 200 of the generated ones as the
training set (so novelty is not trivially 1). Every list is canonicalised by RDKit first.

Usage: python benchmarks/molecules_parity.py  (writes benchmarks/out/molecules_parity.json; also the small fixture
tests/data/moses-parity.json that tests/metrics/test_molecules.py checks against, with --fixture)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import time
import venv
from pathlib import Path

import numpy as np

from _common import print_table, write_results  # benchmarks/_common.py (scripts run from any cwd)

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venvs" / "molsets"
SHIMS = '''"""Shims so that molsets 0.3.1 imports with current RDKit, pandas and numpy (benchmark venv only)."""
import sys, types
import numpy as np
import pandas as pd
six = types.ModuleType("rdkit.six"); six.iteritems = lambda d: iter(d.items()); sys.modules["rdkit.six"] = six
pd.DataFrame.append = lambda self, other, sort=False: pd.concat([self, other], sort=sort)
np.NaN = np.nan
'''


def build_venv() -> Path:
    """The reference venv (built on first use): molsets + fcd-torch without dependencies, the shims, the stack."""
    py = VENV / "bin" / "python"
    stamp = VENV / ".ready"
    if stamp.is_file():
        return py
    venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    site = Path(subprocess.check_output([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    subprocess.check_call([str(py), "-m", "pip", "install", "-q", "--no-deps", "molsets==0.3.1",
                           "fcd-torch==1.0.7"])
    (site / "sitecustomize.py").write_text(SHIMS)
    (site / "zz-genlab-stack.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    stamp.write_text("ok\n")
    return py


def inputs(n_gen: int = 1900, n_dup: int = 60, n_bad: int = 40, n_test: int = 2000, n_train: int = 20000,
           n_seen: int = 200, seed: int = 0) -> dict[str, list[str]]:
    """The fixed molecule sets (see the module docstring), canonical."""
    from genlab.data.molecules import canonical, moses_split

    rng = np.random.default_rng(seed)
    sf = list(moses_split("test_scaffolds"))
    pick = rng.permutation(len(sf))[: n_gen + n_test]
    gen = [canonical(sf[i]) or "" for i in pick[:n_gen]]
    test_sf = [canonical(sf[i]) or "" for i in pick[n_gen:]]
    test = [canonical(s) or "" for s in np.array(moses_split("test"))[rng.permutation(176_074)[:n_test]]]
    train = [canonical(s) or "" for s in np.array(moses_split("train"))[rng.permutation(1_584_663)[:n_train]]]
    dups = [gen[i] for i in rng.choice(n_gen, n_dup, replace=False)]
    bad = [gen[i] + ("1" if k % 2 else "(") for k, i in enumerate(rng.choice(n_gen, n_bad, replace=False))]
    full = gen + dups + bad
    order = rng.permutation(len(full))
    train += [gen[i] for i in rng.choice(n_gen, n_seen, replace=False)]
    return {"gen": [full[i] for i in order], "test": test, "test_scaffolds": test_sf, "train": train}


def ours(data: dict[str, list[str]]) -> tuple[dict[str, float], float, dict[str, float]]:
    """genlab's metrics on the same sets: (metrics, seconds including the reference statistics, stage seconds)."""
    from genlab.metrics.molecules import moses_metrics, reference

    t0 = time.perf_counter()
    test, test_sf = reference(data["test"]), reference(data["test_scaffolds"])
    m = moses_metrics(data["gen"], test, frozenset(data["train"]), test_scaffolds=test_sf)
    return m, time.perf_counter() - t0, m["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixture", action="store_true", help="also write tests/data/moses-parity.json (60 molecules)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    py = build_venv()
    sets = {"full": inputs()}
    if args.fixture:
        sets["fixture"] = inputs(n_gen=40, n_dup=4, n_bad=4, n_test=60, n_train=300, n_seen=5, seed=1)
    results: dict[str, dict] = {}
    for name, data in sets.items():
        tmp = HERE / "out" / f"molsets-{name}"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        (tmp.with_suffix(".in.json")).write_text(json.dumps(data))
        env = {**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
        t0 = time.perf_counter()
        subprocess.check_call([str(py), str(HERE / "_molsets_reference.py"), str(tmp.with_suffix(".in.json")),
                               str(tmp.with_suffix(".out.json"))], env=env, cwd=HERE)
        ref_wall = time.perf_counter() - t0
        ref = json.loads(tmp.with_suffix(".out.json").read_text())
        mine, seconds, stages = ours(data)
        rows = []
        for k, v in ref["metrics"].items():
            rows.append({"metric": k, "molsets": v, "genlab": mine.get(k), "abs diff": abs(v - mine[k])})
        worst = max(r["abs diff"] for r in rows)
        print_table(f"parity on {name} ({len(data['gen'])} molecules): worst |diff| {worst:.2e}", rows)
        results[name] = {"rows": rows, "worst_abs_diff": worst, "molsets_seconds": ref["seconds"],
                         "molsets_wall_seconds": ref_wall, "genlab_seconds": seconds, "genlab_stages": stages,
                         "n": len(data["gen"])}
        print(f"{name}: molsets get_all_metrics {ref['seconds']:.1f} s, genlab {seconds:.1f} s "
              f"(ratio {ref['seconds'] / seconds:.2f}x)")
        if name == "fixture":
            fixture = {"inputs": data, "molsets": ref["metrics"], "molsets_version": ref["moses"]}
            (HERE.parent / "tests" / "data" / "moses-parity.json").write_text(json.dumps(fixture, indent=0) + "\n")
    print("wrote", write_results("molecules_parity", {"command": " ".join(sys.argv), **results}))


if __name__ == "__main__":
    main()
