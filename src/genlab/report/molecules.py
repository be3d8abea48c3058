"""Molecule pictures for files and reports: RDKit grids of structures and property histograms (real vs generated)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np


def grid_png(smiles: Sequence[str], per_row: int = 8, size: int = 200, limit: int = 48,
             legends: Sequence[str] | None = None) -> bytes:
    """PNG bytes of a grid of the valid molecules among ``smiles`` drawn by RDKit (at most ``limit``); a grid with
    no valid molecule is a small image saying so."""
    from rdkit.Chem import Draw

    from genlab.data.molecules import mol

    shown = [(m, legends[i] if legends else "") for i, m in enumerate(mol(s) for s in smiles) if m is not None]
    shown = shown[:limit]
    if not shown:
        from PIL import Image, ImageDraw

        img = Image.new("RGB", (size * 2, size // 2), "white")
        ImageDraw.Draw(img).text((10, size // 4), "no valid molecule", fill="black")
    else:
        img = Draw.MolsToGridImage([m for m, _ in shown], molsPerRow=min(per_row, len(shown)),
                                   subImgSize=(size, size), legends=[t for _, t in shown])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def histograms_png(real: Mapping[str, np.ndarray], generated: Mapping[str, Mapping[str, np.ndarray]],
                   bins: int = 40) -> bytes | None:
    """PNG of one histogram panel per property: the real molecules' values and each run's, as densities (None
    without matplotlib).

    Arguments:
        real: ``property → values`` of real (test) molecules.
        generated: ``run → property → values`` of generated valid molecules.
        bins: bins per panel (shared by every set in a panel).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    names = list(real)
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 2.9), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        values = [np.asarray(real[name])] + [np.asarray(g[name]) for g in generated.values() if name in g]
        finite = np.concatenate([v[np.isfinite(v)] for v in values])
        lo, hi = np.percentile(finite, [0.5, 99.5]) if len(finite) else (0.0, 1.0)
        edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
        ax.hist(np.asarray(real[name]), bins=edges, density=True, color="#bbbbbb", label="real")
        for run, g in generated.items():
            if name in g:
                ax.hist(np.asarray(g[name]), bins=edges, density=True, histtype="step", linewidth=1.5, label=run)
        ax.set_title(name)
        ax.set_yticks([])
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()
