#!/usr/bin/env bash
# FDBPL ablations in the toy world (the README's TRAINER.FDBPL table), seeds 0-2, in CoOp's output layout:
#   bash scripts/demo.sh                       # first: ToyShapes in data/toy and the RIL tables in output/demo/ril
#   bash scripts/fdbpl/toy_ablation.sh         # then: 5 settings x 3 seeds (about 12 minutes on 2 CPU cores)
#   python scripts/parse_results.py --base2new output/ablation/base2new
# A finished run is skipped; PY=/path/to/python picks the interpreter (default: python).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
OUT=output/ablation/base2new
export TQDM_DISABLE=1

run() {  # TAG SEED [KEY VALUE ...]
  local tag=$1 seed=$2; shift 2
  local table=output/demo/ril/shots_16/seed$seed/base_M64_K10
  [ -f "$table/manifest.json" ] || { echo "error: $table is missing; run bash scripts/demo.sh first" >&2; exit 2; }
  local args=(--root data/toy --seed "$seed" --trainer FDBPL --dataset-config-file configs/datasets/toyshapes.yaml
              --config-file configs/trainers/FDBPL/toyshapes.yaml)
  local opts=(MODEL.BACKBONE.NAME models/toy_student.pt DATASET.NUM_SHOTS 16 TRAINER.FDBPL.RIL_DIR "$table" "$@")
  local train=$OUT/train_base/toyshapes/shots_16/FDBPL/$tag/seed$seed
  local test=$OUT/test_new/toyshapes/shots_16/FDBPL/$tag/seed$seed
  grep -q "^\* accuracy" "$train/log.txt" 2>/dev/null ||
    "$PY" train.py "${args[@]}" --output-dir "$train" "${opts[@]}" DATASET.SUBSAMPLE_CLASSES base > /dev/null
  grep -q "^\* accuracy" "$test/log.txt" 2>/dev/null ||
    "$PY" train.py "${args[@]}" --output-dir "$test" --eval-only --model-dir "$train" "${opts[@]}" \
      DATASET.SUBSAMPLE_CLASSES new > /dev/null
  echo "$tag seed $seed done"
}

for seed in 0 1 2; do
  run no_diff1 "$seed" TRAINER.FDBPL.LAMBDA_DIFF1 0
  run no_diff2 "$seed" TRAINER.FDBPL.LAMBDA_DIFF2 0
  run no_pcd "$seed" TRAINER.FDBPL.LAMBDA_DIFF1 0 TRAINER.FDBPL.LAMBDA_DIFF2 0
  run label_mr "$seed" TRAINER.FDBPL.LABEL_MODE mr
  run lambdas_1_1_1 "$seed" TRAINER.FDBPL.LAMBDA_DIFF1 1 TRAINER.FDBPL.LAMBDA_DIFF2 1
done
