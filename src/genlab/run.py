"""A run: everything ``genlab.load`` gives back for a run folder (or ``genlab.train`` for a finished run)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genlab.core import DataSpec, GenerativeModel

if TYPE_CHECKING:
    from genlab.modalities.base import Modality


@dataclass
class Run:
    """A trained model with what belongs to it.

    Arguments:
        path: the run folder (None for a model built in memory).
        config: the run's ``config.json`` contents (family, configs, data spec, preprocessing, versions).
        model: the model, holding the sampling weights (EMA where the run kept them).
        modality: the modality of the run's data (writes its samples, evaluates it, …).
        artifacts: objects the run keeps beside its weights (e.g. ``{"tokenizer": Tokenizer}``).
        summary: what training reported (steps, time, …), empty for a loaded run.
    """

    path: Path | None
    config: dict[str, Any]
    model: GenerativeModel
    modality: Modality
    artifacts: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> DataSpec:
        """What the model knows of its data."""
        return self.model.spec

    @property
    def family(self) -> str:
        """The model family's name."""
        return self.model.family

    @property
    def data(self) -> str:
        """The ``--data`` the run was trained on (empty when unknown)."""
        return str(self.config.get("data", {}).get("data", ""))
