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


def test_ssvae_decoder_takes_the_label_one_hot(runs):
    run, exp = runs.run("ssvae"), graphs(runs, "ssvae")
    model = run.model
    z = torch.randn(5, exp.manifest["model"]["latent_dim"], generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 3, 9, 9, 1])
    with torch.no_grad():
        ref = model.decoder(torch.cat([z, model._onehot(y)], dim=1))
        pixels = model._decode(z, model._onehot(y))
    close(exp.runtime.graphs["decoder"](z=z.numpy(), label=y.numpy())[0], ref)
    mine = exp.runtime.decode(z.numpy(), y.numpy(), np.random.default_rng(0))
    assert (np.abs(mine.astype(int) - pixels.numpy().astype(int)) <= 1).all()
    assert exp.runtime.conditional and exp.sample(4, label=2, seed=0).shape == (4, *run.spec.shape)


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


@pytest.mark.parametrize("key", ["diffusion", "diffusion-mlp"])
def test_diffusion_denoiser_step(runs, key):
    run, exp = runs.run(key), graphs(runs, key)
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


@pytest.mark.parametrize("key", ["rnn", "rnn-molecule"])  # an LSTM on text, a GRU on SELFIES
def test_rnn_step_graph_carries_the_state(runs, key):
    run, exp = runs.run(key), graphs(runs, key)
    model = run.model
    ids = torch.randint(1, run.spec.levels, (3, 10), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        full, _ = model.net(ids)  # (B, T, V) from the zero state
        dec = model.decoder(3)  # the family's own incremental decoder
        ref_steps = [dec.prefill(ids[:, :4])] + [dec.step(ids[:, j : j + 1]) for j in range(4, 10)]
    close(exp.runtime.logits(ids.numpy()), full)
    rt = exp.runtime
    steps = [rt.start(ids[:, :4].numpy(), None)] + [rt.advance(ids[:, : j + 1].numpy(), ids[:, j].numpy(), None)
                                                    for j in range(4, 10)]
    for mine, ref in zip(steps, ref_steps, strict=True):
        close(mine, ref)
    assert [s.shape for s in rt.state] == [(model.config.n_layer, 3, model.config.hidden)] * (
        2 if model.config.cell == "lstm" else 1)


@pytest.mark.parametrize("key", ["rnn", "gpt-molecule"])
def test_greedy_decoding_matches_the_familys(runs, key):
    """Greedy decoding leaves no room for random numbers: the torch-free loop picks the family's tokens."""
    run, exp = runs.run(key), graphs(runs, key)
    with torch.no_grad():
        ref = run.model.sample(2, max_tokens=12, temperature=0.0).numpy()
    mine = exp.sample(2, max_tokens=12, temperature=0.0)
    np.testing.assert_array_equal(mine, ref)
    tok = run.model.tokenizer  # and classifier-free guidance of a prompt: two tokens of the vocabulary
    prompt = "".join([t for t in (tok.decode([i]) for i in range(run.spec.levels) if i != run.model.config.bos_id)
                      if t.strip() and not t.startswith("<")][:2])
    with torch.no_grad():
        ref = run.model.sample(2, prompt=prompt, max_tokens=8, temperature=0.0, guidance=3.0).numpy()
    np.testing.assert_array_equal(exp.sample(2, prompt=prompt, max_tokens=8, temperature=0.0, guidance=3.0), ref)


def test_vae_grid_decoder_and_cells(runs):
    """The music VAE's per-cell categorical decoder: the graph's logits, and numpy's most likely cells."""
    run, exp = runs.run("vae-music"), graphs(runs, "vae-music")
    model = run.model
    z = torch.randn(4, exp.manifest["model"]["latent_dim"], generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model._decode_params(z, None)  # (B, V, T, L)
    graph = exp.runtime.graphs["decoder"]
    out = graph(z=z.numpy(), label=np.zeros(4, np.int64))[0]
    close(out, ref)
    assert exp.manifest["model"]["pixels"] == "categorical"
    cells = exp.runtime.decode(z.numpy(), None, np.random.default_rng(0))
    assert cells.shape == (4, *run.spec.shape) and cells.dtype == np.int64
    assert (cells >= 0).all() and (cells < run.spec.levels).all()
    counts = np.stack([np.bincount(c, minlength=run.spec.levels) for c in
                       exp.runtime.decode(np.repeat(z[:1].numpy(), 400, 0), None, np.random.default_rng(1))
                       .reshape(400, -1).T[:3]])  # three cells, 400 draws each
    probs = torch.softmax(ref[0].reshape(-1, run.spec.levels)[:3], -1).numpy()
    assert np.abs(counts / 400 - probs).max() < 0.1  # sampled cells follow the decoder's categorical


def test_sequence_vae_decoder_and_its_greedy_tokens(runs):
    run, exp = runs.run("vae-molecule"), graphs(runs, "vae-molecule")
    model = run.model
    g = torch.Generator().manual_seed(4)
    z = torch.randn(3, model.config.latent_dim, generator=g)
    ids = torch.randint(0, run.spec.levels, (3, 7), generator=g)
    with torch.no_grad():
        ref_logits, ref_h = model.seq_decoder(ids, z)
        tokens = model.decode(z)  # sample_mode "mean": the most likely token each step
        init = model.seq_decoder.initial_state(z)
    (h0,) = exp.runtime.graphs["start"](z=z.numpy())
    close(h0, init)
    logits, h = exp.runtime.graphs["step"](ids=ids.numpy(), z=z.numpy(), h=h0)
    close(logits, ref_logits)
    close(h, ref_h)
    assert exp.manifest["model"]["sample_mode"] == "mean"
    np.testing.assert_array_equal(exp.runtime.decode(z.numpy(), np.random.default_rng(0)), tokens.numpy())


def test_grid_diffusion_denoiser_and_unmasking(runs):
    from genlab.models.diffusion import GRID_STEPS

    run, exp = runs.run("diffusion-music"), graphs(runs, "diffusion-music")
    grid = run.model.grid
    levels = run.spec.levels
    x = torch.randint(0, levels + 1, (4, *run.spec.shape), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        ref = grid.net(x)
    close(exp.runtime.graphs["denoiser"](x=x.numpy())[0], ref)
    assert exp.manifest["model"]["sampling"]["steps"] == GRID_STEPS
    for steps in (1, 5):  # every cell is revealed by the last step, each to a value, never to the mask
        cells = exp.sample(3, seed=0, steps=steps)
        assert cells.shape == (3, *run.spec.shape) and cells.dtype == np.int64
        assert ((cells >= 0) & (cells < levels)).all()


@pytest.mark.parametrize("key", ["vae", "gan", "flow", "flow-vector", "diffusion", "pixelcnn", "ssvae", "gpt", "rnn",
                                 "rnn-molecule", "gpt-molecule", "gpt-music", "vae-music", "vae-molecule",
                                 "diffusion-music"])
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
