#!/usr/bin/env bash
# Installs what the web-page and picture tests need from Debian: chromium at /usr/bin/chromium (tests/test_web.py
# drives it) and a Chinese font (fonts-wqy-microhei: the pages show Chinese, and tests draw Chinese text into the
# pictures they send). Playwright itself comes with the dev extras (pip install -e '.[dev]'); this script
# pip-installs nothing. Idempotent: does nothing when both are there.
set -euo pipefail

FONT=/usr/share/fonts/truetype/wqy/wqy-microhei.ttc
if [[ -x /usr/bin/chromium && -f $FONT ]]; then
    echo "chromium is installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium); CJK font: $FONT"
    exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "setup-browser: /usr/bin/chromium is missing and installing it needs root (run this as root or install sudo)" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-browser: apt-get not found; install Chromium so that /usr/bin/chromium exists" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null
echo "installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
