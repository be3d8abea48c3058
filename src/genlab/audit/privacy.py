"""Privacy: differentially private training (DP-SGD with Opacus) and the membership-inference and
distance-to-closest-record scores that show what a model gives away.

**DP-SGD.** With ``--dp-epsilon ε --dp-delta δ`` the trainer (a) draws every batch by Poisson sampling — each
training example independently with probability ``q = batch_size / N`` —, (b) computes per-example gradients with
Opacus' :class:`~opacus.GradSampleModule` hooks, (c) clips each example's gradient over the param group to norm
``C = --dp-max-grad-norm``, sums, adds ``N(0, σ²C²)`` noise and divides by the expected batch size ``qN``, for
exactly the param groups the family says read the data (``GenerativeModel.private_groups``). σ is set before
training with Opacus' RDP accountant so that the planned number of steps spends ``(ε, δ)``; the ε actually spent
(the steps really taken) is recorded in the run. A family with k private groups (a GAN's discriminator and
generator both see the real labels) releases k Gaussian queries of the same Poisson batch per step: that is one
Gaussian mechanism of noise multiplier σ/√k, which is what is accounted, and each group gets noise σ = σ₁√k.
``ε = inf`` clips without noise (the clipping-only baseline). The noise comes from a generator seeded from the
operating system's entropy, so DP runs do not repeat bit-for-bit.

**Audits.** :func:`membership_inference`: how well an attacker separates training members from held-out
non-members, as ROC AUC (0.5 = no better than chance), by the model's own likelihood where it has one
(Yeom et al.'s loss attack) and, for every family, by the distance to the nearest of many generated samples
(GAN-Leaks' full black-box attack). :func:`dcr`: distance from each synthetic sample to its closest training
record vs. closest held-out record; a model that copies puts samples nearer the training records.

References:
    Abadi et al., "Deep Learning with Differential Privacy", 2016, arXiv:1607.00133 (DP-SGD, moments accountant).
    Mironov, "Rényi Differential Privacy", 2017, arXiv:1702.07476; Mironov et al., "Rényi Differential Privacy of
    the Sampled Gaussian Mechanism", 2019, arXiv:1908.10530.
    Yousefpour et al., "Opacus: User-Friendly Differential Privacy Library in PyTorch", 2021, arXiv:2109.12298.
    Yeom et al., "Privacy Risk in Machine Learning", 2018, arXiv:1709.01604 (loss-threshold attack).
    Chen et al., "GAN-Leaks: A Taxonomy of Membership Inference Attacks against GANs", 2020, arXiv:1909.03935.
    Park et al., "Data Synthesis based on GANs" (DCR), 2018, arXiv:1806.03384.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from genlab.config import check
from genlab.core import GenerativeModel
from genlab.data import ArrayDataset, Dataset, seeded_generator
from genlab.errors import CapabilityError, ConfigError
from genlab.extras import require


def check_dp(epsilon: float | None, delta: float, max_grad_norm: float) -> None:
    """Validate the DP options (``ε > 0`` or ``inf``, ``0 < δ < 1``, ``C > 0``) in one-line errors."""
    if epsilon is None:
        return
    check(not math.isnan(epsilon) and epsilon > 0,
          f"--dp-epsilon must be > 0 (or inf for clipping without noise), got {epsilon}")
    check(0 < delta < 1, f"--dp-delta must be in (0, 1), got {delta}")
    check(math.isfinite(max_grad_norm) and max_grad_norm > 0, f"--dp-max-grad-norm must be > 0, got {max_grad_norm}")


class DPSGD:
    """DP-SGD state of one training run: sampling rate, noise multiplier, per-example clipping, the accountant.

    Arguments:
        model: the family instance (its ``private_groups`` are privatized).
        n_train: training examples N.
        batch_size: expected batch size ``qN``.
        steps: planned optimizer steps (σ is chosen so that they spend the budget).
        epsilon, delta: the target ``(ε, δ)``; ``epsilon = inf``: clip only, no noise.
        max_grad_norm: per-example clipping norm C.

    Raises:
        CapabilityError: for a family that declares no private groups, or layers Opacus cannot wrap.
        ConfigError: for bad budgets or a batch larger than the data.
    """

    def __init__(self, model: GenerativeModel, n_train: int, batch_size: int, steps: int, epsilon: float,
                 delta: float, max_grad_norm: float) -> None:
        check_dp(epsilon, delta, max_grad_norm)
        groups = type(model).private_groups
        if not groups:
            from genlab.core import MODELS

            able = ", ".join(n for n, c in MODELS.items() if c.private_groups)
            raise CapabilityError(f"family '{model.family}' cannot train with DP-SGD (Opacus cannot give it "
                                  f"per-example gradients); use one of: {able}")
        if batch_size >= n_train:
            raise ConfigError(f"--batch-size {batch_size} must be smaller than the {n_train} training examples "
                              "for DP-SGD's Poisson sampling")
        opacus = require("opacus", "audit", "DP-SGD (--dp-epsilon)")
        accountants = require("opacus.accountants", "audit", "DP-SGD (--dp-epsilon)")
        utils = require("opacus.accountants.utils", "audit", "DP-SGD (--dp-epsilon)")
        validators = require("opacus.validators", "audit", "DP-SGD (--dp-epsilon)")
        for name, mod in model.named_modules():
            if getattr(mod, "parametrizations", None):  # e.g. spectral normalization: no per-example gradients
                raise CapabilityError(f"Opacus cannot give per-example gradients through the parametrized layer "
                                      f"{name} (spectral normalization); for a GAN pass --no-spectral-norm")
        problems = validators.ModuleValidator.validate(model, strict=False)
        if problems:
            raise CapabilityError(f"Opacus cannot wrap this {model.family} model for DP-SGD: "
                                  f"{str(problems[0]).splitlines()[0]}")
        self.groups = tuple(groups)
        self.n_train, self.batch_size, self.planned_steps = n_train, batch_size, steps
        self.epsilon_target, self.delta, self.max_grad_norm = float(epsilon), float(delta), float(max_grad_norm)
        self.sample_rate = batch_size / n_train
        if math.isinf(epsilon):
            self.sigma_step = 0.0
        else:
            self.sigma_step = float(utils.get_noise_multiplier(target_epsilon=epsilon, target_delta=delta,
                                                               sample_rate=self.sample_rate, steps=steps,
                                                               accountant="rdp"))
        self.sigma = self.sigma_step * math.sqrt(len(self.groups))  # per group (see the module doc)
        self.accountant = accountants.RDPAccountant()
        self.steps_taken = 0
        self.module = opacus.GradSampleModule(model, loss_reduction="sum", strict=False)
        self._sums: dict[nn.Parameter, Tensor] = {}
        self._noise = torch.Generator(device=model.device).manual_seed(secrets.randbits(63))
        self.model = model

    # -- batches -------------------------------------------------------------------------------------
    def batch(self, data: Dataset, step: int, seed: int) -> tuple[Tensor, Tensor | None]:
        """The Poisson batch of ``step``: every example independently with probability ``q`` (seeded)."""
        g = seeded_generator("dp-poisson", seed, step)
        idx = torch.nonzero(torch.rand(len(data), generator=g) < self.sample_rate).flatten()
        x = data.x[idx]
        augment = data.augment if isinstance(data, ArrayDataset) else None
        if augment is not None and len(idx):
            x = augment(x, seeded_generator("augment", seed, step))
        return x, None if data.y is None else data.y[idx]

    # -- gradients -----------------------------------------------------------------------------------
    def accumulate(self, params: Sequence[nn.Parameter], scale: float) -> None:
        """After one micro-batch's backward: clip each example's gradient over ``params`` to norm C and add it
        to the step's sum. ``scale`` turns Opacus' per-example gradients of the backward scalar into gradients of
        each example's own loss (micro-batch size × micro-batches, for a loss that is a mean over examples)."""
        grads = []
        for p in params:
            gs = getattr(p, "grad_sample", None)
            if isinstance(gs, list):
                gs = torch.cat(gs)
            grads.append(None if gs is None else gs * scale)
        present = [g for g in grads if g is not None]
        if present:
            n = present[0].shape[0]
            norms = torch.stack([g.reshape(n, -1).norm(dim=1) for g in present]).norm(dim=0)  # (B,)
            factor = (self.max_grad_norm / (norms + 1e-6)).clamp(max=1.0)  # min(1, C/‖g_i‖)
            for p, g in zip(params, grads, strict=True):
                if g is not None:
                    clipped = torch.einsum("b,b...->...", factor.to(g.dtype), g)
                    self._sums[p] = self._sums[p] + clipped if p in self._sums else clipped
        for p in self.model.parameters():  # drop every per-example gradient (other groups' too)
            p.grad_sample = None  # type: ignore[attr-defined]

    def finish(self, params: Sequence[nn.Parameter]) -> None:
        """Set each parameter's gradient to ``(Σ clipped + N(0, σ²C²)) / (qN)`` and reset the sums."""
        for p in params:
            total = self._sums.pop(p, None)
            if total is None:
                total = torch.zeros_like(p)
            if self.sigma > 0:
                noise = torch.randn(p.shape, generator=self._noise, device=p.device, dtype=p.dtype)
                total = total + self.sigma * self.max_grad_norm * noise
            p.grad = total / self.batch_size

    def step_done(self) -> None:
        """Account one step (all private groups together: one Gaussian mechanism of multiplier σ/√k)."""
        self.steps_taken += 1
        if self.sigma_step > 0:
            self.accountant.step(noise_multiplier=self.sigma_step, sample_rate=self.sample_rate)

    @property
    def epsilon(self) -> float:
        """ε spent so far at the run's δ (inf without noise)."""
        if self.sigma_step == 0:
            return math.inf
        if self.steps_taken == 0:
            return 0.0
        return float(self.accountant.get_epsilon(delta=self.delta))

    def report(self) -> dict[str, Any]:
        """JSON-able record of the run's privacy (stored in ``train_state.json`` and ``privacy.json``)."""
        eps = self.epsilon
        return {"mechanism": "DP-SGD (Poisson sampling, per-example clipping, Gaussian noise)",
                "accountant": "rdp", "epsilon_spent": None if math.isinf(eps) else eps,
                "epsilon_target": None if math.isinf(self.epsilon_target) else self.epsilon_target,
                "delta": self.delta, "max_grad_norm": self.max_grad_norm, "noise_multiplier": self.sigma,
                "noise_multiplier_accounted": self.sigma_step, "sample_rate": self.sample_rate,
                "expected_batch_size": self.batch_size, "n_train": self.n_train, "steps": self.steps_taken,
                "planned_steps": self.planned_steps, "private_groups": list(self.groups),
                "delta_below_1_over_n": self.delta < 1 / self.n_train}

    def state(self) -> dict[str, Any]:
        return {"steps_taken": self.steps_taken, "history": [list(h) for h in self.accountant.history]}

    def load_state(self, state: dict[str, Any]) -> None:
        self.steps_taken = int(state.get("steps_taken", 0))
        self.accountant.history = [tuple(h) for h in state.get("history", [])]


