"""int8 quantization of exported graphs with ONNX Runtime (``onnxruntime.quantization``; never
``torch.ao.quantization``, which PyTorch is removing).

* ``dynamic`` — for matmul-heavy graphs (the GPT's prefill and decode graphs, vector flows' MLPs) and for the
  PixelCNN's stacks: weights of ``MatMul``, ``Gather`` (embeddings) and ``Conv`` stored as int8 with a per-tensor
  scale; activations quantized on the fly per call (``DynamicQuantizeLinear`` → ``MatMulInteger`` /
  ``ConvInteger``). Needs no calibration data.
* ``static`` — for the other convolutional graphs (VAE decoder, GAN generator, image flows, the diffusion
  U-Net): QDQ format, int8 weights per output channel, uint8 activations whose ranges are calibrated on sample
  inputs (MinMax over the calibration set), only around ``Conv``, ``Gemm`` and ``MatMul`` so normalisations and
  the nonlinearities between them stay in float.

References:
    Jacob et al., "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference",
    2018, arXiv:1712.05877.
    ONNX Runtime, "Quantize ONNX models" (onnxruntime.ai/docs/performance/model-optimizations/quantization.html).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from genlab.extras import require

#: operator types whose inputs the static (QDQ) quantizer quantizes
STATIC_OPS = ("Conv", "Gemm", "MatMul")
#: operator types the dynamic quantizer quantizes
DYNAMIC_OPS = ("MatMul", "Gather", "Conv", "LSTM")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence ONNX Runtime's quantization logging (it warns on the root logger)."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def quantize(model: Any, mode: str, calibration: Iterable[dict[str, np.ndarray]] | None = None) -> Any:
    """An int8 copy of an ONNX model.

    Arguments:
        model: ``onnx.ModelProto`` (weights inside).
        mode: ``dynamic`` or ``static``.
        calibration: for ``static``, batches of graph inputs (name → array) whose activation ranges set the scales.

    Returns:
        the quantized ``onnx.ModelProto``.

    Raises:
        ValueError: for ``static`` without calibration batches.
    """
    onnx = require("onnx", "export", "int8 quantization")
    q = require("onnxruntime.quantization", "export", "int8 quantization")
    with tempfile.TemporaryDirectory(prefix="genlab-quant-") as tmp, quiet():
        src, out = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(src))
        if mode == "dynamic":
            q.quantize_dynamic(str(src), str(out), weight_type=q.QuantType.QInt8,
                               op_types_to_quantize=list(DYNAMIC_OPS), extra_options={"MatMulConstBOnly": True})
        elif mode == "static":
            batches = list(calibration or [])
            if not batches:
                raise ValueError("static quantization needs calibration batches")
            pre = Path(tmp) / "pre.onnx"
            try:
                from onnxruntime.quantization.shape_inference import quant_pre_process

                quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
            except Exception:  # shape inference is an optimisation; quantize the graph as exported
                pre = src
            q.quantize_static(str(pre), str(out), _Reader(batches), quant_format=q.QuantFormat.QDQ,
                              activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8, per_channel=True,
                              op_types_to_quantize=list(STATIC_OPS),
                              calibrate_method=q.CalibrationMethod.MinMax,
                              extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        else:
            raise ValueError(f"unknown quantization mode {mode!r}")
        return onnx.load(str(out))


class _Reader:
    """``CalibrationDataReader`` over a list of input batches."""

    def __init__(self, batches: list[dict[str, np.ndarray]]) -> None:
        self._it = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self._it

    def __len__(self) -> int:  # pragma: no cover - some ORT versions ask
        return 0
