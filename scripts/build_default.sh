#!/usr/bin/env bash
# Rebuild the bundled default model from scratch on a CPU. Not yet run end to end in one go: its
# steps, run one by one on 2 cores, took about 32 min (the first three proxies), 3 (AdvDM deltas),
# 13 (stage 1, 3000 steps); then, on 2026-12-02 and partly sharing the cores, about 25 min each for
# proxy-c and proxy-heldout-vae, 18 (stage 2, 1500 steps, 0.5 s a step alone), 7 (stage 3, 750
# steps), 1.5 (export), 12 (AdvDM-200 on two photos and AdvDM-10 on 16, alone) and 17 (the report's
# evaluations, cut as in docs/efficacy/README.md); in a later session the same day, 15 min each for
# stages 4 and 5 (1500 steps each, alone). Run nothing else meanwhile: two jobs on 2 cores
# oversubscribe the threads and slow each other by far more than half.
# corpus -> five proxy LDMs (scripts/train_proxies.sh; proxy-c and proxy-heldout-vae have VAEs of their own)
# -> stage 1: the deterministic rid-s with its tile against proxies A and B (configs/default-base.yaml, with
# AdvDM deltas of 6 training photos for its regulariser) -> stage 2: grown a random code and trained against
# A, B and C (configs/default.yaml) -> stage 3: a stronger pull to seed-dependence (configs/default-seeds.yaml)
# -> stage 4: tiles scaled cell by cell by secret waves, with the one-photo periodic-mean attack as augmentation
# (configs/default-field.yaml) -> stage 5: the same, trained on (configs/default-field-long.yaml) -> bundled with its card -> export -> efficacy report (with the
# purification set; held-out proxies reported one by one) -> mini personalization test -> card with the
# figures -> export again (the manifest carries the card).
set -euo pipefail
cd "$(dirname "$0")/.."
rid=.venv/bin/rid py=.venv/bin/python P=ridtrain/weights/proxies
./scripts/train_proxies.sh
mkdir -p runs/default/pgd-subset  # the stage-1 regulariser's AdvDM deltas, for 6 of the 18 training photos
for f in astronaut.png chelsea.png coffee.png horse.png motorcycle_left.png camera.png; do cp runs/corpus/train/$f runs/default/pgd-subset/; done
$rid attack runs/default/pgd-subset -o runs/default/advdm-train -t $P/proxy-a -t $P/proxy-b --method advdm --steps 50 --side 128
train() { if [ -d "$2" ]; then $rid train --config "$1" output="$2" --resume; else $rid train --config "$1" output="$2"; fi; }
train configs/default-base.yaml runs/default-base/train
train configs/default.yaml runs/default/train
train configs/default-seeds.yaml runs/default-seeds/train
train configs/default-field.yaml runs/default-field/train
train configs/default-field-long.yaml runs/default-field-long/train
$py scripts/bundle_default.py runs/default-field-long/train/final ridtrain/weights/default
$rid export ridtrain/weights/default -o ridtrain/weights/default/onnx --photos runs/corpus/heldout
$py bench/efficacy_report.py --model default -t $P/proxy-a -t $P/proxy-b -t $P/proxy-c \
  --heldout-target $P/proxy-heldout --heldout-target $P/proxy-heldout-vae \
  --images runs/corpus/heldout --out docs/efficacy --work runs/efficacy --no-aspl --advdm-steps 200
$py bench/recipe_trials.py --parts ridtrain/weights/default -t $P/proxy-a --steps 0
$py bench/personalization_report.py --base $P/proxy-heldout-vae -t $P/proxy-a -t $P/proxy-b -t $P/proxy-c \
  --out docs/personalization --work runs/personalization
$py scripts/bundle_default.py runs/default-field-long/train/final ridtrain/weights/default docs/efficacy/efficacy.json
$rid export ridtrain/weights/default -o ridtrain/weights/default/onnx --photos runs/corpus/heldout
