"""Samplers: diffusion noise schedules and reverse-diffusion samplers (importing registers them)."""

from genlab.samplers import diffusion as _diffusion  # noqa: F401  (registers ddpm, ddim, dpmpp_2m)
from genlab.samplers.base import SAMPLERS, Sampler, sample_loop
from genlab.samplers.inpaint import repaint
from genlab.samplers.invert import ddim_decode, ddim_invert
from genlab.samplers.restore import denoise_from
from genlab.samplers.schedules import NoiseSchedule

__all__ = ["SAMPLERS", "NoiseSchedule", "Sampler", "ddim_decode", "ddim_invert", "denoise_from", "repaint",
           "sample_loop"]
