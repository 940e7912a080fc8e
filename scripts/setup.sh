#!/usr/bin/env bash
# Create .venv and install the toolkit with its test and face-scoring extras; build the web app (web/dist); and, on a
# Debian machine where we are root, install Debian's chromium for the browser tests. torch is
# installed first and pinned (constraints.txt) so that pip never resolves a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet -c constraints.txt torch
.venv/bin/pip install --quiet -c constraints.txt -e '.[test,faces]'
(cd web && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
  else
    echo "note: the browser tests need Debian's chromium at /usr/bin/chromium (sudo apt-get install chromium)" >&2
  fi
fi
