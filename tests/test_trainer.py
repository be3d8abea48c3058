"""Trainer: exact resume, NaN stop, bf16, accumulation, schedules, optimizers, stopping rules."""

from __future__ import annotations

import json
import math

import pytest
import torch

import genlab
from genlab.checkpoint import read_tensors
from genlab.config import build
from genlab.errors import TrainingDiverged
from genlab.trainer import TrainConfig, Trainer, lr_factor
from tests.conftest import TINY

OPTS = {"batch_size": 16, "quiet": True, "device": "cpu", "eval_every": 0, "log_every": 1}


def _weights(run):
    tensors, _ = read_tensors(run / "train_state.safetensors")
    return {k: v for k, v in tensors.items() if k.startswith(("model.", "ema.", "optim."))}


def _stop_at(step):
    def cb(trainer, s, logs):
        if s == step:
            raise KeyboardInterrupt

    return cb


@pytest.mark.parametrize("family", ["vae", "gan", "diffusion"])
def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, family):
    opts = {**OPTS, **TINY[family], "max_steps": 12, "ema_decay": 0.9, "grad_clip": 1.0, "warmup_steps": 3,
            "shift": 1, "flip": True}
    genlab.train(family, "digits", out=tmp_path / "a", **opts)
    genlab.api.seed_everything(123)  # a different process state must not matter after resume
    run = genlab.train(family, "digits", out=tmp_path / "b", callbacks=[_stop_at(5)], **opts)
    assert run.summary["interrupted"] and run.summary["step"] == 5
    genlab.api.seed_everything(999)
    genlab.train(family, "digits", out=tmp_path / "b", resume=True, **{k: v for k, v in opts.items()
                                                                       if k not in TINY[family] and
                                                                       k not in ("shift", "flip")})
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    rows_a = [json.loads(r) for r in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(r) for r in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    strip = [{k: v for k, v in r.items() if k != "elapsed"} for r in rows_a]
    assert strip == [{k: v for k, v in r.items() if k != "elapsed"} for r in rows_b]


def test_planted_nan_stops_and_keeps_last_good_checkpoint(tmp_path):
    def poison(trainer, step, logs):
        if step == 6:  # from step 7 on the VAE's loss is NaN
            orig = trainer.model.loss

            def bad(batch, group="main"):
                loss, out = orig(batch, group)
                return loss * float("nan"), out

            trainer.model.loss = bad

    with pytest.raises(TrainingDiverged, match=r"became nan at step 7.*last good checkpoint \(step 4\)"):
        genlab.train("vae", "digits", out=tmp_path / "r", callbacks=[poison], max_steps=10, checkpoint_every=4,
                     **OPTS, **TINY["vae"])
    _, meta = read_tensors(tmp_path / "r" / "model.safetensors")
    assert meta["step"] == "4"
    state = json.loads((tmp_path / "r" / "train_state.json").read_text())
    assert state["step"] == 4
    tensors, _ = read_tensors(tmp_path / "r" / "train_state.safetensors")
    assert all(torch.isfinite(v).all() for k, v in tensors.items() if v.dtype.is_floating_point)
    assert not (tmp_path / "r" / "samples.png").exists()
    assert not list((tmp_path / "r").glob("*.tmp"))


@pytest.mark.parametrize("family", ["vae", "gan"])
def test_bf16_autocast_trains(family, splits):
    train, test = splits["image"]
    model = genlab.create(family, train.spec, **TINY[family])
    cfg = build(TrainConfig, {**OPTS, "max_steps": 3, "precision": "bf16"})
    summary = Trainer(model, train, cfg, test=test).fit()
    assert summary["step"] == 3
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_gradient_accumulation_equals_full_batch(splits):
    train, _ = splits["image"]
    finals = []
    for accum in (1, 4):
        genlab.api.seed_everything(0)
        model = genlab.create("vae", train.spec, **TINY["vae"])
        cfg = build(TrainConfig, {**OPTS, "max_steps": 3, "grad_accum": accum, "optimizer": "sgd", "lr": 0.05,
                                  "precision": "fp32"})  # the equality is fp32's; bf16 rounds each micro-batch
        Trainer(model, train, cfg).fit()
        finals.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(finals[0], finals[1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "rmsprop", "sgd"])
def test_every_optimizer_steps(optimizer, splits):
    train, _ = splits["image"]
    model = genlab.create("vae", train.spec, **TINY["vae"])
    before = [p.detach().clone() for p in model.parameters()]
    cfg = build(TrainConfig, {**OPTS, "max_steps": 2, "optimizer": optimizer, "weight_decay": 0.01})
    Trainer(model, train, cfg).fit()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_warmup_then_cosine_schedule():
    cfg = build(TrainConfig, {"warmup_steps": 4, "min_lr_ratio": 0.1})
    assert [lr_factor(cfg, s, 0.0) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(cfg, 10, 0.0) == pytest.approx(1.0)
    assert lr_factor(cfg, 10, 0.5) == pytest.approx(0.55)
    assert lr_factor(cfg, 10, 1.0) == pytest.approx(0.1)
    const = build(TrainConfig, {"schedule": "constant"})
    assert lr_factor(const, 100, 0.9) == 1.0


def test_stop_by_epochs_and_budget(splits):
    train, _ = splits["image"]
    model = genlab.create("vae", train.spec, **TINY["vae"])
    per_epoch = len(train) // 64
    s = Trainer(model, train, build(TrainConfig, {**OPTS, "batch_size": 64, "epochs": 0.5})).fit()
    assert s["step"] == math.ceil(0.5 * per_epoch)
    s = Trainer(model, train, build(TrainConfig, {**OPTS, "budget": "1s"})).fit()
    assert s["elapsed"] >= 1.0 and s["step"] >= 1


def test_data_order_is_a_function_of_seed_and_step():
    from genlab.core import DataSpec
    from genlab.data import ArrayDataset

    data = ArrayDataset(torch.arange(100)[:, None], None, DataSpec("vector", (1,)))
    a = data.batch(7, 32, seed=1)[0]
    assert torch.equal(a, data.batch(7, 32, seed=1)[0])
    assert not torch.equal(a, data.batch(7, 32, seed=2)[0])
    epoch0 = torch.cat([data.batch(s, 32, seed=1)[0] for s in range(3)]).flatten()
    epoch1 = torch.cat([data.batch(s, 32, seed=1)[0] for s in range(3, 6)]).flatten()
    assert len(set(epoch0.tolist())) == 96, "no example repeats within an epoch"
    assert not torch.equal(epoch0, epoch1), "each epoch is reshuffled"


def test_metrics_and_tensorboard_written(tmp_path):
    genlab.train("vae", "digits", out=tmp_path / "r", max_steps=4, batch_size=16, quiet=True, device="cpu",
                 log_every=2, eval_every=2, **TINY["vae"])
    rows = [json.loads(r) for r in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [2, 4]
    assert [r["step"] for r in rows if "test/loss" in r] == [2, 4]
    pytest.importorskip("tensorboard")
    assert list((tmp_path / "r" / "tensorboard").glob("events.*"))


def test_compiled_loss_trains_like_eager(tmp_path):
    opts = {**OPTS, **TINY["gpt"], "block_size": 16, "max_steps": 3, "n_samples": 1}
    eager = genlab.train("gpt", "lee", out=tmp_path / "e", **opts)
    compiled = genlab.train("gpt", "lee", out=tmp_path / "c", compile=True, **opts)
    rows = [[json.loads(r)["loss"] for r in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
            for d in ("e", "c")]
    assert len(rows[0]) == 3 and rows[0] == pytest.approx(rows[1], rel=1e-4)
    assert eager.summary["step"] == compiled.summary["step"] == 3


def test_weight_decay_skips_biases_and_norm_gains():
    from genlab.trainer import make_optimizer

    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    opt = make_optimizer(build(TrainConfig, {"weight_decay": 0.1}), list(net.parameters()))
    decay = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decay == {id(net[0].weight)}
    assert sum(len(g["params"]) for g in opt.param_groups) == 4
    assert len(make_optimizer(build(TrainConfig, {}), list(net.parameters())).param_groups) == 1


def test_bf16_with_dp_sgd_is_a_config_error():
    from genlab.errors import ConfigError

    with pytest.raises(ConfigError, match="--precision bf16 does not work with --dp-epsilon"):
        build(TrainConfig, {**OPTS, "max_steps": 10, "dp_epsilon": 8.0, "precision": "bf16"})
    assert build(TrainConfig, {**OPTS, "max_steps": 10, "dp_epsilon": 8.0}).precision == "auto"
