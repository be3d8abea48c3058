"""The sampler interface, the sampler registry and the sampling loop with its progress bar.

A sampler is an object over a :class:`~genlab.samplers.schedules.NoiseSchedule` with one method that matters,
``step(x0, eps, t, t_prev, x, generator)``: given the model's data and noise predictions at ``x_t`` it returns
``x_{t_prev}`` (``t_prev = -1`` means clean data). Networks and families know nothing of samplers; a family hands
the loop a *denoiser* ``(x_t, t) -> (x̂_0, ε̂)``.
"""

from __future__ import annotations

import contextlib
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from genlab.core import Registry
from genlab.samplers.schedules import NoiseSchedule

#: ``(x_t (B, C, H, W), t) -> (x̂_0, ε̂)``, each like ``x_t``
Denoiser = Callable[[Tensor, int], tuple[Tensor, Tensor]]


class Sampler(ABC):
    """One reverse-diffusion update rule over a fixed schedule.

    Arguments:
        schedule: the noise schedule the model was trained with.
        eta: stochasticity (only DDIM uses it; others ignore it).
    """

    #: sensible number of steps when the user gives none (None = all T training steps)
    default_steps: int | None = 50

    def __init__(self, schedule: NoiseSchedule, eta: float = 0.0) -> None:
        self.schedule = schedule
        self.eta = eta

    def timesteps(self, steps: int | None) -> list[int]:
        """Descending timesteps to visit (``steps`` of them; the default for this sampler when None)."""
        n = steps or min(self.default_steps or self.schedule.num_timesteps, self.schedule.num_timesteps)
        return self.schedule.respaced(n)

    def reset(self) -> None:  # noqa: B027  (a hook; only multistep samplers keep state)
        """Forget any multistep history (called at the start of every sampling run)."""

    def _ab(self, t: int) -> float:
        return float(self.schedule.alpha_bar_at(t))

    @abstractmethod
    def step(self, x0: Tensor, eps: Tensor, t: int, t_prev: int, x: Tensor,
             generator: torch.Generator | None = None) -> Tensor:
        """``x_{t_prev}`` from ``x_t`` and the predictions ``(x̂_0, ε̂)`` at ``(x_t, t)``."""


SAMPLERS: Registry[type[Sampler]] = Registry("sampler")


def register_sampler(name: str) -> Callable[[type[Sampler]], type[Sampler]]:
    """Class decorator: register a sampler under ``name``."""
    return SAMPLERS.register(name)


def gaussian(shape: torch.Size | tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise drawn on the generator's device, moved to ``like``'s device and dtype."""
    dev = generator.device if generator is not None else like.device
    return torch.randn(tuple(shape), generator=generator, device=dev).to(device=like.device, dtype=like.dtype)


@contextlib.contextmanager
def progress(total: int, description: str, show: bool = True) -> Iterator[Callable[[], None]]:
    """A rich progress bar on stderr (silent when ``show`` is False or stderr is not a terminal); yields advance."""
    if not (show and sys.stderr.isatty()):
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)


def sample_loop(sampler: Sampler, denoise: Denoiser, x: Tensor, steps: int | None = None,
                generator: torch.Generator | None = None, show_progress: bool = True,
                timesteps: list[int] | None = None) -> Tensor:
    """Run ``sampler`` from pure noise ``x`` (at t = T-1, or at ``timesteps[0]``) down to clean data.

    Arguments:
        sampler: the update rule.
        denoise: the model's ``(x_t, t) -> (x̂_0, ε̂)``.
        x: starting noise ``(B, C, H, W)``.
        steps: number of model evaluations (the sampler's default when None).
        generator: source of the sampler's fresh noise.
        show_progress: draw a progress bar when stderr is a terminal.
        timesteps: descending timesteps to visit instead of ``sampler.timesteps(steps)``.

    Returns:
        Samples in model space ``(B, C, H, W)``.
    """
    ts = sampler.timesteps(steps) if timesteps is None else timesteps
    sampler.reset()
    with progress(len(ts), f"sample {type(sampler).__name__}", show_progress) as advance:
        for i, t in enumerate(ts):
            t_prev = ts[i + 1] if i + 1 < len(ts) else -1
            x0, eps = denoise(x, t)
            x = sampler.step(x0, eps, t, t_prev, x, generator)
            advance()
    return x
