"""Errors a user can act on: each carries one line saying what was wrong and what to do."""

from __future__ import annotations


class GenlabError(Exception):
    """Base class: the CLI prints the message on one line and exits with code 2."""


class ConfigError(GenlabError):
    """An unknown option, a bad value, or a config file that cannot be read."""


class DataError(GenlabError):
    """A dataset that is unknown, missing, empty, unreadable or inconsistent."""


class CheckpointError(GenlabError):
    """A run folder or checkpoint that is missing, corrupt, from an unknown family or a newer format."""


class CapabilityError(GenlabError):
    """A family asked for something it does not offer (e.g. a likelihood from a GAN)."""


class TrainingDiverged(GenlabError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


class ExtraMissing(GenlabError):
    """An optional dependency group (``genlab[tabular]``, ``[serve]``, …) is not installed."""
