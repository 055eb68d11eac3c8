#!/usr/bin/env bash
# The README's FDBPL tuning table (the sweep under `TRAINER.FDBPL` settings) in the toy world: ToyShapes
# base-to-new, 16 shots, seed 1, one run per setting, the toy optimiser of configs/trainers/FDBPL/toyshapes.yaml
# unless a row says otherwise, and the demo's table (M=64 crops, K=10).
#   bash scripts/fdbpl/toy_tuning.sh           # makes data/toy and the seed-1 table if missing (as the demo does)
#   COMPARE=0 bash scripts/fdbpl/toy_tuning.sh # without the zero-shot / CoOp / CoOp_KDPL comparison row
# Prints the table at the end; a finished run is skipped. PY=/path/to/python picks the interpreter.
# The rows' lambdas are (LAMBDA_NEG, LAMBDA_DIFF1, LAMBDA_DIFF2). "paper's optimiser" is the paper's SGD
# lr 0.1, batch 128, 50 epochs (the paper's schedule; a 20-epoch variant is kept for the earlier figure).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
OUT=${OUT:-output/tuning/base2new}
SEED=1
DATA=data/toy
TABLE=ril/toyshapes/shots_16/seed$SEED/base_toy_teacher_M64_K10
COMPARE=${COMPARE:-1}
export TQDM_DISABLE=1
ARGS=(--root "$DATA" --seed "$SEED" --dataset-config-file configs/datasets/toyshapes.yaml)
OPTS=(MODEL.BACKBONE.NAME models/toy_student.pt DATASET.NUM_SHOTS 16)

# the demo's data (scripts/demo.py make_data) and seed-1 table (build_tables): same sizes and arguments
"$PY" -c "from datasets.toyshapes import ensure_toyshapes
ensure_toyshapes('$DATA', size=64, seed=0, verbose=False, train=40, val=10, test=30)"  # no-op when present
[ -f "$TABLE/manifest.json" ] || "$PY" -m ril_tools.build "${ARGS[@]}" \
  --config-file configs/trainers/FDBPL/toyshapes.yaml --output "$TABLE" --teacher models/toy_teacher.pt \
  --num-crops 64 --topk 10 --workers 0 DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base > /dev/null

acc() { grep "^\* accuracy" "$1/log.txt" 2>/dev/null | tail -n 1 | sed -e 's/.*: //' -e 's/%//'; }

run() {  # TRAINER CONFIG TAG [KEY VALUE ...]: train on base, test on new; ZeroshotCLIP only evaluates
  local trainer=$1 config=$2 tag=$3; shift 3
  local train=$OUT/train_base/toyshapes/shots_16/$trainer/$tag/seed$SEED
  local test=$OUT/test_new/toyshapes/shots_16/$trainer/$tag/seed$SEED
  local args=("${ARGS[@]}" --trainer "$trainer" --config-file "configs/trainers/$config")
  local on_base=() on_new=(--eval-only --model-dir "$train")
  if [ "$trainer" = ZeroshotCLIP ]; then on_base=(--eval-only); on_new=(--eval-only); fi
  [ -n "$(acc "$train")" ] ||
    "$PY" train.py "${args[@]}" --output-dir "$train" "${on_base[@]}" "${OPTS[@]}" "$@" \
      DATASET.SUBSAMPLE_CLASSES base > /dev/null
  [ -n "$(acc "$test")" ] ||
    "$PY" train.py "${args[@]}" --output-dir "$test" "${on_new[@]}" "${OPTS[@]}" "$@" \
      DATASET.SUBSAMPLE_CLASSES new > /dev/null
  ROWS+=("$(printf '| %s | %s | %s |' "$LABEL" "$(acc "$train")" "$(acc "$test")")")
  echo "${ROWS[-1]}"
}

fdbpl() {  # LABEL TAG [KEY VALUE ...]
  LABEL=$1; local tag=$2; shift 2
  run FDBPL FDBPL/toyshapes.yaml "$tag" TRAINER.FDBPL.RIL_DIR "$TABLE" "$@"
}

lambdas() { echo TRAINER.FDBPL.LAMBDA_NEG "$1" TRAINER.FDBPL.LAMBDA_DIFF1 "$2" TRAINER.FDBPL.LAMBDA_DIFF2 "$3"; }
PAPER_OPTIM=(OPTIM.LR 0.1 DATALOADER.TRAIN_X.BATCH_SIZE 128 OPTIM.MAX_EPOCH 50)
ROWS=()
# shellcheck disable=SC2046  # lambdas prints KEY VALUE words on purpose
{
  fdbpl "lambdas 1, 1, 1 (alpha 1)" l111 $(lambdas 1 1 1) TRAINER.FDBPL.ALPHA 1
  fdbpl "lambdas 1, 0, 1" l101 $(lambdas 1 0 1)
  fdbpl "lambdas 1, 0.1, 1" l1p11 $(lambdas 1 0.1 1)
  fdbpl "lambdas 1, 1, 0 with alpha 0 (only Eq. 13's low-information term)" l110_a0 $(lambdas 1 1 0) \
    TRAINER.FDBPL.ALPHA 0
  fdbpl "lambdas 1, 0, 0 (RADP only)" l100 $(lambdas 1 0 0)
  fdbpl "lambdas 1, 0, 0, label mode mr" l100_mr $(lambdas 1 0 0) TRAINER.FDBPL.LABEL_MODE mr
  fdbpl "lambdas 1, 0.01, 0" l1p010 $(lambdas 1 0.01 0)
  fdbpl "lambdas 1, 0, 0.1" l10p1 $(lambdas 1 0 0.1)
  fdbpl "lambdas 1, 0, 1, paper's optimiser (50 epochs)" l101_paper $(lambdas 1 0 1) "${PAPER_OPTIM[@]}"
  fdbpl "lambdas 1, 1, 1, paper's optimiser (50 epochs)" l111_paper $(lambdas 1 1 1) "${PAPER_OPTIM[@]}"
  fdbpl "lambdas 1, 1, 1, paper's optimiser with 20 epochs" l111_paper_ep20 $(lambdas 1 1 1) \
    "${PAPER_OPTIM[@]}" OPTIM.MAX_EPOCH 20
}
if [ "$COMPARE" = 1 ]; then
  LABEL="zero-shot student"; run ZeroshotCLIP CoOp/toyshapes.yaml zs
  LABEL="CoOp"; run CoOp CoOp/toyshapes.yaml toyshapes
  LABEL="CoOp_KDPL"; run CoOp_KDPL CoOp_KDPL/toyshapes.yaml toyshapes TRAINER.KDPL.TEACHER models/toy_teacher.pt
fi
echo
echo "FDBPL tuning, ToyShapes base-to-new, 16 shots, seed $SEED, accuracy % on the test images:"
echo "| setting | base | new |"
echo "|---|---|---|"
printf '%s\n' "${ROWS[@]}"
