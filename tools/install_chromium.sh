#!/usr/bin/env bash
# Debian's Chromium at /usr/bin/chromium, for the browser test (tests/test_serve_browser.py) and
# tools/serve_latency.py. Playwright drives it; nothing downloads a browser of its own.
# Exit 0 when Chromium is there (already or now), 1 when it cannot be installed here (not root, no sudo, no apt).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    echo "chromium present: $(/usr/bin/chromium --version 2>/dev/null | tail -n 1)"
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "chromium not installed: needs root or passwordless sudo for apt-get; the browser test will be skipped" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null; then
    echo "chromium not installed: no apt-get here; install Chromium at /usr/bin/chromium (or set S2VNET_CHROMIUM)" >&2
    exit 1
fi
"${SUDO[@]}" apt-get update -q
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q --no-install-recommends chromium
echo "chromium installed: $(/usr/bin/chromium --version 2>/dev/null | tail -n 1)"
