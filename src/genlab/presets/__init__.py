"""Packaged option presets: ``genlab train FAMILY --config tiny`` reads ``presets/tiny/FAMILY.toml``.

``tiny`` is a small configuration per family for edge devices (a few hundred kB of fp32 weights, fast to export,
quantize and sample without PyTorch); README "Small models for the edge" lists each preset's size and quality beside
the family's default.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent


def names() -> list[str]:
    """The preset names (folders of this package)."""
    return sorted(p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith("_"))


def preset_file(name: str, family: str) -> Path | None:
    """The TOML file of preset ``name`` for ``family``, or None when there is none."""
    if "/" in name or "\\" in name or name.startswith("."):
        return None
    p = ROOT / name / f"{family}.toml"
    return p if p.is_file() else None
