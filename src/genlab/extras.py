"""Optional dependency groups: import a heavy, modality-specific package or say in one line which extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from genlab.errors import ExtraMissing


def require(module: str, extra: str, what: str = "") -> ModuleType:
    """Import ``module``, or raise :class:`~genlab.errors.ExtraMissing` naming the extra that provides it.

    Arguments:
        module: the import name, e.g. ``"rdkit.Chem"``.
        extra: the genlab extra that installs it, e.g. ``"molecules"``.
        what: what needs it, for the message (default: the module name).

    Raises:
        ExtraMissing: ``… needs <package>: pip install 'genlab[<extra>]'``.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExtraMissing(f"{what or module} needs {module.split('.')[0]}: pip install 'genlab[{extra}]'") from None
