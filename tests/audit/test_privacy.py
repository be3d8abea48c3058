"""DP-SGD against a hand computation, the noise and the accountant; the audit scores against references."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from genlab.core import Batch, DataSpec, GenerativeModel
from genlab.data import ArrayDataset
from genlab.errors import CapabilityError, ConfigError
from tests.test_cli import assert_one_line_error, run_cli

pytest.importorskip("opacus", reason="DP-SGD needs the audit extra (opacus)")

from genlab.audit.privacy import DPSGD, auc, dcr, membership_inference
from genlab.trainer import TrainConfig, Trainer


@dataclass(frozen=True)
class TinyConfig:
    width: int = 3


class Tiny(GenerativeModel):
    """Per-example loss ℓ_i = (w·x_i + b - 1)² through one linear layer and a tanh: gradients of differing norm."""

    config_cls = TinyConfig
    data_forms = ("vector",)
    private_groups = ("main",)

    def __init__(self) -> None:
        super().__init__(TinyConfig(), DataSpec(kind="vector", shape=(4,), form="vector"))
        self.lin = nn.Linear(4, 3)
        self.out = nn.Linear(3, 1)

    def per_example(self, x: Tensor) -> Tensor:
        return (self.out(torch.tanh(self.lin(x))).squeeze(1) - 1).pow(2)

    def loss(self, batch: Batch, group: str = "main") -> tuple[Tensor, dict[str, float]]:
        return self.per_example(batch.x).mean(), {}

    def sample(self, n: int, cond: Tensor | None = None, *, generator: torch.Generator | None = None) -> Tensor:
        return torch.zeros(n, 4)


def hand_gradient(model: Tiny, x: Tensor, clip: float, expected_batch: int) -> list[Tensor]:
    """Σ_i clip(∇ℓ_i, C) / (qN), one example at a time with plain autograd."""
    params = list(model.parameters())
    total = [torch.zeros_like(p) for p in params]
    for i in range(len(x)):
        grads = torch.autograd.grad(model.per_example(x[i : i + 1]).sum(), params)
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
        factor = min(1.0, clip / (float(norm) + 1e-6))
        total = [t + factor * g for t, g in zip(total, grads, strict=True)]
    return [t / expected_batch for t in total]


def test_dp_sgd_matches_hand_computed_clipped_gradients():
    torch.manual_seed(0)
    model = Tiny()
    x = torch.randn(7, 4) * 3
    norms = sorted(float(torch.sqrt(sum(g.pow(2).sum() for g in torch.autograd.grad(
        model.per_example(x[i : i + 1]).sum(), list(model.parameters()))))) for i in range(7))
    clip = (norms[2] + norms[3]) / 2  # three examples keep their gradient, four are clipped
    assert norms[0] < clip < norms[-1]
    want = hand_gradient(model, x, clip=clip, expected_batch=10)
    dp = DPSGD(model, n_train=100, batch_size=10, steps=5, epsilon=math.inf, delta=1e-5, max_grad_norm=clip)
    params = list(model.parameters())
    for part in (x[:4], x[4:]):  # two micro-batches of an accumulated step, as the trainer runs them
        (model.loss(Batch(part))[0] / 2).backward()
        dp.accumulate(params, len(part) * 2)
    dp.finish(params)
    for p, w in zip(params, want, strict=True):
        torch.testing.assert_close(p.grad, w, rtol=1e-5, atol=1e-7)
    assert dp.sigma == 0 and math.isinf(dp.epsilon)


def test_trainer_step_is_dp_sgd_on_the_poisson_batch():
    torch.manual_seed(1)
    model = Tiny()
    data = ArrayDataset(torch.randn(60, 4) * 2, None, model.spec)
    cfg = TrainConfig(batch_size=12, optimizer="sgd", momentum=0.0, lr=1.0, schedule="constant", max_steps=4,
                      device="cpu", quiet=True, eval_every=0, grad_accum=2, dp_epsilon=math.inf,
                      dp_max_grad_norm=0.3)
    trainer = Trainer(model, data, cfg)
    x, _ = trainer.dp.batch(data, 0, cfg.seed)
    assert 0 < len(x) < 60
    ref = Tiny()
    ref.load_state_dict(model.state_dict())
    want = hand_gradient(ref, x, clip=0.3, expected_batch=12)
    before = [p.detach().clone() for p in model.parameters()]
    trainer.train_step()
    for b, p, g in zip(before, model.parameters(), want, strict=True):
        torch.testing.assert_close(b - p.detach(), g, rtol=1e-5, atol=1e-7)  # SGD, lr 1: the step is the gradient
    # Poisson sampling: batch sizes vary around q·N = 12 and every example is equally likely
    sizes = [len(trainer.dp.batch(data, s, 0)[0]) for s in range(400)]
    assert 11 < np.mean(sizes) < 13 and np.std(sizes) > 1


def test_noise_and_accountant():
    torch.manual_seed(2)
    model = Tiny()
    model.lin = nn.Linear(4, 300)
    model.out = nn.Linear(300, 1)
    dp = DPSGD(model, n_train=1000, batch_size=50, steps=200, epsilon=2.0, delta=1e-5, max_grad_norm=1.5)
    assert dp.sigma > 0.5
    params = list(model.parameters())
    dp.finish(params)  # no examples: the update is pure noise of std σC / (qN)
    noise = torch.cat([p.grad.flatten() for p in params])
    assert float(noise.std()) == pytest.approx(dp.sigma * 1.5 / 50, rel=0.06)
    for _ in range(200):
        dp.step_done()
    assert 1.9 <= dp.epsilon <= 2.0 + 1e-6  # the planned steps spend the budget, not more
    half = DPSGD(Tiny(), n_train=1000, batch_size=50, steps=200, epsilon=2.0, delta=1e-5, max_grad_norm=1.5)
    for _ in range(100):
        half.step_done()
    assert half.epsilon < dp.epsilon


def test_families_opacus_cannot_wrap():
    from genlab.api import create

    with pytest.raises(CapabilityError, match="spectral"):
        DPSGD(create("gan", DataSpec("image", (1, 8, 8), 10, form="image", levels=256), g_widths=(8,),
                     d_widths=(8,), d_features=8, z_dim=4), 100, 10, 5, 1.0, 1e-5, 1.0)
    with pytest.raises(CapabilityError, match="cannot train with DP-SGD"):
        DPSGD(create("flow", DataSpec("vector", (2,), form="vector")), 100, 10, 5, 1.0, 1e-5, 1.0)
    with pytest.raises(ConfigError, match="--dp-epsilon must be > 0"):
        TrainConfig(dp_epsilon=0.0)


def test_auc_dcr_and_membership_against_references():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 50).round(1), rng.normal(0, 1, 70).round(1)  # rounding makes ties
    assert auc(pos, neg) == pytest.approx(roc_auc_score(np.r_[np.ones(50), np.zeros(70)], np.r_[pos, neg]))
    train, hold = torch.rand(40, 5, dtype=torch.float64), torch.rand(40, 5, dtype=torch.float64)
    copies = dcr(train[:20].clone(), train, hold)
    assert copies["exact_copy_share"] > 0 and copies["closer_to_train_share"] >= copies["exact_copy_share"]
    fresh = dcr(torch.rand(200, 5, dtype=torch.float64), train, hold)
    assert fresh["exact_copy_share"] == 0 and 0.3 < fresh["closer_to_train_share"] < 0.7
    d = torch.cdist(train[:1], hold[:40])
    assert dcr(train[:1], train, hold)["dcr_holdout_median"] == pytest.approx(float(d.min()))
    mia = membership_inference(train, hold, train + 1e-3, torch.ones(40), torch.zeros(40))
    assert mia["distance_auc"] == 1.0 and mia["likelihood_auc"] == 1.0


def test_dp_training_from_the_cli(tmp_path, capsys):
    out = tmp_path / "dp"
    code, _, err = run_cli(["train", "vae", "--data", "digits", "--out", out, "--max-steps", "3", "--batch-size",
                            "32", "--quiet", "--device", "cpu", "--eval-every", "0", "--widths", "8,16",
                            "--latent-dim", "4", "--hidden", "16", "--dp-epsilon", "8", "--dp-delta", "1e-4"], capsys)
    assert code == 0, err
    rec = json.loads((out / "privacy.json").read_text())
    assert rec["steps"] == 3 and 7.0 < rec["epsilon_spent"] <= 8.0 + 1e-6 and rec["noise_multiplier"] > 0
    assert json.loads((out / "train_state.json").read_text())["dp"]["steps_taken"] == 3
    code, _, err = run_cli(["train", "vae", "--data", "digits", "--out", tmp_path / "bad", "--dp-epsilon", "-1"],
                           capsys)
    assert_one_line_error(code, err, "--dp-epsilon must be > 0")
    code, _, err = run_cli(["train", "vae", "--data", "digits", "--out", tmp_path / "bad", "--dp-epsilon", "1",
                            "--budget", "1m", "--quiet"], capsys)
    assert_one_line_error(code, err, "--max-steps or --epochs")
    code, _, err = run_cli(["train", "flow", "--data", "digits", "--out", tmp_path / "bad", "--dp-epsilon", "1",
                            "--max-steps", "2", "--quiet"], capsys)
    assert_one_line_error(code, err, "cannot train with DP-SGD")
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("family", ["vae", "diffusion"])
def test_dp_training_on_a_table(family, tmp_path, capsys):
    """Every layer of the table networks gets per-example gradients (the VAE's column scales too)."""
    import genlab

    out = tmp_path / family
    code, _, err = run_cli(["train", family, "--data", "penguins", "--out", out, "--max-steps", "3", "--batch-size",
                            "32", "--quiet", "--device", "cpu", "--eval-every", "0", "--n-samples", "4",
                            "--dp-epsilon", "8", "--dp-delta", "1e-3"], capsys)
    assert code == 0, err
    assert json.loads((out / "privacy.json").read_text())["steps"] == 3
    run = genlab.load(out)
    assert run.spec.form == "table"
    if family == "vae":  # the column scales took DP steps (clipped gradient + noise) from their start, log 0.1
        scale = run.model.num_scale.value
        assert not torch.allclose(scale, torch.full_like(scale, math.log(0.1)))
