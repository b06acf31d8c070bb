#!/usr/bin/env bash
# Feature collision, Bullseye Polytope and Convex Polytope on the first setups of a
# poisoning-benchmark-format setups file for CIFAR-10 (issue 18; docs/interchange.md), white-box
# transfer learning: the extractor is the shared clean AlexNet-CIFAR (../shared/models, all 10
# classes), a new 10-way head retrained on 250 images per class (2,500, the benchmark's transfer
# training-set size) in which each setup's 25 bases are replaced by their poisons; L-inf 8/255,
# 8-bit poisons. Run it from the repository with the default FROGS_MODELS: the checkpoint's path
# is part of the trials' identity, so another spelling of it records new trials.
# Resumable: relaunching runs only the trials results/pb_cifar10_transfer/*/results.jsonl lack.
#   scripts/pb_setups_cifar10.sh [TRIALS] [ITERS]     # defaults: 10 setups, 250 iterations
set -euo pipefail
cd "$(dirname "$0")/.."
export FROGS_DATA="${FROGS_DATA:-../shared/data}"
python="${FROGS_PYTHON:-.venv/bin/python}"
trials="${1:-10}"
iters="${2:-250}"
out=results/pb_cifar10_transfer
setups="$out/setups.pickle"   # ignored by git: the command below rebuilds it, byte for byte
mkdir -p "$out"
if [[ ! -f "$setups" ]]; then
  "$python" -m frogs.interchange.make_setups dataset=cifar10 --out "$setups" \
    --count 100 --poisons 25 --train-per-class 250 --seed 0
fi
for attack in feature_collision bullseye_polytope convex_polytope; do
  echo "== $(date -u +%FT%TZ) $attack" >&2
  "$python" -m frogs dataset=cifar10 victim=transfer dataset.task_classes=all \
    dataset.train_per_class=250 model/pretrain=cpu \
    "model.checkpoint=${FROGS_MODELS:-../shared/models}/alexnet_cifar-cifar10-cpu.pt" \
    model.checkpoint_sha256=a1fb7f768285e81a7ed74e332b68a7191fe86677b83475e7a15dabf52bf87fac \
    target_selection=setups "setups=$setups" "attack=$attack" attack.num_poisons=25 \
    "attack.iters=$iters" "trials=$trials" save_poisons=false progress=false threads=1 \
    "hydra.run.dir=$out/${attack}_iters${iters}"
done
