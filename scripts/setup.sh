#!/usr/bin/env bash
# Create .venv and install the toolkit with its test extras. torch is installed first and pinned
# (constraints.txt) so that pip never resolves a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet -c constraints.txt torch
.venv/bin/pip install --quiet -c constraints.txt -e '.[test]'
