#!/usr/bin/env bash
# Build the bundled default model (rid-taef2-s, issue 23) from scratch on a CPU. Its stages, as run on 2 cores
# (AMD EPYC with AVX512-BF16; stages 2 to 5 use bf16 autocast) on 2026-12-03/04: 15 min (stage 1, 700 steps, on
# the corpus before mate-backgrounds joined it), 23 (stage 2, 900 steps), 29 (stage 3, 1200 steps) and 15 (stage
# 4, 400 steps), each of these three sharing the cores with one other job, and 36 (stage 5, 1200 steps, 0.8 s a
# step alone, beside the test suite for most of it). Encoder PGD-50 and PGD-200 on the 3 held-out photos took 8
# and 57 min (the second on 1 thread); they are committed in bench/cache/encoder-pgd, which the report reuses.
# corpus (scikit-image, matplotlib, Debian's mate-backgrounds) -> stage 1: a stride-8 rid-s against TAEF2 alone
# (configs/taef2-s.yaml) -> stage 2: the wave field, TAEF2 leading the three proxies, the periodic-mean attack
# (configs/taef2-waves.yaml) -> stage 3: a lighter delta penalty, so a larger delta (configs/taef2-larger-delta.yaml)
# -> stage 4: the penalty back up, so the delta works harder per unit of size (configs/taef2-firm.yaml) -> stage 5:
# the same for 1200 steps more (configs/taef2-firm-long.yaml) -> bundled -> export -> efficacy report (the TAEF2
# table; the proxy table) -> card with the figures -> export again (the manifest carries the card).
# The committed stage 2 (ridtrain/weights/candidates/taef2-waves) is where stage 3's config starts; here it
# starts from this script's own stage 2.
set -euo pipefail
cd "$(dirname "$0")/.."
rid=.venv/bin/rid py=.venv/bin/python P=ridtrain/weights/proxies
[ -d $P/proxy-a ] || ./scripts/train_proxies.sh
$rid data build-corpus runs/corpus
train() { if [ -d "$2" ]; then $rid train --config "$1" output="$2" "${@:3}" --resume; else $rid train --config "$1" output="$2" "${@:3}"; fi; }
train configs/taef2-s.yaml runs/taef2-s
train configs/taef2-waves.yaml runs/taef2-waves
train configs/taef2-larger-delta.yaml runs/taef2-larger-delta init_from=runs/taef2-waves/final
train configs/taef2-firm.yaml runs/taef2-firm
train configs/taef2-firm-long.yaml runs/taef2-firm-long
$py scripts/bundle_default.py runs/taef2-firm-long/final ridtrain/weights/default
$rid export ridtrain/weights/default -o ridtrain/weights/default/onnx --photos runs/corpus/heldout
$py bench/efficacy_report.py --model default --latent taef2 -t $P/proxy-a -t $P/proxy-b -t $P/proxy-c \
  --heldout-target $P/proxy-heldout --heldout-target $P/proxy-heldout-vae --transforms none \
  --images runs/corpus/heldout --out docs/efficacy --work runs/efficacy --no-aspl --advdm-steps 200
$py scripts/bundle_default.py runs/taef2-firm-long/final ridtrain/weights/default docs/efficacy/efficacy.json docs/efficacy/latent.json
$rid export ridtrain/weights/default -o ridtrain/weights/default/onnx --photos runs/corpus/heldout
