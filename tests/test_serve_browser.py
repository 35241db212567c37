"""End to end in a real browser: Debian's Chromium, headless, driven by Playwright against a live server.

Opens the page, opens a 512 x 512 scan, runs the automatic segmentation (watching the progress bar), clicks
on the canvas (positive, then negative), undoes, downloads the NIfTI, and checks the overlay changed where
the page draws it. Screenshots go to ``$S2VNET_SCREENSHOTS`` (default: the test's tmp folder).

Skips, with the reason shown, only when no browser is installed; ``S2VNET_REQUIRE_BROWSER=1`` (set by
``.ci/run``, which installs Chromium) turns the skip into a failure.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image
from serve_support import tiny_predictor, write_scan

from s2vnet.serve.app import create_app
from s2vnet.serve.background import BackgroundServer

CHROMIUM = Path(os.environ.get("S2VNET_CHROMIUM", "/usr/bin/chromium"))
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _browser_or_skip():
    problem = None
    if not CHROMIUM.is_file():
        problem = f"no Chromium at {CHROMIUM} (install Debian's 'chromium' package; .ci/run does)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "the 'playwright' package is not installed (pip install -e '.[test]')"
    if problem:
        if os.environ.get("S2VNET_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{problem}; S2VNET_REQUIRE_BROWSER=1 requires it")
        pytest.skip(problem)
    return sync_playwright


@pytest.fixture
def playwright_api():
    """Playwright's ``sync_playwright``, or a skip (a failure under S2VNET_REQUIRE_BROWSER=1)."""
    return _browser_or_skip()


@pytest.fixture
def server(playwright_api, tmp_path):
    """A live server (uvicorn in a thread) on a 512 x 512 x 6 scan; decoder steps slowed so progress shows."""
    write_scan(tmp_path / "data" / "ct512.nii.gz", shape=(6, 512, 512))
    # Random weights never agree with a click's region, so the agreement test is off: the click round's decoding
    # must reach the overlay away from the click (checked below).
    predictor = tiny_predictor("INPUT.VOLUME.RESAMPLE_IN_PLANE", "False", "TEST.S2VNET.CLICK_PRIOR_AGREEMENT", "0.0")
    step = predictor.model.step

    def slow_step(*args, **kwargs):  # 0.1 s more per decoded slice, so the page's progress bar can be seen
        time.sleep(0.1)
        return step(*args, **kwargs)

    predictor.model.step = slow_step
    with BackgroundServer(create_app(predictor, tmp_path / "data")) as url:
        yield url


def _wait(page, expression: str, timeout: float = 60.0) -> None:
    """Poll a JS expression from outside the page (the page's CSP forbids Playwright's in-page eval)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if page.evaluate(expression):
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {expression}")


IDLE_AND_DRAWN = "document.body.dataset.busy === '0' && window.s2v.overlayVersion === window.s2v.session.version"


def _canvas(page) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.locator("#view").screenshot())).convert("RGB")).astype(int)


def test_click_and_refine_in_chromium(playwright_api, server, tmp_path):
    shots = Path(os.environ.get("S2VNET_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with playwright_api() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(server)

        page.wait_for_selector("#scan-select option[value='ct512.nii.gz']", state="attached")
        page.select_option("#scan-select", "ct512.nii.gz")
        page.click("#open-scan")
        _wait(page, "window.s2v && window.s2v.session && " + IDLE_AND_DRAWN)
        assert page.evaluate("[document.getElementById('view').width, document.getElementById('view').height]") == [
            512,
            512,
        ]
        plain = _canvas(page)

        page.click("#auto-btn")  # progress: the bar fills while the server reports decoder steps
        _wait(page, "document.getElementById('progress').value > 0 && document.body.dataset.busy === '1'")
        page.screenshot(path=str(shots / "viewer_progress.png"))
        _wait(page, "window.s2v.session.segmented && " + IDLE_AND_DRAWN)
        auto = _canvas(page)
        assert np.abs(auto - plain).sum(axis=2).astype(bool).mean() > 0.05  # the overlay is drawn

        page.click("#cls-active-2")
        box = page.locator("#view").bounding_box()
        x, y = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.6
        page.mouse.click(x, y)
        _wait(page, "window.s2v.session.rounds === 1 && " + IDLE_AND_DRAWN)
        clicked = _canvas(page)
        page.screenshot(path=str(shots / "viewer_after_click.png"))
        session = page.evaluate("window.s2v.session")
        assert session["clicks"][0][0]["class"] == 2 and session["clicks"][0][0]["positive"] is True
        assert page.evaluate("window.s2v.lastLatencyMs") > 0

        # The overlay changed beyond the click marker itself (16 px around the click are left out).
        yy, xx = np.mgrid[: clicked.shape[0], : clicked.shape[1]]
        scale = clicked.shape[1] / box["width"]
        away = (yy - (y - box["y"]) * scale) ** 2 + (xx - (x - box["x"]) * scale) ** 2 > (16 * scale) ** 2
        assert (np.abs(clicked - auto).sum(axis=2) > 0)[away].sum() > 50

        page.mouse.click(x + 40, y, button="right")  # negative click
        _wait(page, "window.s2v.session.rounds === 2 && " + IDLE_AND_DRAWN)
        assert page.evaluate("window.s2v.session.clicks[1][0].positive") is False
        page.click("#undo-btn")
        _wait(page, "window.s2v.session.rounds === 1 && " + IDLE_AND_DRAWN)

        assert page.locator("#download-dcm-btn").is_hidden()  # a NIfTI scan: no DICOM-SEG offered
        with page.expect_download() as download:
            page.click("#download-btn")
        path = tmp_path / "seg.nii.gz"
        download.value.save_as(path)
        assert sitk.ReadImage(str(path)).GetSize() == (512, 512, 6)
        assert problems == [], problems  # no console errors, no CSP violations
        browser.close()
    assert Image.open(shots / "viewer_after_click.png").size == (1400, 900)


def test_dicom_seg_download_in_chromium(playwright_api, tmp_path):
    """A scan opened from a DICOM series offers 'Download DICOM-SEG' next to NIfTI, and it downloads."""
    import pydicom
    from dicom_series import write_ct_series
    from synthetic import organ_phantom

    write_ct_series(tmp_path / "data" / "series", organ_phantom((6, 64, 64))[0], spacing_zyx=(2.0, 1.0, 1.0))
    with BackgroundServer(create_app(tiny_predictor(), tmp_path / "data")) as url, playwright_api() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        page = browser.new_page(accept_downloads=True)
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(url)
        page.wait_for_selector("#scan-select option[value='series/']", state="attached")
        page.select_option("#scan-select", "series/")
        page.click("#open-scan")
        _wait(page, "window.s2v && window.s2v.session && document.body.dataset.busy === '0'")
        assert page.locator("#download-dcm-btn").is_visible() and page.locator("#download-dcm-btn").is_disabled()
        page.click("#auto-btn")
        _wait(page, "window.s2v.session.segmented && " + IDLE_AND_DRAWN)
        with page.expect_download() as download:
            page.click("#download-dcm-btn")
        path = tmp_path / "seg.dcm"
        download.value.save_as(path)
        assert download.value.suggested_filename == "series_s2vnet.seg.dcm"
        assert pydicom.dcmread(path).Modality == "SEG" and problems == [], problems
        browser.close()
