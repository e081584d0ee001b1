#!/usr/bin/env bash
# Installs the browser the web-page tests (tests/test_web.py) drive: Debian's chromium at /usr/bin/chromium.
# Playwright itself comes with the dev extras (pip install -e '.[dev]'); this script pip-installs nothing.
# Idempotent: does nothing when /usr/bin/chromium is already there.
set -euo pipefail

if [[ -x /usr/bin/chromium ]]; then
    echo "chromium is installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
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
"${SUDO[@]}" apt-get install -y -qq chromium >/dev/null
echo "installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
