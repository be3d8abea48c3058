"""int8 with ONNX Runtime: dynamic for GPT, static QDQ with calibration for conv graphs, a quality check after
quantization and an honest refusal when int8 breaks the bound."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.export.conftest import needs_export_extra

needs_export_extra()


def ops(folder, graph):
    import onnx

    return {n.op_type for n in onnx.load(str(folder / f"{graph}.onnx"), load_external_data=False).graph.node}


def test_gpt_dynamic_int8(runs, tmp_path):
    from genlab.export.pipeline import export_run
    from genlab.export.runtime import load

    out = tmp_path / "gpt-int8"
    m = export_run(runs.run("gpt"), out, quantize="int8")
    assert {g["quantization"] for g in m["graphs"].values()} == {"dynamic"}
    assert "MatMulInteger" in ops(out, "decode") and "MatMulInteger" in ops(out, "prefill")
    assert m["size_bytes"] < m["size_fp32_bytes"]
    q = m["quality"]
    assert q["metric"] == "perplexity" and q["within_bound"] and abs(q["relative_change"]) <= 0.02
    assert load(out).sample(2, seed=0, max_tokens=6).shape == (2, 6)


def test_static_int8_with_calibration(runs, tmp_path):
    from genlab.export.pipeline import export_run
    from genlab.export.runtime import load

    out = tmp_path / "vae-int8"
    m = export_run(runs.run("vae"), out, quantize="int8", calibrate=64, check_samples=64)
    g = m["graphs"]["decoder"]
    assert g["quantization"] == "static" and g["calibration_samples"] == 64
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops(out, "decoder")
    q = m["quality"]
    assert q["metric"] == "kid" and q["n"] == 64 and q["within_bound"]
    assert {"fp32", "int8", "features"} <= set(q["detail"]) and q["detail"]["features"] == "classifier"
    assert load(out).sample(3, seed=0).dtype == np.uint8
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["graphs"]["decoder"]["precision"] == "int8"


def test_refusal_states_the_measured_loss_and_writes_nothing(runs, tmp_path, monkeypatch):
    from genlab.errors import CapabilityError
    from genlab.export import quality
    from genlab.export.pipeline import export_run

    monkeypatch.setitem(quality.BOUNDS, "kid", -10.0)  # a bound no model keeps: the refusal path
    out = tmp_path / "refused"
    with pytest.raises(CapabilityError, match=r"int8 breaks gan quality: kid .* → .* bound .*drop --quantize"):
        export_run(runs.run("gan"), out, quantize="int8", calibrate=32, check_samples=32)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".refused")]


def test_quality_bound_arithmetic():
    from genlab.export.quality import within_bound

    assert within_bound("perplexity", 10.0, 10.19) == (True, pytest.approx(0.019))
    assert within_bound("perplexity", 10.0, 10.21)[0] is False
    assert within_bound("kid", 0.020, 0.0219)[0] and not within_bound("kid", 0.020, 0.0221)[0]
    assert within_bound("kid", 0.02, 0.01)[0]  # better is fine


def test_pixelcnn_dynamic_int8_needs_no_calibration(runs, tmp_path):
    from genlab.export.pipeline import export_run
    from genlab.export.runtime import load

    out = tmp_path / "pixelcnn-int8"
    m = export_run(runs.run("pixelcnn"), out, quantize="int8", check_quality=False)
    assert {g["quantization"] for g in m["graphs"].values()} == {"dynamic"}
    assert "ConvInteger" in ops(out, "horizontal") and "ConvInteger" in ops(out, "vertical")
    assert m["size_bytes"] < m["size_fp32_bytes"]
    x = load(out).sample(2, seed=0)
    assert x.shape == (2, 1, 8, 8) and x.dtype == np.uint8


@pytest.mark.parametrize("key", ["vae-music", "vae-molecule", "diffusion-music"])
def test_int8_of_categorical_decoders_is_scored_on_held_out_data(runs, tmp_path, key):
    """Networks that predict cells or tokens of held-out data (not next tokens, not images) are held to the
    perplexity bound on that prediction; PyTorch, ONNX fp32 and a uniform prediction anchor the measure."""
    from genlab.api import load_splits
    from genlab.export import quality
    from genlab.export.exporters import exporter_for
    from genlab.export.pipeline import export_run
    from genlab.export.runtime import load

    run = runs.run(key)
    out = tmp_path / f"{key}-int8"
    m = export_run(run, out, quantize="int8", calibrate=32, check_samples=32)
    q = m["quality"]
    assert q["metric"] == "perplexity" and q["unit"] == "held-out predictions" and q["n"] > 0
    assert np.isfinite(q["int8"]) and q["within_bound"] == (q["relative_change"] <= 0.02)
    exporter, test = exporter_for(run), load_splits(run).test
    fp32 = exporter.held_out_nll(run, test, 32, 0, quality.onnx_call(load(runs.export(key))))
    ref = exporter.held_out_nll(run, test, 32, 0, quality.torch_call(exporter.graphs(run)))
    assert fp32["perplexity"] == pytest.approx(q["fp32"]) and fp32["perplexity"] == pytest.approx(ref["perplexity"])

    def uniform(name, inputs):  # every graph's outputs as they are, but the logits flat: perplexity = classes
        outs = quality.onnx_call(load(runs.export(key)))(name, inputs)
        return [np.zeros_like(outs[0]), *outs[1:]]

    assert exporter.held_out_nll(run, test, 32, 0, uniform)["perplexity"] == pytest.approx(
        run.spec.levels, rel=1e-6)


def test_weights_built_from_constants_are_folded_into_initializers():
    """An initializer sliced with ``Constant`` bounds (how the exporter reorders an LSTM's gate weights) becomes one
    initializer, so the quantizer sees a weight; what the graph computes is unchanged."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from genlab.export.exporters import fold_constant_nodes

    w = np.arange(24, dtype=np.float32).reshape(6, 4) / 10
    nodes = [
        helper.make_node("Constant", [], ["starts"], value=numpy_helper.from_array(np.array([2], np.int64))),
        helper.make_node("Constant", [], ["ends"], value=numpy_helper.from_array(np.array([6], np.int64))),
        helper.make_node("Slice", ["w", "starts", "ends"], ["w_part"]),
        helper.make_node("Transpose", ["w_part"], ["w_t"]),
        helper.make_node("MatMul", ["x", "w_t"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)

    def run(m):
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    before = run(model)
    folded = fold_constant_nodes(onnx.load_from_string(model.SerializeToString()))
    assert [n.op_type for n in folded.graph.node] == ["MatMul"]
    assert [t.name for t in folded.graph.initializer] == ["w_t"]
    np.testing.assert_array_equal(run(folded), before)
