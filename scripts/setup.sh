#!/usr/bin/env bash
# Create .venv and install the toolkit with its test, face-scoring and purifier extras; build the web app (web/dist); and, on a
# Debian machine where we are root, install Debian's chromium and qemu-user for the tests. torch is
# installed first and pinned (constraints.txt) so that pip never resolves a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet -c constraints.txt torch
.venv/bin/pip install --quiet -c constraints.txt -e '.[test,faces,purifiers]'
(cd web && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
# Debian packages: chromium (the browser tests), qemu-user (int8 on a second CPU model), mate-backgrounds (photos
# for the training corpus, rid data build-corpus), plasma-workspace-wallpapers (94 MB download, 93 MB installed:
# the large photographs that bench/visibility_report.py judges on; never train on them).
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/qemu-x86_64 ] || missing+=(qemu-user)
[ -d /usr/share/backgrounds/mate/nature ] || missing+=(mate-backgrounds)
[ -d /usr/share/wallpapers/summer_1am ] || missing+=(plasma-workspace-wallpapers)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
  else
    echo "note: some tests need Debian's ${missing[*]} (sudo apt-get install ${missing[*]}); they are skipped without" >&2
  fi
fi
