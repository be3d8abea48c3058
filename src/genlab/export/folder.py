"""The exported-folder layout: ``export.json`` (the manifest) and the ONNX graphs with one shared weight file.

::

    model.onnx.d/
      export.json        format, format_version, family, kind, form, runtime, spec, graphs, the family's sampling
                         config (shapes, schedule, sampler defaults), parity and quantization reports, provenance
      <graph>.onnx       one file per graph (decoder, generator, inverse, unet, vertical + horizontal, prefill +
                         decode), each referencing its weights in weights.bin
      weights.bin        every initializer of 1 KiB or more, stored once even when several graphs use it (the GPT's
                         prefill and decode graphs share all their weights)
      tokenizer.json     … and any other artifact file the run's modality keeps (plain JSON/bytes, never pickles)

The graphs are written without the exporter's per-node debug metadata (``metadata_props``: the FX node, class
hierarchy and Python stack trace of every node, with this machine's source paths in it): it was 60 % of a graph
file and nothing at run time reads it.

Reading the manifest needs nothing but the standard library; writing graphs needs the ``onnx`` package. Neither
imports torch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from genlab.errors import CheckpointError
from genlab.files import write_json as write_json

FORMAT = "genlab-onnx"
#: bump when a reader of an older genlab could no longer sample from a new folder
FORMAT_VERSION = 1
MANIFEST = "export.json"
WEIGHTS = "weights.bin"
#: initializers smaller than this stay inside their graph file
INLINE_BYTES = 1024


def is_exported(path: str | Path) -> bool:
    """True when ``path`` is an exported folder (it holds ``export.json``)."""
    return (Path(path) / MANIFEST).is_file()


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The validated ``export.json`` of an exported folder.

    Raises:
        CheckpointError: for a missing or unreadable manifest, another format, a newer format version, or a graph
            file the manifest names that is missing.
    """
    folder = Path(path)
    file = folder / MANIFEST
    if not file.is_file():
        raise CheckpointError(f"{folder} is not an exported folder (no {MANIFEST}); export a run with "
                              "`genlab export RUN --format onnx --out DIR`")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {file} ({str(e).splitlines()[0]})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{file} is not a genlab ONNX export (format {FORMAT!r} expected)")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{file} has no valid format_version")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{folder} was exported in format version {version}, newer than this genlab reads "
                              f"({FORMAT_VERSION}); upgrade genlab to sample from it")
    for key in ("family", "kind", "runtime", "graphs", "spec"):
        if key not in manifest:
            raise CheckpointError(f"{file} lacks {key!r}; re-export the run")
    for name, g in manifest["graphs"].items():
        if not (folder / g["file"]).is_file():
            raise CheckpointError(f"graph {name!r} of {folder} is missing ({g['file']}); re-export the run")
    return manifest


def write_graphs(models: Mapping[str, Any], folder: Path) -> dict[str, str]:
    """Save ONNX models as ``<name>.onnx`` in ``folder`` with their large initializers in one ``weights.bin``,
    each distinct tensor stored once (matched by dtype, shape and bytes).

    Arguments:
        models: graph name → ``onnx.ModelProto`` (weights inside; the protos are not modified).
        folder: an existing folder.

    Returns:
        graph name → file name.
    """
    import onnx
    from onnx import numpy_helper

    store: dict[bytes, tuple[int, int]] = {}
    files: dict[str, str] = {}
    with open(folder / WEIGHTS, "wb") as blob:
        offset = 0
        for name, model in models.items():
            m = onnx.ModelProto()
            m.CopyFrom(model)
            for graph in _graphs(m.graph):
                for node in graph.node:
                    del node.metadata_props[:]
                    node.ClearField("doc_string")
            for tensor in _initializers(m.graph):
                if tensor.data_location == onnx.TensorProto.EXTERNAL:
                    raise ValueError(f"graph {name}: initializer {tensor.name} must be loaded before writing")
                raw = tensor.raw_data if tensor.HasField("raw_data") else \
                    numpy_helper.from_array(numpy_helper.to_array(tensor)).raw_data
                if len(raw) < INLINE_BYTES:
                    continue
                key = hashlib.sha256(f"{tensor.data_type}:{list(tensor.dims)}:".encode() + raw).digest()
                if key not in store:
                    pad = -offset % 64  # 64-byte alignment for vectorised reads
                    blob.write(b"\0" * pad + raw)
                    store[key] = (offset + pad, len(raw))
                    offset += pad + len(raw)
                for field in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data",
                              "string_data", "raw_data"):
                    tensor.ClearField(field)
                start, length = store[key]
                del tensor.external_data[:]
                for k, v in (("location", WEIGHTS), ("offset", str(start)), ("length", str(length))):
                    entry = tensor.external_data.add()
                    entry.key, entry.value = k, v
                tensor.data_location = onnx.TensorProto.EXTERNAL
            files[name] = f"{name}.onnx"
            onnx.save(m, str(folder / files[name]))
    return files


def _graphs(graph: Any) -> list[Any]:
    """A graph and every subgraph in it (If/Loop bodies), depth first."""
    import onnx

    out = [graph]
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                out += _graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    out += _graphs(g)
    return out


def _initializers(graph: Any) -> list[Any]:
    """Every initializer of a graph and of its subgraphs (If/Loop bodies)."""
    return [t for g in _graphs(graph) for t in g.initializer]


def folder_bytes(folder: str | Path, graphs: Mapping[str, Any] | None = None) -> int:
    """Bytes of an exported model on disk: its graph files and ``weights.bin`` (not the tokenizer or manifest)."""
    p = Path(folder)
    names = [g["file"] for g in (graphs or read_manifest(p)["graphs"]).values()]
    return sum((p / n).stat().st_size for n in [*names, WEIGHTS] if (p / n).is_file())
