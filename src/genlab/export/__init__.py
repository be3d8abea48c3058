"""Export trained models to ONNX, quantize them to int8 with ONNX Runtime, and sample without PyTorch.

An *exported folder* (``genlab export RUN --format onnx --out DIR``) holds the sampling network(s) of a run as ONNX
graphs, their weights in one shared ``weights.bin``, and ``export.json`` (family, data kind, shapes, tokenizer,
noise schedule, sampler defaults, parity and quantization reports, format version); nothing in it unpickles.

Modules:
    :mod:`~genlab.export.folder` — the folder layout and ``export.json`` (torch-free);
    :mod:`~genlab.export.runtime` — sampling from an exported folder with ``onnxruntime`` + ``numpy`` only;
    :mod:`~genlab.export.numpy_ops` — the numpy halves of the samplers: DDPM/DDIM/DPM-Solver++(2M), top-k/top-p;
    :mod:`~genlab.export.outputs` — writing samples (PNG grids, ``.npz``, text) without torch;
    :mod:`~genlab.export.adapters` — export-only ``nn.Module`` wrappers of each family's sampling network;
    :mod:`~genlab.export.exporters` — one registered exporter per family (graphs, example inputs, calibration);
    :mod:`~genlab.export.quantize` — dynamic and static (QDQ) int8 quantization with ONNX Runtime;
    :mod:`~genlab.export.pipeline` — ``export_run``: export, parity check, quantize, quality check, write;
    :mod:`~genlab.export.bench` — size / latency / quality of PyTorch vs ONNX fp32 vs ONNX int8.

Importing this package imports nothing heavy: the runtime side never imports torch.
"""
