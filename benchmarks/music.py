"""Music benchmark (issue 13): every family trained for ``--budget`` on the Bach chorales, held-out NLL per token and
per 16th frame, the musical metric table against held-out Bach (Bach's own rates beside), 8 rendered pieces per
family, and a harmonisation of held-out sopranos scored by the same metrics.

Run one part per command under the CPU lock (each writes ``benchmarks/out/music/<part>.json``, so parts resume):

    python benchmarks/music.py --part bach                   # corpus, split, Bach's own rates (whole chorales)
    python benchmarks/music.py --part gpt --budget 20m       # train + eval (+ Markov baseline) + 8 pieces
    python benchmarks/music.py --part diffusion --budget 20m
    python benchmarks/music.py --part vae --budget 20m
    python benchmarks/music.py --part harmonize              # the diffusion run fills ATB under held-out sopranos
    python benchmarks/music.py --part table                  # the tables; benchmarks/out/music.json

A family is one entry of ``FAMILIES`` (its ``genlab train`` options); the ``rnn`` family is one more row.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import OUT, print_table, write_results  # benchmarks/_common.py (scripts run from any cwd)

HERE = OUT / "music"
RESULTS = Path(__file__).resolve().parent / "results"
DATA = "chorales"
LENGTH = 64  # 16ths: four 4/4 bars, the grid window and the excerpt length of every metric
#: ``genlab train`` options per family (model sizes picked for a few CPU-minutes)
FAMILIES: dict[str, dict[str, Any]] = {
    "gpt": {"n_layer": 4, "n_head": 4, "n_embd": 128, "dropout": 0.1, "block_size": 256, "batch_size": 32},
    "rnn": {"n_layer": 2, "hidden": 384, "n_embd": 64, "dropout": 0.1, "block_size": 256, "batch_size": 32},
    "diffusion": {"grid_width": 128, "grid_layers": 4, "heads": 4, "length": LENGTH, "batch_size": 32,
                  "precision": "auto"},
    "vae": {"length": LENGTH, "latent_dim": 32, "widths": (64, 128, 256), "hidden": 256, "batch_size": 64,
            "precision": "auto", "kl_warmup": 1000},  # warm-up: at 5 minutes without it the posterior collapsed
}
#: evaluation-time model options per family (tighter bounds)
EVAL_MODEL: dict[str, dict[str, Any]] = {"diffusion": {"bound_timesteps": 32}, "vae": {"iwae_k": 100}}
SAMPLES = 100


def _save(part: str, res: dict[str, Any]) -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    (HERE / f"{part}.json").write_text(json.dumps(res, indent=2) + "\n")


def part_bach() -> dict[str, Any]:
    """The corpus (parse cached), the split, Bach's own rates on whole chorales (train, test)."""
    from genlab.data.music_corpus import excerpts, read_corpus, split_pieces
    from genlab.metrics.music import piece_measures, voice_leading
    from genlab.modalities.music import chorales

    t0 = time.perf_counter()
    src = chorales()
    corpus = read_corpus(src)
    train, test = split_pieces(corpus.pieces, True, 0.1)
    res = {"files": len(src.files), "four_part": len(corpus.pieces), "skipped": {k: len(v) for k, v in
                                                                                corpus.skipped.items()},
           "dropped_notes": corpus.dropped_notes, "train": len(train), "test": len(test),
           "test_names": [p.name for p in test], "read_s": time.perf_counter() - t0}
    for name, pieces in (("train", train), ("test", test), ("all", corpus.pieces)):
        res[f"voice_leading_{name}"] = voice_leading(pieces)
        res[f"measures_{name}"] = piece_measures(excerpts(pieces, LENGTH))
    return res


