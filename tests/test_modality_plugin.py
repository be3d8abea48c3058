"""A new modality as a plug-in: defined and registered here, in the test file, with a dataset of its own, then
trained, sampled, evaluated and compared through the CLI without editing any genlab module."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from genlab.checkpoint import write_bytes
from genlab.config import check
from genlab.core import DATASETS, DataSpec, register_dataset
from genlab.data import ArrayDataset
from genlab.modalities import MODALITIES, Column, Evaluation, Modality, Splits, register_modality
from genlab.modalities.base import likelihood_rows
from tests.test_cli import run_cli

LENGTH, VALUES = 12, 7  # sequences of 12 values in 1..7; id 0 is the start token the token families use


def toy_counts() -> np.ndarray:
    """Integer sequences counting up modulo 7 from a random start (a toy for the plug-in test)."""
    starts = np.random.default_rng(0).integers(0, VALUES, 600)
    return (starts[:, None] + np.arange(LENGTH)) % VALUES + 1


@dataclass(frozen=True)
class ToySeqConfig:
    """Options of the toy sequences.

    Arguments:
        data: the built-in toy dataset.
        length: values per sequence.
    """

    data: str = "toy-counts"
    length: int = LENGTH

    def __post_init__(self) -> None:
        check(2 <= self.length <= LENGTH, f"--length must be in 2..{LENGTH}")


@dataclass(frozen=True)
class ToyEvalOptions:
    """Evaluation options: how many samples the histogram metric uses."""

    samples: int = 200


def histogram_tv(a: torch.Tensor, b: torch.Tensor) -> float:
    """Total-variation distance between the value histograms of two sets of sequences."""
    ha = torch.bincount(a.flatten(), minlength=VALUES + 1).double()
    hb = torch.bincount(b.flatten(), minlength=VALUES + 1).double()
    return float(0.5 * (ha / ha.sum() - hb / hb.sum()).abs().sum())


class ToySeq(Modality):
    """Fixed-length integer sequences, written one per line."""

    config_cls = ToySeqConfig
    forms = ("tokens",)
    sample_formats = ("seq",)
    eval_options_cls = ToyEvalOptions
    eval_keys = ("likelihood", "histogram_tv", "counting_rule")

    def load(self, cfg: Any, form: str) -> Splits:
        x = torch.from_numpy(DATASETS[cfg.data]()[:, : cfg.length]).long()
        spec = DataSpec(kind="toyseq", shape=(cfg.length,), form="tokens", levels=VALUES + 1)
        return Splits(ArrayDataset(x[:500], None, spec), ArrayDataset(x[500:], None, spec), {"n_train": 500})

    def write_samples(self, run: Any, samples: torch.Tensor, path: Path, fmt: str, labels: Any = None,
                      options: Mapping[str, Any] | None = None) -> Path:
        write_bytes(path, self.render(run, samples)[1])
        return path

    def render(self, run: Any, samples: torch.Tensor) -> tuple[str, bytes]:
        return "text/plain", "".join(" ".join(map(str, row)) + "\n" for row in samples.tolist()).encode()

    def sample_metrics(self, run: Any, splits: Splits, options: Any, evaluation: Evaluation, *, seed: int,
                       progress: Any) -> None:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            x = run.model.sample(options.samples, generator=g).cpu()
        step = (x[:, 1:] - x[:, :-1]) % VALUES == 1
        evaluation.report["histogram_tv"] = histogram_tv(x, splits.test.x)
        evaluation.report["counting_rule"] = float(step.double().mean())
        evaluation.samples = x

    def rows(self, report: Mapping[str, Any]) -> list[tuple[str, str]]:
        return [*likelihood_rows(report), ("histogram TV", f"{report['histogram_tv']:.4f}"),
                ("counting rule kept", f"{report['counting_rule']:.3f}")]

    def summary(self, report: Mapping[str, Any]) -> dict[str, Any]:
        return {"histogram_tv": report["histogram_tv"], "counting_rule": report["counting_rule"]}

    def columns(self) -> list[tuple[str, str, list[Column]]]:
        return [("Toy sequences", "Value histogram and counting rule of the samples.",
                 [Column("histogram_tv", "histogram TV", False), Column("counting_rule", "counting rule", True)])]


@pytest.fixture(scope="module")
def toy() -> Iterator[Modality]:
    register_dataset("toy-counts", kind="toyseq")(toy_counts)
    register_modality("toyseq")(ToySeq)
    yield MODALITIES["toyseq"]
    MODALITIES.unregister("toyseq")
    DATASETS.unregister("toy-counts")


TINY_GPT = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--batch-size", "32", "--quiet", "--device", "cpu",
            "--eval-every", "0", "--n-samples", "4", "--lr", "3e-3"]


def test_a_toy_modality_trains_samples_evaluates_and_compares_through_the_cli(toy, tmp_path, capsys):
    code, out, err = run_cli(["datasets"], capsys)
    assert code == 0 and "toy-counts" in out and "toyseq" in out
    code, out, err = run_cli(["models"], capsys)
    assert code == 0 and "toyseq" in out  # gpt models token data, and toy sequences are tokens
    run = tmp_path / "run"
    code, out, err = run_cli(["train", "gpt", "--data", "toy-counts", "--max-steps", "150", "--out", run,
                              *TINY_GPT], capsys)
    assert code == 0, err
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["spec"]["kind"] == "toyseq" and cfg["spec"]["form"] == "tokens" and cfg["spec"]["levels"] == 8
    lines = (run / "samples.seq").read_text().splitlines()  # the modality's own file format
    assert len(lines) == 4 and all(len(line.split()) == LENGTH for line in lines)
    code, out, err = run_cli(["sample", run, "-n", "5", "--out", tmp_path / "five.seq"], capsys)
    assert code == 0, err
    rows = [[int(v) for v in line.split()] for line in (tmp_path / "five.seq").read_text().splitlines()]
    assert len(rows) == 5 and all(1 <= v <= VALUES for r in rows for v in r)
    code, out, err = run_cli(["sample", run, "--out", tmp_path / "x.png"], capsys)
    assert code == 2 and "--format must be seq" in err
    code, out, err = run_cli(["eval", run, "--samples", "300"], capsys)
    assert code == 0, err
    assert "histogram TV" in out and "counting rule kept" in out and "bits/dim" in out
    res = json.loads((run / "eval.json").read_text())
    assert res["likelihood"] == "exact" and res["histogram_tv"] < 0.15  # it learned the values
    assert res["counting_rule"] > 0.5  # and mostly the rule (a uniform model keeps it 1/7 of the time)
    code, out, err = run_cli(["eval", run, "--continuations", "3"], capsys)
    assert code == 2 and "--continuations" in err  # a text option is not a toy option
    code, out, err = run_cli(["compare", "--data", "toy-counts", "--runs", run, "--out", tmp_path / "cmp",
                              "--samples", "100"], capsys)
    assert code == 0, err
    saved = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert saved["kind"] == "toyseq" and saved["runs"]["run"]["flat"]["histogram_tv"] < 0.2
    page = (tmp_path / "cmp" / "report.html").read_text()
    assert "Toy sequences" in page and "histogram TV" in page and "<pre>" in page
    code, out, err = run_cli(["compare", "--data", "toy-counts", "--families", "pixelcnn", "--out", tmp_path / "c2"],
                             capsys)
    assert code == 2 and "does not model toyseq data" in err
