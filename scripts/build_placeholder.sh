#!/usr/bin/env bash
# Rebuild the bundled placeholder generator (ridtrain/weights/default) from scratch on a CPU:
# corpus from installed packages -> two tiny latent diffusion models with briefly fitted UNets ->
# rid-s trained with Adv-SDS against them -> copied into the package with its model card.
set -euo pipefail
cd "$(dirname "$0")/.."
rid=.venv/bin/rid
$rid data build-corpus runs/corpus
$rid tiny-targets runs/tiny --count 2 --fit-data runs/corpus/train --fit-steps 150
$rid train --config configs/placeholder.yaml
.venv/bin/python scripts/bundle_placeholder.py runs/placeholder/final ridtrain/weights/default
$rid export ridtrain/weights/default -o ridtrain/weights/default/onnx --photos runs/corpus/heldout