def part_family(family: str, budget: str, retrain: bool = False) -> dict[str, Any]:
    """Train ``family`` for ``budget``, evaluate it (NLL, musical metrics), render 8 pieces."""
    import genlab
    from genlab.modalities.music import draw
    from genlab.report.music import pianoroll_png, write_pieces

    out = HERE / family
    t0 = time.perf_counter()
    if (out / "model.safetensors").is_file() and not retrain:  # a finished run: evaluate it again
        run = genlab.load(out, device="cpu")
        state = json.loads((out / "train_state.json").read_text())
        run.summary.update(step=state["step"], elapsed=state["elapsed"])
    else:
        run = genlab.train(family, DATA, out=out, overwrite=True, budget=budget, seed=0, quiet=True,
                           **FAMILIES[family])
    train_s = float(run.summary["elapsed"])
    t0 = time.perf_counter()
    rep = genlab.evaluate(run, samples=SAMPLES, seed=0, **({"markov": 5} if run.spec.form == "tokens" else {}),
                          **EVAL_MODEL.get(family, {}))
    eval_s = time.perf_counter() - t0
    x = draw(run, 8, seed=1, length=LENGTH)
    pieces = [p.crop(0, LENGTH) for p in run.modality.pieces(run, x)]  # type: ignore[attr-defined]
    folder = out / "pieces"
    if folder.exists():
        shutil.rmtree(folder)
    write_pieces(pieces, folder, "folder")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"music-{family}-pianorolls.png").write_bytes(pianoroll_png(pieces))
    return {"family": family, "options": {k: list(v) if isinstance(v, tuple) else v
                                          for k, v in FAMILIES[family].items()},
            "budget": budget, "steps": run.summary["step"], "train_s": train_s, "eval_s": eval_s,
            "params": sum(p.numel() for p in run.model.parameters()), "eval": rep, "pieces": str(folder)}


def part_harmonize(n: int = 32) -> dict[str, Any]:
    """The diffusion run fills alto, tenor and bass under the sopranos of held-out excerpts; scored by the same
    metrics, and against what Bach wrote (same pitch / pitch class per frame)."""
    import torch

    import genlab
    from genlab.data.music import from_grid, grid_pitch, to_grid
    from genlab.data.music_corpus import excerpts
    from genlab.metrics.music import music_report
    from genlab.modalities.music import reference_pieces
    from genlab.report.music import write_pieces

    run = genlab.load(HERE / "diffusion", device="cpu")
    test, train = reference_pieces(run, None)  # type: ignore[arg-type]
    ref = excerpts(test, LENGTH)
    rng = np.random.default_rng(0)
    pick = sorted(rng.choice(len(ref), size=min(n, len(ref)), replace=False).tolist())
    given = torch.from_numpy(np.stack([to_grid(ref[i], LENGTH) for i in pick]))
    mask = torch.zeros_like(given, dtype=torch.bool)
    mask[:, 1:] = True
    x = given.clone()
    x[mask] = 0
    t0 = time.perf_counter()
    filled = genlab.api.inpaint(run, x, mask, seed=0, progress=False)
    took = time.perf_counter() - t0
    assert torch.equal(filled[:, 0], given[:, 0])
    pieces = [from_grid(g.numpy(), f"harmonized-{ref[i].name}-{i}") for g, i in zip(filled, pick, strict=True)]
    train_ex = excerpts(train, LENGTH)
    res = music_report(pieces, [ref[i] for i in pick], [train_ex[i] for i in rng.choice(len(train_ex), len(pick),
                                                                                        replace=False)])
    gp, bp = grid_pitch(filled.numpy())[:, 1:], grid_pitch(given.numpy())[:, 1:]
    both = (gp >= 0) & (bp >= 0)
    res.update(n=len(pick), seconds=took, same_pitch=float((gp == bp)[both].mean()),
               same_pitch_class=float((gp % 12 == bp % 12)[both].mean()))
    write_pieces(pieces[:4], HERE / "harmonized", "folder") if not (HERE / "harmonized").exists() else None
    return res


def _num(v: Any, digits: int = 3) -> str:
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{digits}f}"


def _goal(ok: bool | None) -> str:
    return "–" if ok is None else ("met" if ok else "missed")


