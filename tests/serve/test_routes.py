"""Every route through the FastAPI test client: samples in the modality's rendering, OpenAI images and
completions, interpolation, inpainting, the arena and its store, leaderboard, drift, metrics; the key, the caps,
the body limit, malformed requests (one-line JSON 4xx, the server keeps serving); the bounded queue, micro-batching
and cancellation of the workers."""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import pytest
import torch
from PIL import Image

from genlab.errors import ConfigError
from tests.serve.conftest import tiny_config

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'genlab[serve]'")
from fastapi.testclient import TestClient

from genlab.serve import ServeConfig, create_app
from genlab.serve.app import app_state, unique_names
from genlab.serve.config import model_threads
from genlab.serve.workers import Cancelled, Job, QueueFull, Worker


@pytest.fixture(scope="module")
def client(served_runs, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("routes")
    app = create_app({k: str(v) for k, v in served_runs.items()}, tiny_config(tmp, gold_rate=0.5, min_gold_votes=1000))
    with TestClient(app) as c:
        c.app_ref = app
        yield c


def one_line_error(r, status):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and "\n" not in body["error"]["message"] and body["error"]["code"] == status
    return body["error"]["message"]


def png_size(b64: str) -> tuple[int, int]:
    return Image.open(io.BytesIO(base64.b64decode(b64))).size


def test_health_models_page_metrics(client) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert set(models) == {"vae", "diffusion", "gpt"}
    assert models["vae"]["interpolation"] and models["vae"]["conditional"] and models["vae"]["classes"][3] == "3"
    assert models["diffusion"]["inpainting"] and not models["vae"]["inpainting"]
    assert models["gpt"]["completions"] and models["gpt"]["item_mime"].startswith("text/plain")
    assert {o["name"] for o in models["diffusion"]["options"]} >= {"sampler", "steps", "guidance"}
    assert "progress" not in {o["name"] for o in models["diffusion"]["options"]}  # set by the server
    page = client.get("/")
    assert page.status_code == 200 and "genlab" in page.text and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    one_line_error(client.get("/static/nope.js"), 404)
    one_line_error(client.get("/v1/models/nope"), 404)
    metrics = client.get("/metrics").text
    assert "genlab_requests_total" in metrics and "genlab_queue_waiting" in metrics


def test_samples_in_the_modality_rendering(client) -> None:
    r = client.post("/v1/samples", json={"model": "vae", "n": 4, "label": 3, "seed": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["seed"] == 7 and len(body["samples"]) == 4 and body["samples"][0]["label"] == 3
    assert body["rendering"]["mime"] == "image/png" and png_size(body["rendering"]["b64"])[0] > 0
    again = client.post("/v1/samples", json={"model": "vae", "n": 4, "label": 3, "seed": 7}).json()
    assert again["rendering"] == body["rendering"]  # a seed reproduces its samples
    import genlab

    run = app_state(client.app_ref).runs["vae"].run
    want = genlab.sample(run, 4, label=3, seed=7)  # the same as `genlab sample RUN --seed 7 --label 3`
    assert again["rendering"]["b64"] == base64.b64encode(run.modality.render(run, want)[1]).decode()
    raw = client.post("/v1/samples", json={"model": "diffusion", "n": 2, "steps": 3, "raw": True})
    assert raw.headers["content-type"] == "image/png" and raw.content[:4] == b"\x89PNG"
    npz = client.post("/v1/samples", json={"model": "vae", "n": 2, "format": "npz"})
    import numpy as np

    assert np.load(io.BytesIO(npz.content))["x"].shape == (2, 1, 8, 8)
    text = client.post("/v1/samples", json={"model": "gpt", "n": 2, "options": {"max_tokens": 6}}).json()
    assert text["rendering"]["mime"].startswith("text/plain") and "sample 1" in text["rendering"]["text"]


def test_openai_images(client) -> None:
    r = client.post("/v1/images/generations", json={"model": "vae", "prompt": "7", "n": 2,
                                                    "response_format": "b64_json"})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert len(data) == 2 and png_size(data[0]["b64_json"])[0] >= 8
    png = client.post("/v1/images/generations", json={"model": "vae", "prompt": "", "n": 3},
                      headers={"Accept": "image/png"})
    assert png.headers["content-type"] == "image/png"
    assert "not a class" in one_line_error(client.post("/v1/images/generations",
                                                       json={"model": "vae", "prompt": "a cat"}), 400)
    assert "not images" in one_line_error(client.post("/v1/images/generations",
                                                      json={"model": "gpt", "prompt": ""}), 400)
    one_line_error(client.post("/v1/images/generations", json={"model": "vae", "prompt": "", "size": "64x64"}), 400)


def test_completions_plain_and_streamed(client) -> None:
    r = client.post("/v1/completions", json={"model": "gpt", "prompt": "The ", "max_tokens": 5, "n": 2, "seed": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion" and len(body["choices"]) == 2
    assert body["usage"]["completion_tokens"] <= 10 and body["usage"]["prompt_tokens"] == 2 * 4
    assert all(c["finish_reason"] in ("length", "stop") for c in body["choices"])
    again = client.post("/v1/completions", json={"model": "gpt", "prompt": "The ", "max_tokens": 5, "n": 2,
                                                 "seed": 3}).json()
    assert [c["text"] for c in again["choices"]] == [c["text"] for c in body["choices"]]
    with client.stream("POST", "/v1/completions", json={"model": "gpt", "prompt": "The ", "max_tokens": 5,
                                                        "stream": True, "seed": 3}) as s:
        assert s.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in s.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    streamed = "".join(c["choices"][0]["text"] for c in chunks)
    plain = client.post("/v1/completions", json={"model": "gpt", "prompt": "The ", "max_tokens": 5,
                                                 "seed": 3}).json()
    assert streamed == plain["choices"][0]["text"] and chunks[-1]["choices"][0]["finish_reason"] is not None
    assert "does not complete" in one_line_error(client.post("/v1/completions", json={"model": "vae"}), 400)
    one_line_error(client.post("/v1/completions", json={"model": "gpt", "prompt": "x", "max_tokens": 10_000}), 400)
    one_line_error(client.post("/v1/completions", json={"model": "gpt", "prompt": "x", "logprobs": 2}), 400)
    one_line_error(client.post("/v1/completions", json={"model": "gpt", "prompt": "\u2603"}), 400)  # not in vocab


def test_interpolate_and_inpaint(client) -> None:
    r = client.post("/v1/interpolate", json={"model": "vae", "seeds": [1, 2], "steps": 5, "label": 4})
    assert r.status_code == 200, r.text
    assert len(r.json()["frames"]) == 5 and r.json()["label"] == 4
    r = client.post("/v1/interpolate", json={"model": "diffusion", "seeds": [1, 2], "steps": 3})
    assert r.status_code == 200, r.text  # DDIM inversion gives diffusion a latent space
    assert len(r.json()["frames"]) == 3
    assert "latent space" in one_line_error(client.post("/v1/interpolate", json={"model": "gpt"}), 400)
    s = client.post("/v1/samples", json={"model": "diffusion", "n": 1, "steps": 3}).json()
    sid = s["samples"][0]["id"]
    mask = Image.new("L", (8, 8), 0)
    mask.paste(255, (0, 0, 4, 8))
    buf = io.BytesIO()
    mask.save(buf, format="PNG")
    b64 = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    r = client.post("/v1/inpaint", json={"model": "diffusion", "sample_id": sid, "mask": b64, "steps": 3,
                                         "resample": 1})
    assert r.status_code == 200, r.text
    assert r.json()["filled_share"] == pytest.approx(0.5) and r.json()["sample_id"]
    r = client.post("/v1/inpaint", json={"model": "diffusion", "sample_id": sid, "box": "0,0,2,2", "steps": 3,
                                         "resample": 1})
    assert r.status_code == 200 and r.json()["filled_share"] == pytest.approx(4 / 64)
    assert "box" in one_line_error(client.post("/v1/inpaint", json={"model": "diffusion", "sample_id": sid,
                                                                    "box": "0,0,99,2"}), 400)
    one_line_error(client.post("/v1/inpaint", json={"model": "diffusion", "sample_id": "nope", "box": "0,0,2,2"}),
                   400)
    one_line_error(client.post("/v1/inpaint", json={"model": "vae", "sample_id": sid, "box": "0,0,2,2"}), 400)


def test_arena_votes_once_per_key_and_leaderboard(client) -> None:
    state = app_state(client.app_ref)
    seen_gold = 0
    for k in range(12):
        p = client.post("/v1/arena/pair", json={"rater": "tester"})
        assert p.status_code == 200, p.text
        pair = p.json()
        assert set(pair) == {"pair_id", "a", "b"}  # nothing reveals the models before the vote
        body = {"pair_id": pair["pair_id"], "choice": ["a", "b", "tie", "both_bad"][k % 4], "rater": "tester",
                "decision_ms": 900, "idempotency_key": f"test-key-{k:04d}"}
        v = client.post("/v1/arena/vote", json=body)
        assert v.status_code == 200 and not v.json()["duplicate"]
        retry = client.post("/v1/arena/vote", json=body)
        assert retry.json()["duplicate"] and retry.json()["vote_id"] == v.json()["vote_id"]
        seen_gold += v.json()["revealed"]["gold"]
        other = {**body, "idempotency_key": f"other-key-{k:04d}"}
        one_line_error(client.post("/v1/arena/vote", json=other), 409)
    assert state.store.count_votes() == 12
    stored = state.store.all_votes()
    assert {v["rater"] for v in stored} == {"tester"} and all(v["decision_ms"] == 900 for v in stored)
    pair = state.store.pair(stored[0]["pair_id"])
    left = state.store.sample(pair["left_sample"])
    assert left["mime"] == "image/png" and left["content"][:4] == b"\x89PNG"
    if not pair["gold"]:
        assert left["run"] in ("vae", "diffusion") and left["seed"] is not None
    board = client.get("/v1/leaderboard?rounds=50").json()
    assert board["votes"] + board["gold_votes"] == 12 and board["gold_votes"] == seen_gold
    one_line_error(client.post("/v1/arena/vote", json={"pair_id": "x", "choice": "a"}), 400)  # no key
    one_line_error(client.post("/v1/arena/vote", json={"pair_id": "nope", "choice": "a",
                                                       "idempotency_key": "abcdefgh1"}), 404)
    one_line_error(client.post("/v1/arena/vote", json={"pair_id": "x", "choice": "left",
                                                       "idempotency_key": "abcdefgh1"}), 400)


def test_bad_requests_get_one_line_and_the_server_keeps_serving(client) -> None:
    one_line_error(client.post("/v1/samples", json={"model": "nope"}), 404)
    assert "cap" in one_line_error(client.post("/v1/samples", json={"model": "vae", "n": 9}), 400)
    one_line_error(client.post("/v1/samples", json={"model": "vae", "n": 0}), 400)
    one_line_error(client.post("/v1/samples", json={"model": "vae", "n": "4"}), 400)
    assert "out of range" in one_line_error(client.post("/v1/samples", json={"model": "vae", "label": 10}), 400)
    assert "unconditional" not in one_line_error(client.post("/v1/samples", json={"model": "vae",
                                                                                   "label": "cat"}), 400)
    one_line_error(client.post("/v1/samples", json={"model": "diffusion", "steps": 10_000}), 400)
    one_line_error(client.post("/v1/samples", json={"model": "diffusion", "options": {"sampler": "x"}}), 400)
    one_line_error(client.post("/v1/samples", json={"model": "vae", "options": {"temperature": 2}}), 400)
    assert "malformed JSON" in one_line_error(client.post("/v1/samples", content=b"{bad",
                                                          headers={"Content-Type": "application/json"}), 400)
    one_line_error(client.post("/v1/samples", content=b"[1, 2]"), 400)
    assert "limit" in one_line_error(client.post("/v1/samples", content=b" " * (2 * 1024 * 1024 + 1)), 413)
    one_line_error(client.post("/v1/samples", json={"model": "vae", "seed": -1}), 400)
    assert client.post("/v1/samples", json={"model": "vae"}).status_code == 200


def test_drift_windows_fill_and_are_checked(client) -> None:
    state = app_state(client.app_ref)
    for s in state.runs.values():
        assert s.monitor is not None and s.monitor.wait_ready(60), s.monitor.error
    for _ in range(3):
        client.post("/v1/samples", json={"model": "vae", "n": 8})
    deadline = time.time() + 20
    while time.time() < deadline and len(state.runs["vae"].monitor.checks) < 3:
        time.sleep(0.05)
    d = client.get("/v1/drift").json()["models"]
    vae = d["vae"]
    assert vae["state"] == "ready" and set(vae["thresholds"]) == {"kid", "class_tv"} and len(vae["checks"]) >= 3
    assert set(d["gpt"]["thresholds"]) == {"log_perplexity", "length", "distinct2"}
    assert "genlab_drift_statistic" in client.get("/metrics").text


def test_api_key_guards_every_route_but_healthz(served_runs, tmp_path) -> None:
    cfg = tiny_config(tmp_path, api_key="s3cret-key", drift_window=0)
    with TestClient(create_app({"vae": str(served_runs["vae"])}, cfg)) as c:
        assert c.get("/healthz").status_code == 200
        one_line_error(c.get("/v1/models"), 401)
        one_line_error(c.post("/v1/samples", json={"model": "vae"}), 401)
        one_line_error(c.get("/metrics"), 401)
        assert c.get("/").status_code == 401 and "API key" in c.get("/").text
        one_line_error(c.get("/v1/models", headers={"Authorization": "Bearer wrong-key"}), 401)
        ok = {"Authorization": "Bearer s3cret-key"}
        assert c.get("/v1/models", headers=ok).status_code == 200
        assert c.post("/v1/samples", json={"model": "vae"}, headers=ok).status_code == 200
        assert c.get("/v1/models", headers={"Cookie": "genlab_key=s3cret-key"}).status_code == 200
    with pytest.raises(ConfigError, match="refusing to bind"):
        ServeConfig(host="0.0.0.0", api_key=None).check_bind()
    ServeConfig(host="0.0.0.0", api_key="s3cret-key").check_bind()
    ServeConfig(host="127.0.0.2", api_key=None).check_bind()
    # the models leave one core to the event loop unless told otherwise
    assert [model_threads(None, cores) for cores in (1, 2, 16)] == [1, 1, 15]
    assert model_threads(3, cores=2) == 3
    with pytest.raises(ConfigError, match="--threads"):
        ServeConfig(threads=0)
    with pytest.raises(ConfigError, match="twice"):
        unique_names(["a=x", "a=y"])
    assert list(unique_names(["runs/vae", "other/vae/"])) == ["vae", "vae-2"]


# -- workers -------------------------------------------------------------------------------------------------
class Slow(torch.nn.Module):
    """A network whose forward takes a while, called once per 'step'."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Identity()

    def forward(self, x):
        time.sleep(0.01)
        return self.layer(x)


def test_worker_batches_compatible_jobs_and_bounds_its_queue() -> None:
    calls: list[int] = []
    gate = threading.Event()

    def execute(jobs: list[Job]) -> None:
        gate.wait(5)
        calls.append(len(jobs))
        for j in jobs:
            j.resolve(j.n)

    w = Worker("t", None, queue_size=5, max_batch=8)
    try:
        first = w.submit(Job(execute, key="k", n=1))
        time.sleep(0.05)  # the first call runs (blocked on the gate) while the others queue
        jobs = [w.submit(Job(execute, key="k", n=2)) for _ in range(3)]
        solo = w.submit(Job(execute, key=None, n=1))
        other = w.submit(Job(execute, key="other", n=1))
        with pytest.raises(QueueFull) as e:
            w.submit(Job(execute, key="k"))
        assert e.value.retry_after >= 1
        gate.set()
        assert [j.future.result(5) for j in [first, *jobs, solo, other]] == [1, 2, 2, 2, 1, 1]
        assert calls == [1, 3, 1, 1]  # the three compatible jobs shared one call
    finally:
        w.stop()


def test_worker_gathers_clients_that_come_back_together() -> None:
    """Closed-loop clients (each sends its next request a few ms after its answer) end up sharing every call: the
    worker waits for the clients its last call answered instead of running the first arrivals alone."""
    calls: list[int] = []

    def execute(jobs: list[Job]) -> None:
        time.sleep(0.03)
        calls.append(len(jobs))
        for j in jobs:
            j.resolve(j.n)

    w = Worker("t", None, queue_size=16, max_batch=8, batch_wait=0.2)

    def client(c: int) -> None:
        for _ in range(8):
            w.submit(Job(execute, key="k")).future.result(5)
            time.sleep(0.002 * (c + 1))  # the answer's way back and the next request's way in

    try:
        threads = [threading.Thread(target=client, args=(c,)) for c in range(4)]
        for t in threads:
            t.start()
            time.sleep(0.004)
        for t in threads:
            t.join(10)
        assert sum(calls) == 32
        assert max(calls) == 4 and calls.count(4) >= len(calls) - 3, calls  # after the first calls, all four share
        lone = Worker("lone", None, batch_wait=0.2)
        try:
            t0 = time.monotonic()
            for _ in range(3):
                lone.submit(Job(execute, key="k")).future.result(5)
            assert time.monotonic() - t0 < 0.3  # a lone client never waits for company
        finally:
            lone.stop()
    finally:
        w.stop()


def test_cancelled_job_stops_at_the_next_forward_pass() -> None:
    net = Slow()
    steps = []

    def execute(jobs: list[Job]) -> None:
        for i in range(500):
            net(torch.zeros(1))
            steps.append(i)
        jobs[0].resolve("finished")

    w = Worker("t", net)
    try:
        job = w.submit(Job(execute))
        time.sleep(0.1)
        job.cancel()
        with pytest.raises(Cancelled):
            job.future.result(5)
        assert 0 < len(steps) < 100
        queued = Job(execute)
        queued.cancel()
        w.submit(queued)
        with pytest.raises(Cancelled):
            queued.future.result(5)
    finally:
        w.stop()


def _settle(ok, timeout: float = 5.0) -> None:
    """Wait until ``ok()`` (a worker updates its statistics just after the call that resolved the futures)."""
    end = time.monotonic() + timeout
    while not ok() and time.monotonic() < end:
        time.sleep(0.01)
    assert ok()


def test_a_running_call_takes_compatible_jobs_that_queue_meanwhile() -> None:
    """``Worker.join`` (iteration-level batching): a call that runs step by step takes the compatible jobs queued
    since it started, within its room; the others wait for their own call; a failing call fails its joiners too."""
    calls: list[list[int]] = []
    later: list[Job] = []

    def execute(jobs: list[Job]) -> None:
        served = list(jobs)
        for _ in range(20):
            if not later:
                later.extend([w.submit(Job(execute, key="k", n=2)), w.submit(Job(execute, key="other")),
                              w.submit(Job(execute, key="k", n=3)), w.submit(Job(execute, key="k", n=2))])
            served += w.join("k", room=8 - sum(j.n for j in served))
            time.sleep(0.002)
        calls.append([j.n for j in served])
        for j in served:
            j.resolve(j.n)

    w = Worker("t", None, queue_size=8, max_batch=8)
    try:
        first = w.submit(Job(execute, key="k", n=1))
        assert first.future.result(5) == 1
        assert [j.future.result(5) for j in later] == [2, 1, 3, 2]
        assert calls[0] == [1, 2, 3, 2] and sorted(map(tuple, calls[1:])) == [(1,)]  # room 8 held both k jobs
        _settle(lambda: w.stats.calls == 2)
        assert w.stats.jobs == 5
    finally:
        w.stop()

    def failing(jobs: list[Job]) -> None:
        w2.submit(Job(failing, key="k"))
        w2.join("k", room=4)
        raise RuntimeError("broken model")

    w2 = Worker("t2", None, max_batch=4)
    try:
        a = w2.submit(Job(failing, key="k"))
        with pytest.raises(RuntimeError):
            a.future.result(5)
        assert w2.stats.errors >= 1
    finally:
        w2.stop()


def test_text_requests_join_the_running_generation(served_runs, tmp_path) -> None:
    """A completion that arrives while another of the same options is being generated joins it at the next token
    (one model call serves both) and gets the same greedy text it would get alone."""
    import genlab
    from genlab.serve.runs import ServedRun

    served = ServedRun("gpt", genlab.load(served_runs["gpt"], device="cpu"), tiny_config(tmp_path, drift_window=0))
    opts = {"prompt": "The ", "max_tokens": 6, "temperature": 0.0}
    texts: dict[str, list[str]] = {"a": [], "b": []}
    jobs: dict[str, Job] = {}

    def sink(name: str):
        def take(deltas) -> None:
            if deltas is None:
                return
            texts[name].extend(d.text for d in deltas)
            if name == "a" and "b" not in jobs:  # b arrives during a's generation
                jobs["b"] = served.submit_text(1, seed=None, options=opts, sink=sink("b"))
        return take

    try:
        jobs["a"] = served.submit_text(1, seed=None, options=opts, sink=sink("a"))
        jobs["a"].future.result(10)
        jobs["b"].future.result(10)
        _settle(lambda: served.worker.stats.calls == 1)
        assert served.worker.stats.jobs == 2
        alone = served.submit_text(1, seed=3, options=opts, sink=lambda d: None)  # a seed runs alone, fixed batch
        alone.future.result(10)
        ref = served.modality.stream_texts(served.run, 1, options=opts)
        want = "".join(d.text for step in ref.steps for d in step)
        assert "".join(texts["a"]) == "".join(texts["b"]) == want
    finally:
        served.stop()
