#!/usr/bin/env bash
# Issue 23's GPU run: three weightings of configs/taef2-gpu.yaml trained side by side on one GPU for
# BUDGET seconds each (the newest checkpoint stands in where time runs out before the last step),
# then judged against the bundled model by bench/compare_candidates.py on the held-out photos.
#   bash scripts/train_gpu.sh WORK BUDGET [EXPORT] [key=value ...]
# WORK gets the runs; EXPORT (if given) gets compare.txt, compare.json and models.tar (each run's
# generator, metrics and log). Extra key=value pairs go to every variant (a CPU dry run:
#   bash scripts/train_gpu.sh /tmp/gpu-dry 120 /tmp/gpu-dry/out steps=4 batch=2 crop=128 num_workers=1).
# On a machine without the toolkit's installs, wheels in .whl/ (diffusers, kornia, ...) are installed first.
set -uo pipefail
cd "$(dirname "$0")/.."
work=$1 budget=$2 export_dir=${3:-}
shift $(( $# < 3 ? $# : 3 ))
python=${PYTHON:-python3}
if ! "$python" -c "import diffusers, kornia" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
declare -A variants=(  # how far TAEF2 leads the proxies, and how much delta's size is penalised
  [lat2-l2-3]="latent_weight=2.0 l2_weight=3.0"
  [lat1-l2-1.5]="latent_weight=1.0 l2_weight=1.5"
  [lat1-l2-0.75]="latent_weight=1.0 l2_weight=0.75"
)
mkdir -p "$work"
for name in "${!variants[@]}"; do
  args=(configs/taef2-gpu.yaml "output=$work/$name")
  read -ra extra <<<"${variants[$name]}"
  timeout --signal=INT --kill-after=20 "$budget" "$python" -c '
import sys
from ridtrain.config import TrainConfig
from ridtrain.defender.train import train
train(TrainConfig.load(sys.argv[1], sys.argv[2:]))' "${args[@]}" "${extra[@]}" "$@" >"$work/$name.log" 2>&1 &
done
wait
models=() kept=()
for name in "${!variants[@]}"; do
  tail -c 600 "$work/$name.log" | tr '\r' '\n' | tail -3
  last=$work/$name/final
  [ -d "$last" ] || last=$(ls -d "$work/$name"/checkpoint-* 2>/dev/null | tail -1)
  if [ -n "$last" ]; then models+=("$last"); kept+=("${last#"$work"/}" "$name/metrics.jsonl" "$name.log"); else echo "$name: no generator saved"; fi
done
"$python" bench/compare_candidates.py ridtrain/weights/default "${models[@]}" --json "$work/compare.json" | tee "$work/compare.txt"
if [ -n "$export_dir" ]; then
  mkdir -p "$export_dir"
  cp "$work/compare.txt" "$work/compare.json" "$export_dir/"
  tar -cf "$export_dir/models.tar" --exclude=state -C "$work" "${kept[@]}"
fi