# -- audits ------------------------------------------------------------------------------------------


def auc(positive: np.ndarray | Sequence[float], negative: np.ndarray | Sequence[float]) -> float:
    """ROC AUC of scores where ``positive`` should score higher: P(pos > neg) + ½ P(pos = neg) (Mann-Whitney)."""
    pos, neg = np.asarray(positive, dtype=np.float64), np.asarray(negative, dtype=np.float64)
    if len(pos) == 0 or len(neg) == 0:
        raise ConfigError("AUC needs at least one positive and one negative score")
    both = np.concatenate([pos, neg])
    order = both.argsort(kind="mergesort")
    ranks = np.empty(len(both))
    ranks[order] = np.arange(1, len(both) + 1)
    for v in np.unique(both):  # average the ranks of ties
        tie = both == v
        if tie.sum() > 1:
            ranks[tie] = ranks[tie].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def as_vectors(x: Tensor, levels: int = 0) -> Tensor:
    """Flat float vectors of examples for distances: 8-bit data (``levels`` 256) scaled to [0, 1]."""
    v = torch.as_tensor(x).reshape(len(x), -1).double()
    return v / (levels - 1) if levels > 1 else v


def nearest(a: Tensor, b: Tensor, chunk: int = 1024) -> tuple[Tensor, Tensor]:
    """Euclidean distance from each row of ``a`` to its nearest row of ``b``, and that row's index."""
    ds, ids = [], []
    for lo in range(0, len(a), chunk):
        d = torch.cdist(a[lo : lo + chunk], b, compute_mode="donot_use_mm_for_euclid_dist")
        v, i = d.min(1)
        ds.append(v)
        ids.append(i)
    return torch.cat(ds), torch.cat(ids)


