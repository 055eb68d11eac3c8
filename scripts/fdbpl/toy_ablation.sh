#!/usr/bin/env bash
# FDBPL ablations in the toy world (the README's TRAINER.FDBPL table), seeds 0-2, in CoOp's output layout:
#   bash scripts/demo.sh                       # first: ToyShapes in data/toy and the RIL tables in ril/toyshapes/
#   bash scripts/fdbpl/toy_ablation.sh         # then: 10 settings x 3 seeds
#   python scripts/parse_results.py --base2new output/ablation/base2new
# A finished run is skipped; PY=/path/to/python picks the interpreter (default: python); SEEDS="1" runs one
# seed; TAGS="diff1_mirrored promptsrc" runs only the named rows. Rows tagged promptsrc* use FDBPL on PromptSRC
# (configs/trainers/FDBPL/promptsrc_toyshapes.yaml), the others FDBPL on CoOp (toyshapes.yaml).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
OUT=output/ablation/base2new
export TQDM_DISABLE=1

run() {  # TAG SEED [KEY VALUE ...]
  local tag=$1 seed=$2; shift 2
  [[ -z "${TAGS:-}" || " $TAGS " == *" $tag "* ]] || return 0
  local config=configs/trainers/FDBPL/toyshapes.yaml
  [[ "$tag" == promptsrc* ]] && config=configs/trainers/FDBPL/promptsrc_toyshapes.yaml
  local table=ril/toyshapes/shots_16/seed$seed/base_toy_teacher_M64_K10
  [ -f "$table/manifest.json" ] || { echo "error: $table is missing; run bash scripts/demo.sh first" >&2; exit 2; }
  local args=(--root data/toy --seed "$seed" --trainer FDBPL --dataset-config-file configs/datasets/toyshapes.yaml
              --config-file "$config")
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

for seed in ${SEEDS:-0 1 2}; do
  run default "$seed"
  run no_diff1 "$seed" TRAINER.FDBPL.LAMBDA_DIFF1 0
  run no_diff2 "$seed" TRAINER.FDBPL.LAMBDA_DIFF2 0
  run no_pcd "$seed" TRAINER.FDBPL.LAMBDA_DIFF1 0 TRAINER.FDBPL.LAMBDA_DIFF2 0
  run label_mr "$seed" TRAINER.FDBPL.LABEL_MODE mr
  run lambdas_1_1_1 "$seed" TRAINER.FDBPL.LAMBDA_DIFF1 1 TRAINER.FDBPL.LAMBDA_DIFF2 1
  # Eq. 13 mirrored (high-information crops raise S1), at the default weights and at weight 1
  run diff1_mirrored "$seed" TRAINER.FDBPL.DIFF1_FORM mirrored
  run lambdas_1_1_1_mirrored "$seed" TRAINER.FDBPL.LAMBDA_DIFF1 1 TRAINER.FDBPL.LAMBDA_DIFF2 1 \
    TRAINER.FDBPL.DIFF1_FORM mirrored
  # FDBPL on PromptSRC: L_neg on the negative prompts only (default) vs also on the shared vision prompts
  run promptsrc "$seed"
  run promptsrc_neg_grad_to_vision "$seed" TRAINER.FDBPL.NEG_GRAD_TO_VISION True
done
