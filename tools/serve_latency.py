#!/usr/bin/env python
"""Measure the viewer's click-to-overlay latency in a real browser, and take the README screenshot.

    python tools/serve_latency.py --config-file configs/demo/s2vnet_r18_demo.yaml \\
        --weights output/demo/model_final.pth --data-root datasets/s2vnet_demo/reference_files \\
        --scan example_ct_dicom/ --clicks 10 --screenshot docs/viewer.png

Starts the server in-process (uvicorn on a free loopback port), drives Debian's Chromium headless with
Playwright: opens the scan, runs the automatic segmentation, then makes ``--clicks`` positive clicks for
``--class`` on successive slices at ``--at ROW COL`` (display pixels). For each click it reports the page's
latency (mouse event -> the clicked slice's new overlay drawn, ``window.s2v.lastLatencyMs``: the round's early
preview of that slice, or its result when there is none), the time until the whole round's result is drawn
(``window.s2v.lastRoundMs``) and the server's time for the round.
Writes ``--json`` (default ``output/serve_latency.json``) and the screenshot after the first click.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from s2vnet.errors import InputError, cli_errors

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DRAWN = "document.body.dataset.busy === '0' && window.s2v.overlayVersion === window.s2v.session.version"


def _wait(page, expression: str, timeout: float = 600.0) -> None:
    deadline = time.time() + timeout
    while not page.evaluate(expression):
        if time.time() > deadline:
            raise TimeoutError(expression)
        time.sleep(0.02)


def _click(page, session: dict, z: int, row: int, col: int, button: str = "left") -> dict:
    """Go to slice ``z``, click display pixel (row, col), wait for the redrawn overlay; latency and server time."""
    rounds = session["rounds"]
    page.locator("#slice-slider").evaluate(
        "(el, z) => { el.value = z; el.dispatchEvent(new Event('input', {bubbles: true})); }", z
    )
    _wait(page, f"document.getElementById('slice-label').textContent.startsWith('slice {z + 1} ')")
    box = page.locator("#view").bounding_box()
    shape = session["shape"]
    page.mouse.click(
        box["x"] + (col + 0.5) * box["width"] / shape[2],
        box["y"] + (row + 0.5) * box["height"] / shape[1],
        button=button,
    )
    _wait(page, f"window.s2v.session.rounds === {rounds + 1} && " + DRAWN)
    return {
        "slice": z,
        "latency_ms": page.evaluate("window.s2v.lastLatencyMs"),
        "round_ms": page.evaluate("window.s2v.lastRoundMs"),
        "server_s": page.evaluate("window.s2v.session.seconds"),
    }


def measure(url: str, args) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 780})
        page.goto(url)
        page.wait_for_selector(f"#scan-select option[value='{args.scan}']", state="attached")
        page.select_option("#modality", args.modality)
        page.select_option("#scan-select", args.scan)
        page.click("#open-scan")
        _wait(page, "window.s2v && window.s2v.session && " + DRAWN)
        started = time.perf_counter()
        page.click("#auto-btn")
        _wait(page, "window.s2v.session.segmented && " + DRAWN)
        auto_s = time.perf_counter() - started
        session = page.evaluate("window.s2v.session")
        class_id = next(
            c["id"]
            for c in page.evaluate("fetch('api/info').then(r => r.json())")["classes"]
            if c["name"] == args.class_name
        )
        page.click(f"#cls-active-{class_id}")
        if not all(0 <= v < n for v, n in zip(args.at, session["shape"][1:])):
            raise InputError(
                args.scan,
                f"--at {args.at[0]} {args.at[1]} lies outside its slices "
                f"({session['shape'][1]} x {session['shape'][2]} pixels)",
            )
        first = args.first_slice if args.first_slice >= 0 else session["shape"][0] // 2
        clicks = []
        for i in range(args.clicks):
            z = (first + i) % session["shape"][0]
            clicks.append(_click(page, page.evaluate("window.s2v.session"), z, *args.at))
            if i == 0 and args.screenshot:
                Path(args.screenshot).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=args.screenshot)
        browser.close()
    latencies = [c["latency_ms"] for c in clicks]
    rounds = [c["round_ms"] for c in clicks]
    return {
        "scan": args.scan,
        "shape": session["shape"],
        "auto_s_in_browser": round(auto_s, 3),
        "clicks": clicks,
        "latency_ms_median": statistics.median(latencies),
        "latency_ms_max": max(latencies),
        "round_ms_median": statistics.median(rounds),
        "round_ms_max": max(rounds),
    }


@cli_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--scan", required=True, help="path under --data-root, as /api/scans lists it")
    parser.add_argument("--modality", default="CT")
    parser.add_argument("--class", dest="class_name", default="liver")
    parser.add_argument("--at", type=int, nargs=2, default=(270, 170), metavar=("ROW", "COL"))
    parser.add_argument("--first-slice", type=int, default=-1, help="default: the middle slice")
    parser.add_argument("--clicks", type=int, default=10)
    parser.add_argument("--screenshot", default="")
    parser.add_argument("--json", default="output/serve_latency.json")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if not Path(args.chromium).is_file():
        raise InputError(args.chromium, "no Chromium there (apt-get install chromium)")
    from s2vnet.inference.api import Predictor
    from s2vnet.serve.app import create_app
    from s2vnet.serve.background import BackgroundServer

    predictor = Predictor.from_files(args.config_file, args.weights, device=args.device)
    with BackgroundServer(create_app(predictor, args.data_root)) as url:
        result = measure(url, args)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1))
    for c in result["clicks"]:
        print(
            f"slice {c['slice']:3d}: click -> overlay {c['latency_ms']:7.0f} ms, -> whole round drawn "
            f"{c['round_ms']:7.0f} ms (server round {c['server_s']:.3f} s)"
        )
    print(
        f"click -> overlay: median {result['latency_ms_median']:.0f} ms, max {result['latency_ms_max']:.0f} ms; "
        f"whole round: median {result['round_ms_median']:.0f} ms, max {result['round_ms_max']:.0f} ms "
        f"over {len(result['clicks'])} clicks; automatic segmentation {result['auto_s_in_browser']:.2f} s; "
        f"wrote {args.json}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
