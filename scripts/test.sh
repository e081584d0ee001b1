#!/usr/bin/env bash
# Set up everything the tests need, then run the linter and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
.venv/bin/ruff check src tests benchmarks
.venv/bin/python -m pytest "$@"
