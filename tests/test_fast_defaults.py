"""Trainer fast defaults: ``--precision auto`` (native bf16 detection), ``--compile auto`` (compile when it pays,
keep it when it is faster) and ``--early-stop PATIENCE`` on the held-out loss."""

from __future__ import annotations

import json

import pytest
import torch

import genlab
from genlab import trainer as tr
from genlab.checkpoint import read_tensors
from genlab.config import build, parse_cli_args
from genlab.errors import ConfigError
from genlab.trainer import AutoCompile, TrainConfig, Trainer
from tests.conftest import TINY
from tests.test_cli import assert_one_line_error, run_cli

OPTS = {"batch_size": 16, "quiet": True, "device": "cpu", "eval_every": 0, "log_every": 1}


@pytest.mark.parametrize(("arch", "flags", "native"), [
    ("x86_64", {"avx2", "fma"}, False),                  # AVX2 only: bf16 is emulated
    ("x86_64", {"avx512f", "avx512bw"}, False),          # AVX512 without BF16 (e.g. Skylake/Cascade Lake Xeon)
    ("x86_64", {"avx512f", "avx512_bf16"}, True),        # Zen 4, Cooper Lake
    ("x86_64", {"avx512f", "amx_bf16", "amx_tile"}, True),  # Sapphire Rapids
    ("aarch64", {"asimd", "bf16"}, True),
    ("aarch64", {"asimd"}, False),
])
def test_native_bf16_on_cpu_follows_the_instruction_set(monkeypatch, arch, flags, native):
    monkeypatch.setattr(tr.platform, "machine", lambda: arch)
    monkeypatch.setattr(tr, "_cpu_flags", lambda: flags)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):  # this machine's answer must not leak in
        monkeypatch.setattr(torch.cpu, probe, lambda: False, raising=False)
    assert tr.native_bf16(torch.device("cpu")) is native
    assert tr.resolve_precision("auto", torch.device("cpu")) == ("bf16" if native else "fp32")
    assert tr.resolve_precision("fp32", torch.device("cpu")) == "fp32"
    assert tr.resolve_precision("bf16", torch.device("cpu")) == "bf16"
    assert tr.resolve_precision("auto", torch.device("cpu"), bf16_ok=False) == "fp32"  # DP-SGD, flows


@pytest.mark.parametrize("native", [True, False])
def test_precision_auto_is_the_default_and_picks_autocast(monkeypatch, splits, native):
    monkeypatch.setattr(tr, "native_bf16", lambda device: native)
    train, _ = splits["image"]
    assert TrainConfig().precision == "auto" and TrainConfig().compile == "auto"
    t = Trainer(genlab.create("vae", train.spec, **TINY["vae"]), train, build(TrainConfig, {**OPTS, "max_steps": 2}))
    assert t.precision == ("bf16" if native else "fp32")
    assert isinstance(t._autocast(), torch.autocast) is native
    assert t.fit()["precision"] == t.precision


def test_compile_option_parses_as_flag_or_auto_and_old_configs_load():
    parse = lambda args: build(TrainConfig, parse_cli_args(args, [TrainConfig]))  # noqa: E731
    assert parse(["--compile"]).compile is True
    assert parse(["--no-compile"]).compile is False
    assert parse(["--compile", "auto"]).compile == "auto"
    assert parse(["--compile=false", "--precision", "fp32"]).compile is False
    # a run folder written before these defaults holds every option explicitly
    old = build(TrainConfig, {"precision": "fp32", "compile": False})
    assert (old.precision, old.compile) == ("fp32", False)
    with pytest.raises(ConfigError, match="--compile"):
        parse(["--compile", "sometimes"])


def _auto(splits, **opts):
    train, _ = splits["image"]
    t = Trainer(genlab.create("vae", train.spec, **TINY["vae"]), train, build(TrainConfig, {**OPTS, **opts}))
    assert t.auto_compile is not None
    return t, t.auto_compile


def test_auto_compile_skips_short_runs(splits):
    t, auto = _auto(splits, max_steps=50)
    assert not any(auto.after_step(0.01) for _ in range(AutoCompile.probe))  # nothing tried, nothing logged
    assert (auto.state, auto.reason) == ("off", "too short to pay for the compilation")
    assert auto.eager_s == pytest.approx(0.01) and t.forward is t.ddp


@pytest.mark.parametrize(("compiled_s", "kept"), [(0.5, True), (0.99, False)])
def test_auto_compile_on_long_runs_is_kept_only_when_faster(monkeypatch, splits, compiled_s, kept):
    monkeypatch.setattr(tr, "can_compile", lambda device: True)
    monkeypatch.setattr(torch, "compile", lambda fn: ("compiled", fn))
    t, auto = _auto(splits, budget="1h")
    for _ in range(AutoCompile.probe):  # eager steps of 1 s: an hour left, compile
        auto.after_step(1.0)
    assert auto.state == "compiling" and t.forward == ("compiled", t.ddp)
    row = auto.after_step(30.0)  # the first compiled step includes the compilation
    for _ in range(AutoCompile.probe):
        row = auto.after_step(compiled_s) or row
    assert row == {"compile": "on" if kept else "off", "eager_step_s": 1.0, "compiled_step_s": compiled_s,
                   "compile_s": pytest.approx(30.0 - compiled_s)}
    assert (t.forward == ("compiled", t.ddp)) is kept and (t.forward is t.ddp) is not kept


def test_early_stop_keeps_the_best_evaluation(monkeypatch, tmp_path):
    held_out = iter([5.0, 4.0, 3.0, 3.5, 3.2, 1.0])  # best at the 3rd evaluation, then two without improvement
    monkeypatch.setattr(Trainer, "eval_losses", lambda self: {"test/loss": next(held_out)})
    seen = {}

    def snapshot(trainer, step, logs):
        seen[step] = {k: v.clone() for k, v in trainer.ema.state_dict().items()}

    run = genlab.train("vae", "digits", out=tmp_path / "r", **{**OPTS, **TINY["vae"], "eval_every": 2},
                       early_stop=2, max_steps=100, ema_decay=0.9, callbacks=[snapshot])
    s = run.summary
    assert (s["step"], s["stopped_early"], s["best_step"], s["best_test_loss"]) == (10, True, 6, 3.0)
    weights, meta = read_tensors(tmp_path / "r" / "model.safetensors")
    assert meta["best_step"] == "6"
    for k, v in weights.items():
        assert torch.equal(v, seen[6][k]), k
    rows = [json.loads(r) for r in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [r["best_step"] for r in rows if "test/loss" in r] == [2, 4, 6, 6, 6]


def test_early_stop_needs_evaluations(tmp_path, capsys):
    code, _, err = run_cli(["train", "vae", "--data", "digits", "--out", str(tmp_path / "r"), "--early-stop", "3",
                            "--eval-every", "0", "--max-steps", "2"], capsys)
    assert_one_line_error(code, err, "--early-stop needs held-out evaluations")
    assert not (tmp_path / "r").exists()


def test_early_stop_needs_one_held_out_loss(tmp_path, capsys):
    code, _, err = run_cli(["train", "gan", "--data", "digits", "--out", str(tmp_path / "g"), "--early-stop", "3",
                            "--max-steps", "2"], capsys)
    assert_one_line_error(code, err, "--early-stop needs", "groups d, g")
    assert not (tmp_path / "g").exists()
