"""The official openai client against a live loopback server: completions (plain and streamed) and image
generations, unchanged; a client that disconnects mid-stream stops its generation."""

from __future__ import annotations

import base64
import time

import pytest

openai = pytest.importorskip("openai", reason="the openai client is not installed (dev extra)")


def test_openai_client_completions_and_images(live) -> None:
    client = openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0)
    ids = {m.id for m in client.models.list().data}
    assert ids == {"vae", "diffusion", "gpt"}
    done = client.completions.create(model="gpt", prompt="The ", max_tokens=6, seed=11, temperature=0.9)
    assert done.object == "text_completion" and len(done.choices) == 1 and done.usage.prompt_tokens == 4
    text = done.choices[0].text
    pieces = []
    finish = None
    for chunk in client.completions.create(model="gpt", prompt="The ", max_tokens=6, seed=11, temperature=0.9,
                                           stream=True):
        pieces.append(chunk.choices[0].text)
        finish = chunk.choices[0].finish_reason or finish
    assert "".join(pieces) == text and finish in ("length", "stop")
    img = client.images.generate(model="vae", prompt="5", n=2, response_format="b64_json")
    assert len(img.data) == 2 and base64.b64decode(img.data[0].b64_json)[:4] == b"\x89PNG"
    with pytest.raises(openai.BadRequestError, match="cap"):
        client.completions.create(model="gpt", prompt="x", max_tokens=100_000)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="x")


def test_disconnect_stops_generation(live) -> None:
    """A client that goes away mid-request (a sample call) or mid-stream (a completion) cancels its generation:
    the worker stops at the model's next forward pass and counts it as cancelled."""

    from genlab.serve.app import app_state

    state = app_state(live.server.config.app)
    slow = [m.register_forward_pre_hook(lambda mod, args, t=t: time.sleep(t))
            for name, t in (("diffusion", 0.1), ("gpt", 0.005)) for m in state.runs[name].model.children()]
    try:
        _disconnect(live, state)
    finally:
        for h in slow:
            h.remove()


def _disconnect(live, state) -> None:
    import httpx

    def settled(worker) -> None:
        deadline = time.time() + 15
        while time.time() < deadline and (worker.waiting or worker._active):
            time.sleep(0.02)
        assert not worker._active and not worker.waiting

    diffusion = state.runs["diffusion"].worker
    before = diffusion.stats.cancelled
    with pytest.raises(httpx.TimeoutException):  # 10 steps of ≥ 0.1 s each: the client gives up after 0.3 s
        r = httpx.post(live.url + "/v1/samples", json={"model": "diffusion", "n": 8, "steps": 10, "raw": True},
                       timeout=0.3)
        pytest.fail(f"the request was answered ({r.status_code}: {r.text[:200]}) instead of outliving the client")
    settled(diffusion)
    assert diffusion.stats.cancelled > before

    gpt = state.runs["gpt"].worker
    before = gpt.stats.cancelled
    with httpx.stream("POST", live.url + "/v1/completions",
                      json={"model": "gpt", "prompt": "", "max_tokens": 512, "n": 8, "stream": True},
                      timeout=30) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                break  # one piece, then hang up
    settled(gpt)
    assert gpt.stats.cancelled > before
