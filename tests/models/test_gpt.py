"""GPT family and transformer backbone: causality, KV-cache exactness, LoRA, fine-tuning, GPT-2 import."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

import genlab
from genlab.core import DataSpec
from genlab.models.gpt import GPT, GPTConfig, gpt2_state_dict, import_gpt2
from genlab.nn.transformer import TransformerLM

SPEC = DataSpec(kind="text", shape=(24,), form="tokens", levels=50)


def _gpt(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, **kw), SPEC).eval()


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_future_tokens_do_not_change_past_logits(positions):
    net = _gpt(positions=positions).net
    x = torch.randint(0, 50, (2, 20))
    y = x.clone()
    y[:, 12:] = torch.randint(0, 50, (2, 8))
    a, b = net(x), net(y)
    assert torch.allclose(a[:, :12], b[:, :12], atol=1e-5)
    assert not torch.allclose(a[:, 12:], b[:, 12:], atol=1e-3)


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_kv_cache_matches_full_recomputation(positions):
    model = _gpt(positions=positions)
    # logits: prefill + one token at a time with the cache == one full forward pass
    x = torch.randint(0, 50, (3, 20))
    cache = model.net.new_cache(3)
    parts = [model.net(x[:, :7], cache), *(model.net(x[:, t : t + 1], cache) for t in range(7, 20))]
    assert torch.allclose(torch.cat(parts, 1), model.net(x), atol=1e-5)
    # greedy decoding gives exactly the same tokens with and without the cache
    a = model.sample(3, generator=torch.Generator().manual_seed(0), temperature=0.0, kv_cache=True)
    b = model.sample(3, generator=torch.Generator().manual_seed(0), temperature=0.0, kv_cache=False)
    assert a.shape == (3, 24) and torch.equal(a, b)


@pytest.mark.parametrize("window_start", ["text", "bos"])
def test_log_prob_is_exact_sum_of_conditionals(window_start):
    model = _gpt(window_start=window_start)
    x = torch.randint(0, 50, (2, 24))
    lp = model.log_prob(x)
    bos = torch.zeros(2, 1, dtype=torch.long)
    if window_start == "bos":  # every token from <s> and the window before it
        logits = model.net(torch.cat([bos, x[:, :-1]], 1)).log_softmax(-1)
    else:  # the first token from <s> alone, the others from the window's real text only (nanoGPT's windows)
        logits = torch.cat([model.net(bos), model.net(x[:, :-1])], 1).log_softmax(-1)
    assert torch.allclose(lp, logits.gather(-1, x[..., None]).squeeze(-1).sum(1), atol=1e-4)
    # the distribution over every sequence of length 3 of a 3-token model sums to one, and decoding draws from it:
    # the product of the decoder's next-token probabilities (cached and recomputed) equals exp(log_prob)
    spec = DataSpec(kind="text", shape=(3,), form="tokens", levels=3)
    torch.manual_seed(0)
    tiny = GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, window_start=window_start), spec).eval()
    allx = torch.cartesian_prod(torch.arange(3), torch.arange(3), torch.arange(3))
    p = tiny.log_prob(allx).exp()
    assert torch.isclose(p.sum(), torch.tensor(1.0), atol=1e-5)
    for kv in (True, False):
        dec = tiny.decoder(len(allx), kv_cache=kv)
        with torch.no_grad():
            logp = dec.prefill(torch.zeros(len(allx), 1, dtype=torch.long)).log_softmax(-1)
            total = logp.gather(1, allx[:, :1])[:, 0]
            for t in range(1, 3):
                logp = dec.step(allx[:, t - 1 : t]).log_softmax(-1)
                total = total + logp.gather(1, allx[:, t : t + 1])[:, 0]
        assert torch.allclose(total.exp(), p, atol=1e-5), kv


def test_text_windows_train_on_real_context_only():
    """``window_start = text``: the loss of a window is that of nanoGPT's (x[:-1] -> x[1:]) windows plus the first
    token from <s> alone, every target weighted alike."""
    model = _gpt()
    x = torch.randint(1, 50, (3, 24))
    loss, _ = model.loss(genlab.core.Batch(x))
    ce = torch.nn.functional.cross_entropy
    stream = ce(model.net(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten(), reduction="sum")
    first = ce(model.net(torch.zeros(1, 1, dtype=torch.long))[:, 0].expand(3, -1), x[:, 0], reduction="sum")
    assert torch.isclose(loss, (stream + first) / x.numel(), atol=1e-5)


def test_lora_zero_b_equals_base_and_merge_is_exact():
    base = _gpt()
    lora = _gpt(lora_rank=4, lora_alpha=8.0)
    missing, unexpected = lora.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all("lora_" in k for k in missing)
    x = torch.randint(0, 50, (2, 24))
    assert torch.allclose(lora.net(x), base.net(x), atol=1e-6)
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    for layer in lora.net.lora_layers():
        torch.nn.init.normal_(layer.lora_B, std=0.05)
    unmerged = lora.net(x)
    assert not torch.allclose(unmerged, base.net(x), atol=1e-3)
    lora.merge_lora()
    assert torch.allclose(lora.net(x), unmerged, atol=1e-5)
    # the merged flag travels with the weights: a reloaded model does not add the adapter twice
    again = _gpt(lora_rank=4, lora_alpha=8.0)
    again.load_state_dict(lora.state_dict())
    assert torch.allclose(again.net(x), unmerged, atol=1e-5)


def test_freeze_blocks():
    model = _gpt(freeze_blocks=1)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert "net.wte.weight" in frozen and any(n.startswith("net.h.0.") for n in frozen)
    assert not any(n.startswith("net.h.1.") for n in frozen)


def test_fine_tune_from_run(tmp_path):
    text = "".join(f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(300))
    (tmp_path / "a.txt").write_text(text)
    (tmp_path / "b.txt").write_text(text.upper().lower()[::-1])
    common = {"quiet": True, "device": "cpu", "eval_every": 0, "n_samples": 2, "batch_size": 8}
    base = genlab.train("gpt", str(tmp_path / "a.txt"), out=tmp_path / "base", max_steps=3, n_layer=2, n_head=2,
                        n_embd=16, block_size=16, lr=2e-3, **common)
    assert (tmp_path / "base" / "tokenizer.json").is_file()
    genlab.train("gpt", str(tmp_path / "b.txt"), out=tmp_path / "ft", max_steps=2, init_from=str(base.path),
                      lora_rank=2, freeze_blocks=1, **common)
    cfg = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert cfg["model"]["n_embd"] == 16 and cfg["train"]["lr"] == pytest.approx(2e-4)
    assert (tmp_path / "ft" / "tokenizer.json").read_text() == (tmp_path / "base" / "tokenizer.json").read_text()
    loaded = genlab.load(tmp_path / "ft", device="cpu")
    x = genlab.sample(loaded, 2, seed=1, prompt="line", max_tokens=5)
    assert loaded.model.decode(x)[0].startswith("line")
    with pytest.raises(genlab.GenlabError, match="fixed by --init-from"):
        genlab.train("gpt", str(tmp_path / "b.txt"), out=tmp_path / "bad", max_steps=1, init_from=str(base.path),
                     n_embd=32, **common)
    shutil.rmtree(tmp_path / "base")  # the fine-tuned run stands on its own: eval and sampling need only it
    res = genlab.evaluate(tmp_path / "ft", write=False)
    assert res["likelihood"] == "exact" and math.isfinite(res["loss"]) and res["perplexity"] > 1
    assert loaded.model.decode(genlab.sample(genlab.load(tmp_path / "ft"), 1, seed=1, prompt="line", max_tokens=3))


def _tiny_gpt2_folder(path):
    """A GPT-2-shaped model written locally in the Hugging Face layout (config.json + model.safetensors)."""
    from safetensors.torch import save_file

    cfg = {"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 16, "n_positions": 32, "vocab_size": 40,
           "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "eos_token_id": 39, "bos_token_id": 39}
    g = torch.Generator().manual_seed(0)
    t = {"transformer.wte.weight": torch.randn(40, 16, generator=g) * 0.2,
         "transformer.wpe.weight": torch.randn(32, 16, generator=g) * 0.2,
         "transformer.ln_f.weight": 1 + 0.1 * torch.randn(16, generator=g),
         "transformer.ln_f.bias": 0.1 * torch.randn(16, generator=g)}
    shapes = {"ln_1.weight": (16,), "ln_1.bias": (16,), "ln_2.weight": (16,), "ln_2.bias": (16,),
              "attn.c_attn.weight": (16, 48), "attn.c_attn.bias": (48,), "attn.c_proj.weight": (16, 16),
              "attn.c_proj.bias": (16,), "mlp.c_fc.weight": (16, 64), "mlp.c_fc.bias": (64,),
              "mlp.c_proj.weight": (64, 16), "mlp.c_proj.bias": (16,)}
    for i in range(2):
        for k, s in shapes.items():
            t[f"transformer.h.{i}.{k}"] = (1.0 if k.startswith("ln") and k.endswith("weight") else 0.0) + \
                0.2 * torch.randn(*s, generator=g)
    path.mkdir()
    (path / "config.json").write_text(json.dumps(cfg))
    save_file(t, str(path / "model.safetensors"))
    return cfg


def test_gpt2_folder_import_and_sample(tmp_path):
    cfg = _tiny_gpt2_folder(tmp_path / "hf")
    run = import_gpt2(tmp_path / "hf", tmp_path / "run")
    loaded = genlab.load(run, device="cpu")
    model = loaded.model
    assert model.config.bos_id == 39 and model.spec.shape == (32,) and model.spec.levels == 40
    x = genlab.sample(loaded, 2, seed=0, max_tokens=10)
    assert x.shape == (2, 10) and int(x.max()) < cfg["vocab_size"]
    sd = gpt2_state_dict(tmp_path / "hf")
    assert torch.equal(sd["net.h.0.attn.c_attn.weight"], model.state_dict()["net.h.0.attn.c_attn.weight"])


def test_gpt2_logits_match_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    _tiny_gpt2_folder(tmp_path / "hf")
    ref = transformers.GPT2LMHeadModel.from_pretrained(str(tmp_path / "hf")).eval()
    model = genlab.load(import_gpt2(tmp_path / "hf", tmp_path / "run"), device="cpu").model
    x = torch.randint(0, 40, (2, 32))
    with torch.no_grad():
        assert torch.allclose(model.net(x), ref(x).logits, atol=1e-4)


def test_transformer_rejects_too_long_input():
    net = TransformerLM(10, 8, 1, 1, 8)
    with pytest.raises(ValueError, match="block size"):
        net(torch.zeros(1, 9, dtype=torch.long))


def test_cli_train_sample_eval_text(tmp_path, capsys, monkeypatch):
    from tests.test_cli import assert_one_line_error, run_cli

    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "t.txt").write_text("".join(f"def fib{i}(x):\n    return x + {i}\n\n" for i in range(200)))
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "gpt", "--data", tmp_path / "t.txt", "--n-layer", "1", "--n-head", "2",
                            "--n-embd", "16", "--block-size", "16", "--batch-size", "8", "--max-steps", "3",
                            "--quiet", "--device", "cpu", "--eval-every", "0", "--n-samples", "2", "--out", run],
                           capsys)
    assert code == 0, err
    assert (run / "samples.txt").is_file() and (run / "tokenizer.json").is_file()
    code, out, err = run_cli(["sample", run, "--prompt", "def fib(", "--max-tokens", "20", "--top-k", "5"], capsys)
    assert code == 0 and out.startswith("def fib("), err
    code, out, err = run_cli(["eval", run, "--continuations", "4"], capsys)
    res = json.loads((run / "eval.json").read_text())
    assert code == 0 and {"loss", "perplexity", "bits_per_char", "bleu", "chrf", "rougeL"} <= set(res), err
    code, _, err = run_cli(["sample", run, "--prompt", "日本"], capsys)
    assert_one_line_error(code, err, "not in this model's vocabulary")


def test_cli_import_gpt2(tmp_path, capsys):
    from tests.test_cli import assert_one_line_error, run_cli

    _tiny_gpt2_folder(tmp_path / "hf")
    code, _, err = run_cli(["import-gpt2", tmp_path / "hf", "--out", tmp_path / "run"], capsys)
    assert code == 0 and (tmp_path / "run" / "model.safetensors").is_file(), err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"model_type": "llama"}')
    code, _, err = run_cli(["import-gpt2", tmp_path / "bad", "--out", tmp_path / "run2"], capsys)
    assert_one_line_error(code, err, "only gpt2 weights")


def test_trained_model_decodes_prompts_without_reloading(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    run = genlab.train("gpt", "lee", out=tmp_path / "run", max_steps=2, block_size=16, n_layer=1, n_head=2,
                       n_embd=16, quiet=True, device="cpu", eval_every=0, n_samples=2, batch_size=8)
    x = genlab.sample(run.model, 3, seed=0, prompt="The ", max_tokens=8, stop=("zzz",))
    assert x.shape == (3, 4 + 8) and all(t.startswith("The ") for t in run.model.decode(x))


def test_freezing_everything_is_a_clear_error():
    with pytest.raises(genlab.GenlabError, match="nothing is left to train"):
        GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, freeze_blocks=1, lora_rank=2), SPEC)


def test_runs_from_before_window_start_load_with_their_objective(tmp_path):
    run = genlab.train("gpt", "lee", out=tmp_path / "r", n_layer=1, n_head=1, n_embd=16, block_size=16, max_steps=2,
                       batch_size=4, quiet=True, device="cpu", eval_every=0, n_samples=1)
    assert run.model.config.window_start == "text"
    cfg_path = tmp_path / "r" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    del cfg["model"]["window_start"]  # as written by genlab before the option existed
    cfg_path.write_text(json.dumps(cfg))
    old = genlab.load(tmp_path / "r", device="cpu").model
    assert old.config.window_start == "bos"
    x = torch.randint(1, old.spec.levels, (2, 16))
    logits = old.net(torch.cat([torch.zeros(2, 1, dtype=torch.long), x[:, :-1]], 1)).log_softmax(-1)
    assert torch.allclose(old.log_prob(x), logits.gather(-1, x[..., None]).squeeze(-1).sum(1), atol=1e-4)


@pytest.mark.parametrize("positions,window_start,prompt", [("learned", "bos", [5, 7]), ("rotary", "text", [5, 7]),
                                                           ("learned", "text", []), ("rotary", "bos", [])])
def test_rows_that_join_and_leave_a_running_batch_decode_as_if_alone(positions, window_start, prompt):
    """Iteration-level batching: sequences that join a running batch at different steps, and one that leaves it
    (the last row moves into its place), get the next-token logits each would get decoded alone with the KV cache
    (a lone start token replaced by the first real token included)."""
    model = _gpt(positions=positions, window_start=window_start)
    ctx = [model.config.bos_id, *prompt]
    torch.manual_seed(1)
    feed = torch.randint(1, 50, (3, 9)).tolist()  # the tokens each sequence is given, in turn
    joins, leave_after = {0: 0, 1: 2, 2: 4}, {0: 5}  # join before global step s; leave after k tokens

    def alone(tokens: list[int]) -> list[torch.Tensor]:
        dec = model.decoder(1)
        return [dec.prefill(torch.tensor([ctx]))[0], *(dec.step(torch.tensor([[t]]))[0] for t in tokens)]

    rows = model.row_decoder(3)
    assert rows is not None and rows.fits(len(ctx), 9)
    live: list[int] = []  # sequence per row
    fed = {r: 0 for r in joins}
    got: dict[int, list[torch.Tensor]] = {r: [] for r in joins}
    for s in range(12):
        for r in [r for r in live if fed[r] == leave_after.get(r, -1) or fed[r] == len(feed[r])]:
            i = live.index(r)
            moved = rows.remove(i)
            live[i] = live[moved]
            live.pop()
        for r, at in joins.items():
            if at == s:
                got[r].append(rows.add(ctx))
                live.append(r)
        if not live:
            break
        logits = rows.step(torch.tensor([feed[r][fed[r]] for r in live]))
        for i, r in enumerate(live):
            got[r].append(logits[i])
            fed[r] += 1
    for r in joins:
        want = alone(feed[r][: fed[r]])
        assert len(got[r]) == len(want) == fed[r] + 1
        for a, b in zip(got[r], want, strict=True):
            assert torch.allclose(a, b, atol=1e-5)


def test_rows_of_different_lengths_ignore_whatever_memory_the_caches_start_with(monkeypatch):
    """A step reads every row up to the longest one; the shorter rows' unwritten positions are masked, and must
    not leak into the output even when the fresh memory holds NaN (seen once in CI: all-NaN logits)."""
    from genlab.nn import transformer

    def nan_cache(cls, n_layer, batch, n_head, max_len, head_dim, device, dtype):
        shape = (n_layer, batch, n_head, max_len, head_dim)
        return cls(torch.full(shape, float("nan"), dtype=dtype), torch.full(shape, float("nan"), dtype=dtype))

    monkeypatch.setattr(transformer.KVCache, "empty", classmethod(nan_cache))
    model = _gpt()
    rows = model.row_decoder(2)
    assert rows is not None
    rows.add([model.config.bos_id, 3, 4, 5])
    rows.add([model.config.bos_id])
    logits = rows.step(torch.tensor([7, 8]))
    assert torch.isfinite(logits).all()
    alone = model.decoder(1)
    alone.prefill(torch.tensor([[model.config.bos_id]]))
    assert torch.allclose(logits[1], alone.step(torch.tensor([[8]]))[0], atol=1e-5)


def test_row_decoder_refuses_what_it_cannot_hold():
    model = _gpt()
    rows = model.row_decoder(1)
    assert rows is not None and rows.fits(4, 21) and not rows.fits(4, 22)  # 4 + 21 - 1 = block size 24
    rows.add([0, 3])
    with pytest.raises(ValueError, match="in use"):
        rows.add([0, 3])
    with pytest.raises(ValueError, match="live rows"):
        rows.step(torch.tensor([1, 2]))
