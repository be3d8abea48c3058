"""The page in a real browser: Playwright driving Debian's chromium (``executable_path``, never a downloaded
browser). Gallery, a conditional sample, the interpolation slider, an inpaint, streaming text, a vote that lands in
the database, leaderboard and drift; screenshots are kept under the test's tmp dir."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")


def chromium() -> str:
    for name in (os.environ.get("GENLAB_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and (path := shutil.which(name)):
            return path
    pytest.skip("no chromium on this machine (apt-get install chromium)")


def test_page_end_to_end(live, tmp_path: Path) -> None:
    from genlab.serve.app import app_state

    state = app_state(live.server.config.app)
    votes_before = state.store.count_votes()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_api.sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox", "--disable-gpu"])
        except Exception as e:  # pragma: no cover - a chromium that does not start
            pytest.skip(f"chromium did not start: {str(e).splitlines()[0]}")
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(live.url + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=15_000)
        assert page.locator(".card").count() == 3

        vae = page.locator("#card-vae")  # a conditional sample
        vae.locator(".label-select").select_option("3")
        vae.locator(".n-input").fill("4")
        vae.locator(".sample-btn").click()
        vae.locator(".output img").wait_for(timeout=15_000)
        vae.locator(".interp-btn").click()  # the latent-interpolation slider
        page.wait_for_function("!document.querySelector('#card-vae .interp-slider').disabled", timeout=15_000)
        vae.locator(".interp-slider").fill("8")
        assert "t = 1.00" in vae.locator(".interp-frame").inner_text()
        vae.locator(".interp-frame img").wait_for()
        page.screenshot(path=str(shots / "gallery.png"), full_page=True)

        dif = page.locator("#card-diffusion")  # an inpaint: draw a sample, paint a region, fill it
        dif.locator("[data-opt='steps']").fill("3")
        dif.locator("[data-opt='resample']").fill("1")
        dif.locator(".inpaint-draw").click()
        page.wait_for_selector("#card-diffusion .inpaint[data-ready='1']", timeout=15_000)
        box = dif.locator("canvas.inpaint-canvas").bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + 20, box["y"] + 20)
        page.mouse.down()
        page.mouse.move(box["x"] + 120, box["y"] + 120, steps=8)
        page.mouse.up()
        dif.locator(".inpaint-btn").click()
        page.wait_for_selector("#card-diffusion .inpaint-out[data-done='1'] img", timeout=20_000)
        assert dif.locator(".inpaint-out img").count() == 2  # the masked input and the result

        gpt = page.locator("#card-gpt")  # text that streams as it is generated
        gpt.locator("[data-opt='prompt']").fill("The ")
        gpt.locator("[data-opt='max_tokens']").fill("12")
        gpt.locator(".stream-btn").click()
        page.wait_for_selector("#card-gpt pre.stream-out.done", timeout=20_000)
        assert len(gpt.locator("pre.stream-out").inner_text()) > len("The ")
        page.screenshot(path=str(shots / "gallery-after.png"), full_page=True)

        page.click("button[data-tab='arena']")  # a vote that lands in the database
        page.locator("#arena-a img").wait_for(timeout=20_000)
        page.locator("#arena-b img").wait_for()
        page.screenshot(path=str(shots / "arena.png"), full_page=True)
        page.click(".votes button[data-choice='b']")
        page.wait_for_selector("#arena-status[data-votes='1']", timeout=15_000)
        assert "vote stored" in page.locator("#arena-status").inner_text()

        page.click("button[data-tab='leaderboard']")
        page.wait_for_selector("#board tbody tr", timeout=15_000)
        page.screenshot(path=str(shots / "leaderboard.png"), full_page=True)
        monitor = state.runs["vae"].monitor
        assert monitor is not None and monitor.wait_ready(30)
        page.click("button[data-tab='gallery']")  # fill a drift window of the vae (8 samples)
        vae.locator(".n-input").fill("8")
        vae.locator(".sample-btn").click()
        vae.locator(".output img").wait_for(timeout=15_000)
        for _ in range(600):
            if monitor.checks:
                break
            page.wait_for_timeout(50)
        page.click("button[data-tab='drift']")
        # attached, not visible: after one window check the series is a single point (a zero-size polyline)
        page.wait_for_selector(".drift-card[data-model='vae'] svg polyline", state="attached", timeout=30_000)
        assert monitor.checks, "no drift window was checked"
        page.screenshot(path=str(shots / "drift.png"), full_page=True)
        browser.close()
    assert not errors, errors
    assert state.store.count_votes() == votes_before + 1
    votes = state.store.all_votes()
    assert votes[-1]["choice"] == "b" and votes[-1]["rater"].startswith("rater-") and votes[-1]["decision_ms"] > 0
    assert all((shots / f).stat().st_size > 1000 for f in ("gallery.png", "arena.png", "leaderboard.png"))