def dcr(synthetic: Tensor, train: Tensor, holdout: Tensor, *, seed: int = 0) -> dict[str, Any]:
    """Distance to closest record: synthetic samples vs. training records and vs. as many held-out records.

    Arguments:
        synthetic, train, holdout: flat float vectors (:func:`as_vectors`).
        seed: picks the training subset of the holdout's size (so both references are equally dense).

    Returns:
        median DCR to train and to holdout, their ratio (≈ 1 for a model that does not copy, → 0 for copies),
        the share of samples nearer a training record than any held-out one (≈ 0.5 ideal) and the share of
        exact copies (distance 0).
    """
    m = min(len(train), len(holdout))
    sub = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:m]
    d_train, _ = nearest(synthetic, train[sub])
    d_hold, _ = nearest(synthetic, holdout[:m])
    med_t, med_h = float(d_train.median()), float(d_hold.median())
    return {"n_synthetic": len(synthetic), "n_reference": m, "dcr_train_median": med_t,
            "dcr_holdout_median": med_h, "dcr_ratio": med_t / med_h if med_h > 0 else float("nan"),
            "closer_to_train_share": float((d_train < d_hold).double().mean()),
            "exact_copy_share": float((d_train == 0).double().mean())}


def membership_inference(members: Tensor, non_members: Tensor, synthetic: Tensor,
                         member_log_prob: Tensor | None = None,
                         non_member_log_prob: Tensor | None = None) -> dict[str, Any]:
    """Membership-inference AUCs of a trained model (0.5 = chance, 1 = every member recognised).

    Arguments:
        members: training examples as flat vectors; non_members: held-out examples, the same number.
        synthetic: many generated samples as flat vectors (the black-box attack's view of the model).
        member_log_prob, non_member_log_prob: the model's log-likelihood (or bound) of each, when it has one.

    Returns:
        ``distance_auc`` (members are nearer their nearest generated sample: GAN-Leaks full black-box) and
        ``likelihood_auc`` (members have higher likelihood: the loss-threshold attack) when given.
    """
    d_mem, _ = nearest(members, synthetic)
    d_non, _ = nearest(non_members, synthetic)
    out: dict[str, Any] = {"n_members": len(members), "n_non_members": len(non_members),
                           "n_synthetic": len(synthetic), "distance_auc": auc(-d_mem.numpy(), -d_non.numpy())}
    if member_log_prob is not None and non_member_log_prob is not None:
        out["likelihood_auc"] = auc(torch.as_tensor(member_log_prob).double().numpy(),
                                    torch.as_tensor(non_member_log_prob).double().numpy())
    return out
