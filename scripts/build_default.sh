#!/usr/bin/env bash
# Rebuild the bundled default model from scratch on a CPU. Not yet run end to end in one go: its
# steps, run one by one on 2 cores, took about 32 min (proxies), 3 (AdvDM deltas), 13 (training,
# 3000 steps), 13 (the efficacy report's evaluations, with its PGD baselines already made; they
# took about 25 more on shared cores), 2.5 (personalization), 26 (one model each at eps 4 and 12),
# 16 (the eps-levels bench, with its own AdvDM-200 runs) and 1 (export). Run nothing else meanwhile:
# two jobs on 2 cores oversubscribe the threads and slow each other by far more than half.
# corpus -> three proxy LDMs (scripts/train_proxies.sh) -> AdvDM deltas of the training photos
# for the regulariser -> rid-s trained against proxies A and B (configs/default.yaml) -> bundled
# with its card -> efficacy report and mini personalization test -> one model per eps and the
# eps-levels bench -> card with the figures -> export.
set -euo pipefail
cd "$(dirname "$0")/.."
rid=.venv/bin/rid py=.venv/bin/python P=ridtrain/weights/proxies
./scripts/train_proxies.sh
mkdir -p runs/default/pgd-subset  # the regulariser's AdvDM deltas, for 6 of the 18 training photos
for f in astronaut.png chelsea.png coffee.png horse.png motorcycle_left.png camera.png; do cp runs/corpus/train/$f runs/default/pgd-subset/; done
$rid attack runs/default/pgd-subset -o runs/default/advdm-train -t $P/proxy-a -t $P/proxy-b --method advdm --steps 50 --side 128
if [ -d runs/default/train ]; then $rid train --config configs/default.yaml --resume; else $rid train --config configs/default.yaml; fi
$py scripts/bundle_default.py runs/default/train/final ridtrain/weights/default
$py bench/efficacy_report.py --model default -t $P/proxy-a -t $P/proxy-b --heldout-target $P/proxy-heldout \
  --images runs/corpus/heldout --out docs/efficacy --work runs/efficacy
$py bench/mini_personalization.py --model default --proxy $P/proxy-heldout --subject runs/corpus/heldout/grace_hopper.jpg \
  --advdm runs/efficacy/AdvDM-200/images/grace_hopper.png --out docs/personalization
# one generator per eps, to check that the bundled one (eps as input) does as well
for e in 4 12; do
  if [ -d runs/eps$e/train ]; then $rid train --config configs/default.yaml eps=$e output=runs/eps$e/train --resume
  else $rid train --config configs/default.yaml eps=$e output=runs/eps$e/train; fi
done
$py bench/eps_levels.py --model default --dedicated 4=runs/eps4/train/final --dedicated 8=default --dedicated 12=runs/eps12/train/final \
  -t $P/proxy-a -t $P/proxy-b --heldout-target $P/proxy-heldout --images runs/corpus/heldout --out docs/efficacy
$py scripts/bundle_default.py runs/default/train/final ridtrain/weights/default docs/efficacy/efficacy.json
$rid export ridtrain/weights/default -o ridtrain/weights/default/onnx --photos runs/corpus/heldout
