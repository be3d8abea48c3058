"""Harmonise a melody: fill alto, tenor and bass (or any voices) of the SATB grid under given voices with a grid
model that inpaints (``diffusion`` on the chorales), and write what it made (MIDI, MusicXML, WAV, piano roll).

This is :func:`genlab.api.inpaint` with music's inputs: a melody file (its one voice, or the soprano of a
four-part file) or a folder of them; unusable files in a folder are skipped and counted.

References:
    Huang et al., "Counterpoint by Convolution" (Coconet), 2017, arXiv:1903.07227 (filling in any voices).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genlab.errors import CapabilityError, ConfigError
from genlab.run import Run


@dataclass
class Harmonized:
    """What :func:`harmonize` wrote: the output path, the harmonised inputs' names, the files skipped (reason →
    file names), and the grids given and filled (``int64 (N, 4, T)``)."""

    path: Path
    names: list[str]
    skipped: dict[str, list[str]] = field(default_factory=dict)
    given: Any = None
    filled: Any = None


def harmonize(source: Run | str | Path, melody: str | Path, out: str | Path, *, voices: str = "ATB", seed: int = 0,
              tempo: float = 80.0, program: int = 19, **options: Any) -> Harmonized:
    """Fill ``voices`` under the given ones and write the results.

    Arguments:
        source: a grid run that inpaints (``genlab train diffusion --data chorales``) or its folder.
        melody: a MIDI/MusicXML file (one voice = the soprano; a four-part file gives its other voices too) or a
            folder of them.
        out: a folder (``NAME.mid/.musicxml/.wav/.png`` per input) or one ``.mid``/``.musicxml``/``.wav``/``.png``/
            ``.npz`` file of them all.
        voices: the voices to fill, letters of SATB (``ATB``), optionally with a time range in 16ths (``ATB:0-32``).
        seed: seed of the sampler.
        tempo, program: of the written MIDI and audio.
        **options: the family's sampling options (``steps``).

    Raises:
        CapabilityError: for a run that is not music or cannot inpaint; DataError for an unusable melody (a
            corrupt file, no notes, longer than the model's window, outside the soprano range, too few voices).
    """
    from genlab.api import as_run, inpaint, output_options
    from genlab.modalities.music import MusicModality

    run = as_run(source)
    mod = run.modality
    if not isinstance(mod, MusicModality):
        raise CapabilityError(f"harmonize needs a music run; {run.path} holds {mod.kind} data")
    if not run.model.inpainting:
        raise CapabilityError(f"family '{run.family}' cannot fill in voices; train diffusion on the chorales")
    out = Path(out)
    if not out.parent.exists():
        raise ConfigError(f"folder {out.parent} does not exist; create it or choose another --out")
    mod.sample_format(out, None)  # an unwritable --out stops before any work
    opts = output_options(run, {"tempo": tempo, "program": program})
    x, mask, names, skipped = mod.read_inputs(run, Path(melody), voices)
    filled = inpaint(run, x, mask, seed=seed, **options)
    path = mod.write_inpainted(run, x, mask, filled, out, names=names, options=opts)
    return Harmonized(path, names, skipped, x, filled)