def part_table() -> dict[str, Any]:
    """Gather the parts into tables (stdout, markdown) and ``benchmarks/out/music.json``, with every goal checked."""
    parts = {p.stem: json.loads(p.read_text()) for p in sorted(HERE.glob("*.json"))}
    bach = parts.get("bach", {})
    vl_bach = bach.get("voice_leading_all", {})
    rows, goals = [], {}
    for fam in [*FAMILIES, "harmonize"]:
        if fam not in parts:
            continue
        r = parts[fam]
        ev = r.get("eval", {})
        m = ev.get("music", r if fam == "harmonize" else {})
        yl, ms, vl = m.get("yang_lerch", {}), m.get("measures", {}), m.get("voice_leading", {})
        row = {"family": fam if fam != "harmonize" else "diffusion: harmonize held-out S",
               "steps": r.get("steps"), "nats/token": ev.get("nll_per_token"), "nats/16th": ev.get("nll_per_frame"),
               "markov nats/token": ev.get("markov", {}).get("nll_per_token"),
               "mean OA": yl.get("mean_oa"), "OA/ceiling": yl.get("oa_ratio"),
               "scale cons.": ms.get("scale_consistency"), "empty beats": ms.get("empty_beat_rate"),
               "polyphony": ms.get("polyphony"), "5ths /1000": vl.get("fifths_per_1000"),
               "8ves /1000": vl.get("octaves_per_1000"), "crossing": vl.get("crossing_share"),
               "out of range": vl.get("out_of_range_share")}
        rows.append(row)
        g: dict[str, Any] = {}
        if row["OA/ceiling"] is not None:
            g["oa >= 0.8 ceiling"] = row["OA/ceiling"] >= 0.8
        if row["scale cons."] is not None:
            g["scale consistency >= 0.95"] = row["scale cons."] >= 0.95
        if vl and vl_bach:
            g["parallels <= 3x Bach"] = vl["parallels_per_1000"] <= 3 * vl_bach["parallels_per_1000"]
            g["crossing <= 2x Bach"] = vl["crossing_share"] <= 2 * vl_bach["crossing_share"]
        if "markov" in ev:
            g["token NLL < Markov"] = ev["nll_per_token"] < ev["markov"]["nll_per_token"]
        goals[fam] = g
    nll = {f: parts[f]["eval"].get("nll_per_token") for f in ("gpt", "rnn") if f in parts and "eval" in parts[f]}
    markov = next((parts[f]["eval"]["markov"]["nll_per_token"] for f in ("gpt", "rnn")
                   if f in parts and "markov" in parts[f].get("eval", {})), None)
    if len(nll) == 2 and markov is not None:
        goals["token families"] = {"NLL gpt < rnn < Markov": nll["gpt"] < nll["rnn"] < markov}
    if vl_bach:
        ms_b = bach.get("measures_all", {})
        rows.append({"family": f"Bach (all {bach.get('four_part')} chorales)",
                     "scale cons.": ms_b.get("scale_consistency"),
                     "empty beats": ms_b.get("empty_beat_rate"), "polyphony": ms_b.get("polyphony"),
                     "5ths /1000": vl_bach.get("fifths_per_1000"), "8ves /1000": vl_bach.get("octaves_per_1000"),
                     "crossing": vl_bach.get("crossing_share"), "out of range": vl_bach.get("out_of_range_share")})
    print_table("music: held-out NLL and musical metrics", rows)
    cols = list(dict.fromkeys(k for r in rows for k in r))
    print("| " + " | ".join(cols) + " |\n| " + " | ".join("---" for _ in cols) + " |")
    for r in rows:
        print("| " + " | ".join(_num(r.get(c)) if isinstance(r.get(c), float) else str(r.get(c, "–"))
                                for c in cols) + " |")
    for fam, g in goals.items():
        print(f"{fam}: " + ", ".join(f"{k}: {_goal(v)}" for k, v in g.items()))
    return {"rows": rows, "goals": goals, "bach": bach, "parts": parts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", required=True, choices=["bach", *FAMILIES, "harmonize", "table"])
    ap.add_argument("--budget", default="20m", help="training budget per family (the issue's protocol: 20m)")
    ap.add_argument("--retrain", action="store_true", help="train again although the run folder has a model")
    args = ap.parse_args()
    if args.part == "table":
        res = part_table()
        print(f"wrote {write_results('music', res)}")
        return
    res = part_bach() if args.part == "bach" else part_harmonize() if args.part == "harmonize" else \
        part_family(args.part, args.budget, args.retrain)
    _save(args.part, res)
    print(json.dumps({k: v for k, v in res.items() if k not in ("eval", "test_names")}, indent=1, default=str)[:3000])


if __name__ == "__main__":
    main()
