#!/usr/bin/env bash
# Set up everything the tests need, then run the linters (style, layers, types) and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
scripts/setup-browser.sh  # Debian chromium for the web-page tests (tests/test_web.py)
.venv/bin/ruff check src tests benchmarks
.venv/bin/lint-imports    # layers point down only, no cycles (pyproject.toml [tool.importlinter])
.venv/bin/mypy            # src/dilm, every function typed (pyproject.toml [tool.mypy])
.venv/bin/python -m pytest "$@"
