#!/usr/bin/env bash
# Paper-scale end-to-end on one GPU, for a session lent one (the device tool): the paper's clean
# model (App. F: 200 epochs on all 50,000 CIFAR-10 images, Adam decayed to 1.85e-5), then claim 5
# (bird -> dog, 50 poisons at 30 % opacity, the official loop's 12,000 iterations, 10 retraining
# epochs) on as many targets as fit before the deadline. Records land in
# OUT/results/e2e_poison_count_paper/; copy that folder into results/ to add them to the report.
#
#   FROGS_DATA=DIR scripts/paper_scale_e2e.sh OUT [DEADLINE_S]
#   DRY_RUN=1 FROGS_DATA=DIR scripts/paper_scale_e2e.sh OUT   # tiny sizes on a CPU (the tests)
#
# DEADLINE_S (default 540) bounds the whole script: pretraining first, then trials until the
# time is up (a trial cut short is simply not recorded; rerunning the trial command resumes).
set -euo pipefail
OUT=${1:?usage: scripts/paper_scale_e2e.sh OUT [DEADLINE_S]}
DEADLINE_S=${2:-540}
: "${FROGS_DATA:?set FROGS_DATA to the folder holding cifar-10-batches-py}"
FROGS_DATA=$(cd "$FROGS_DATA" && pwd)
FROGS=${FROGS:-frogs}  # the command that runs frogs (word-split: "python -m frogs" works)
SWEEPS="$(cd "$(dirname "$0")/.." && pwd)/sweeps"
started=$(date +%s)
mkdir -p "$OUT"
cd "$OUT"   # relative names below, so that the job folder's name holds no path
export FROGS_DATA FROGS_CACHE="${FROGS_CACHE:-$PWD/cache}"
CHECKPOINT=alexnet_cifar-cifar10-paper.pt

if [[ "${DRY_RUN:-0}" == 1 ]]; then
  SIZE=(debug=smoke)                       # tiny data and a 1-epoch clean model
  TRIAL=(debug=smoke attack.iters=3 attack.num_poisons=5 attack.pool=5 victim.epochs=1 trials=1)
else
  SIZE=()
  TRIAL=(trials=30 device=cuda)
fi

echo "== clean model: model/pretrain=paper -> $OUT/$CHECKPOINT"
if [[ ! -f "$CHECKPOINT" ]]; then
  # shellcheck disable=SC2086
  timeout "$DEADLINE_S" $FROGS pretrain --out "$CHECKPOINT" dataset=cifar10 victim=end_to_end \
    model/pretrain=paper progress=false "${SIZE[@]}"
fi

left=$((DEADLINE_S - ($(date +%s) - started)))
echo "== claim 5 at paper scale: ${left} s left"
rc=0
# shellcheck disable=SC2086
timeout "$left" $FROGS --config-dir "$SWEEPS" --config-name e2e_poison_count scale=paper \
  pair=bird_dog attack.num_poisons=50 attack.opacity=0.3 attack.pool=50 \
  model.checkpoint="$CHECKPOINT" progress=false \
  hydra.sweep.dir=results/e2e_poison_count_paper "${TRIAL[@]}" || rc=$?
if [[ $rc -ne 0 && $rc -ne 124 ]]; then
  exit "$rc"
fi
echo "== records:"
find results -name results.jsonl -exec wc -l {} +
