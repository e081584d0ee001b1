#!/usr/bin/env bash
# Set up everything the tests need, then run the linter and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
scripts/setup-browser.sh  # Debian chromium for the web-page tests (tests/test_web.py)
.venv/bin/ruff check src tests benchmarks
.venv/bin/python -m pytest "$@"
