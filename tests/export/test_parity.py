"""Exported fp32 graphs reproduce each family's own PyTorch code to max |Δ| ≤ 1e-4 on fixed inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.export.conftest import needs_export_extra

needs_export_extra()

TOL = 1e-4


def graphs(runs, key):
    from genlab.export.runtime import load

    return load(runs.export(key))


def close(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    assert np.abs(a - b).max() <= TOL, np.abs(a - b).max()


@pytest.mark.parametrize("key", ["vae", "gan"])
def test_latent_decoders(runs, key):
    run, exp = runs.run(key), graphs(runs, key)
    model = run.model
    g = torch.Generator().manual_seed(3)
    z = torch.randn(6, exp.manifest["model"]["latent_dim"], generator=g)
    y = torch.arange(6) % 10
    with torch.no_grad():
        ref = model._decode_params(z, y) if key == "vae" else model.generate(z, y)
        pixels = model.decode(z, y) if key == "vae" else None
    graph = exp.runtime.graphs[exp.manifest["model"]["graph"]]
    close(graph(z=z.numpy(), label=y.numpy())[0], ref)
    if pixels is not None:  # the numpy decoding to uint8 matches the family's own
        mine = exp.runtime.decode(z.numpy(), y.numpy(), np.random.default_rng(0))
        assert (np.abs(mine.astype(int) - pixels.numpy().astype(int)) <= 1).all()
        assert (mine == pixels.numpy()).mean() > 0.99


@pytest.mark.parametrize("key", ["flow", "flow-vector"])
def test_flow_inverse_matches_the_familys_sampler(runs, key):
    run, exp = runs.run(key), graphs(runs, key)
    model = run.model
    n, temperature = 5, 0.8
    y = (torch.arange(n) % 10) if model.conditional else None
    ctx = model._ctx(y)
    with torch.no_grad():  # the family samples its prior with this generator, scale by scale from the top
        ref = model.net.inverse(n, ctx, temperature=temperature, generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    shapes = getattr(model.net, "z_shapes", [(model.net.dims,)] if key == "flow-vector" else None)
    noise = {lvl: torch.randn((n, *shapes[lvl]), generator=g) for lvl in reversed(range(len(shapes)))}
    eps = torch.cat([noise[lvl].flatten(1) for lvl in range(len(shapes))], dim=1)
    out = exp.runtime.graphs["inverse"](eps=eps.numpy(), temperature=np.array([temperature], np.float32),
                                        label=np.zeros(n, np.int64) if y is None else y.numpy())[0]
    close(out, ref)


def test_diffusion_unet_step(runs):
    run, exp = runs.run("diffusion"), graphs(runs, "diffusion")
    model = run.model
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, *run.spec.shape, generator=g)
    t = torch.tensor([0, 3, 7, 9])
    y = torch.tensor([1, 2, model.null_label, 5])
    with torch.no_grad():
        ref = model.forward_net(x, t, y)
    close(exp.runtime.graphs["unet"](x=x.numpy(), t=t.numpy(), label=y.numpy())[0], ref)


def test_pixelcnn_stacks_give_the_full_networks_outputs(runs):
    run, exp = runs.run("pixelcnn"), graphs(runs, "pixelcnn")
    model = run.model
    x = torch.randint(0, 256, (3, *run.spec.shape), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    y = torch.tensor([0, 4, 9])
    with torch.no_grad():
        ref = model.net(model._inp(x), model._ctx(y)).numpy()  # (B, C, P, H, W)
    v = x.float().numpy() / 127.5 - 1
    _, h, w = run.spec.shape
    worst = 0.0
    for i in range(h):
        fv = exp.runtime.graphs["vertical"](x=v[:, :, : i + 1], label=y.numpy())[0]
        for j in range(w):
            out = exp.runtime.graphs["horizontal"](x=v[:, :, i : i + 1, : j + 1], from_v=fv[..., : j + 1])[0]
            worst = max(worst, float(np.abs(out - ref[..., i, j]).max()))
    assert worst <= TOL


def test_gpt_prefill_and_cached_decode(runs):
    run, exp = runs.run("gpt"), graphs(runs, "gpt")
    model = run.model
    ids = torch.randint(1, run.spec.levels, (2, 12), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        full = model.net(ids)  # (B, T, V), the family's forward
        dec = model.decoder(2)  # the family's KV-cached decoder
        ref_steps = [dec.prefill(ids[:, :4])] + [dec.step(ids[:, j : j + 1]) for j in range(4, 12)]
    prefill, decode = exp.runtime.graphs["prefill"], exp.runtime.graphs["decode"]
    logits, k, v = prefill(ids=ids.numpy())
    close(logits, full)
    logits, k, v = prefill(ids=ids[:, :4].numpy())
    steps = [logits[:, -1]]
    for j in range(4, 12):
        last, k, v = decode(ids=ids[:, j : j + 1].numpy(), past_k=k, past_v=v)
        steps.append(last)
    assert k.shape[3] == 12
    for mine, ref in zip(steps, ref_steps, strict=True):
        close(mine, ref)


@pytest.mark.parametrize("key", ["vae", "gan", "flow", "flow-vector", "diffusion", "pixelcnn", "gpt"])
def test_export_records_parity_and_nothing_unpickles(runs, key):
    import json

    folder = runs.export(key)
    manifest = json.loads((folder / "export.json").read_text())
    assert manifest["format_version"] == 1 and manifest["family"] == runs.run(key).family
    for name, g in manifest["graphs"].items():
        assert manifest["parity"][name]["max_abs_diff"] <= TOL
        assert g["exporter"] == "dynamo" and "fallback_reason" not in g
    assert {p.suffix for p in folder.iterdir()} <= {".onnx", ".json", ".bin"}


@pytest.mark.parametrize("key", ["pixelcnn", "gpt"])
def test_graphs_carry_no_exporter_debug_metadata(runs, key):
    """The dynamo exporter's per-node metadata (FX nodes, stack traces with this machine's paths) is not written."""
    import onnx

    from genlab.export.folder import _graphs

    folder = runs.export(key)
    for file in folder.glob("*.onnx"):
        model = onnx.load(str(file), load_external_data=False)
        nodes = [n for g in _graphs(model.graph) for n in g.node]
        assert nodes and not any(n.metadata_props for n in nodes)
        assert b"stack_trace" not in file.read_bytes() and b"adapters.py" not in file.read_bytes()
