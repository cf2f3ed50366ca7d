"""Screenshot a web page with headless Chromium, waiting in real time for it to draw.

    python scripts/browser_screenshot.py URL OUTPUT.png [--width 1400] [--height 1000]
        [--wait 20] [--chromium chromium] [--click 'CSS selector']

Chromium's own ``--screenshot`` waits in *virtual* time, which TensorBoard's charts do not
follow: they are drawn by a web worker, so shots taken that way show empty or half-drawn
charts. This drives Chromium over its DevTools protocol instead: load the page, wait
``--wait`` seconds of wall-clock time, optionally click something away, then capture.
Used by scripts/make_readme_pictures.sh; needs aiohttp (installed with lightning).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A TCP port nothing listens on now (so that two shots never share a browser)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def page_socket(port: int, deadline_s: float = 30.0) -> str:
    """WebSocket address of the first page target of the browser on ``port``."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as reply:
                pages = [t for t in json.load(reply) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except OSError:
            pass  # the browser is still starting
        if time.monotonic() > end:
            raise SystemExit(f"error: Chromium's DevTools did not answer on port {port} within {deadline_s:.0f} s")
        time.sleep(0.3)


async def capture(address: str, url: str, wait_s: float, click: str | None) -> bytes:
    """Load ``url`` in the page at ``address``, let it settle, return the PNG's bytes."""
    import aiohttp

    counter = itertools.count(1)
    async with aiohttp.ClientSession() as session, session.ws_connect(address, max_msg_size=0) as socket_:

        async def call(method: str, **params) -> dict:
            ident = next(counter)
            await socket_.send_json({"id": ident, "method": method, "params": params})
            while True:  # events arrive interleaved with the replies; only the reply matters here
                message = await socket_.receive_json()
                if message.get("id") == ident:
                    if "error" in message:
                        raise SystemExit(f"error: DevTools {method}: {message['error']}")
                    return message["result"]

        await call("Page.enable")
        await call("Page.navigate", url=url)
        await asyncio.sleep(wait_s)
        if click:
            # A page control to dismiss (TensorBoard's settings pane), then a moment to reflow.
            await call("Runtime.evaluate", expression=f"document.querySelector({json.dumps(click)})?.click()")
            await asyncio.sleep(2.0)
        shot = await call("Page.captureScreenshot", format="png")
        return base64.b64decode(shot["data"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1].strip())
    parser.add_argument("url")
    parser.add_argument("output", type=Path)
    parser.add_argument("--width", type=int, default=1400, help="window width, CSS pixels")
    parser.add_argument("--height", type=int, default=1000, help="window height, CSS pixels")
    parser.add_argument("--wait", type=float, default=20.0, help="seconds to let the page load and draw")
    parser.add_argument("--chromium", default="chromium", help="the browser's executable")
    parser.add_argument("--click", help="CSS selector of an element to click before the shot")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as profile:
        # Flags: no sandbox (root in containers), nothing fetched from the network besides
        # the page, a fresh profile so that no earlier state (pins, settings) shows.
        browser = subprocess.Popen(
            [
                args.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={args.width},{args.height}",
                f"--remote-debugging-port={port}", "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            png = asyncio.run(capture(page_socket(port), args.url, args.wait, args.click))
        finally:
            browser.terminate()
            browser.wait(timeout=30)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(png)
    print(args.output)


if __name__ == "__main__":
    main()
