#!/usr/bin/env bash
# Train the five proxy targets on a CPU (the first three took about 32 minutes on 2 cores, alone), then copy them into the
# package (ridtrain/weights/proxies). Each step resumes where it stopped when run again.
set -euo pipefail
cd "$(dirname "$0")/.."
rid=.venv/bin/rid
[ -d runs/corpus/train ] || $rid data build-corpus runs/corpus
for name in proxy-a proxy-b proxy-c proxy-heldout proxy-heldout-vae; do
  if [ ! -f runs/proxies/$name/model_index.json ]; then
    if [ -d runs/proxies/$name ]; then $rid proxy train --config configs/$name.yaml --resume; else $rid proxy train --config configs/$name.yaml; fi
  fi
done
# Into the package, without the training state: vae/ unet/ text_encoder/ tokenizer/ scheduler/,
# model_index.json, proxy_config.yaml and metrics.jsonl.
for name in proxy-a proxy-b proxy-c proxy-heldout proxy-heldout-vae; do
  dst=ridtrain/weights/proxies/$name
  rm -rf "$dst" && mkdir -p "$dst"
  (cd runs/proxies/$name && cp -r vae unet text_encoder tokenizer scheduler model_index.json proxy_config.yaml metrics.jsonl "../../../$dst/")
done
$rid proxy report ridtrain/weights/proxies/proxy-{a,b,c,heldout,heldout-vae} \
  --heldout runs/corpus/heldout -o docs/proxies
