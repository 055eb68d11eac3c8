#!/usr/bin/env bash
# Online CoOp_KDPL vs table-fed CoOp_KDPL (TRAINER.KDPL.RIL_DIR) vs FDBPL in the toy world: base/new accuracy
# and training wall time. Table-fed KDPL has KDPL's loss and FDBPL's data path (the table's crops and teacher
# labels, no teacher model), so it separates the table's speed gain from FDBPL's own losses.
#   [SHOTS=16] [M=16] bash scripts/coop_kdpl/toy_table_fed.sh [SEED]      # default seed 1
# (the figures reported for it were made with SHOTS=4 M=10, seeds 1 and 2, on a loaded 2-core VM)
# Demo settings (base classes, the shipped toy CLIPs, the toy configs' 10 epochs), SHOTS=${SHOTS:-16} shots and a
# table of M=${M:-16} crops per image (10 epochs replay 10 of them; the demo builds M=64), K=10.
# A finished run is skipped; PY=/path/to/python picks the interpreter (default: python).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
SEED=${1:-1}
OUT=output/table_fed
M=${M:-16}
SHOTS=${SHOTS:-16}
TABLE=$OUT/ril/shots_$SHOTS/seed$SEED/base_M${M}_K10
export TQDM_DISABLE=1
DATA=(--root data/toy --seed "$SEED" --dataset-config-file configs/datasets/toyshapes.yaml)
COMMON=(MODEL.BACKBONE.NAME models/toy_student.pt DATASET.NUM_SHOTS "$SHOTS")

"$PY" -c "from datasets.toyshapes import ensure_toyshapes; ensure_toyshapes('data/toy', size=64, seed=0, verbose=False, train=40, val=10, test=30)"
if [ ! -f "$TABLE/manifest.json" ]; then
  start=$(date +%s.%N)
  "$PY" -m ril_tools.build "${DATA[@]}" --config-file configs/trainers/FDBPL/toyshapes.yaml --output "$TABLE" \
    --teacher models/toy_teacher.pt --num-crops "$M" --topk 10 --workers 0 \
    DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES base > /dev/null
  echo "table build: $(echo "$(date +%s.%N) - $start" | bc) s" | tee "$TABLE.build_s.txt"
fi

run() {  # NAME TRAINER CONFIG [KEY VALUE ...]
  local name=$1 trainer=$2 config=$3; shift 3
  local args=("${DATA[@]}" --trainer "$trainer" --config-file "configs/trainers/$config")
  local train=$OUT/train_base/shots_$SHOTS/$name/seed$SEED test=$OUT/test_new/shots_$SHOTS/$name/seed$SEED
  if ! grep -q "^\* accuracy" "$train/log.txt" 2>/dev/null; then
    local start; start=$(date +%s.%N)
    "$PY" train.py "${args[@]}" --output-dir "$train" "${COMMON[@]}" "$@" DATASET.SUBSAMPLE_CLASSES base > /dev/null
    echo "$(echo "$(date +%s.%N) - $start" | bc)" > "$train/wall_s.txt"
  fi
  grep -q "^\* accuracy" "$test/log.txt" 2>/dev/null ||
    "$PY" train.py "${args[@]}" --output-dir "$test" --eval-only --model-dir "$train" "${COMMON[@]}" "$@" \
      DATASET.SUBSAMPLE_CLASSES new > /dev/null
  printf '%-22s base %s  new %s  train+base-eval wall %s s\n' "$name" \
    "$(grep '^\* accuracy' "$train/log.txt" | tail -1 | awk '{print $3}')" \
    "$(grep '^\* accuracy' "$test/log.txt" | tail -1 | awk '{print $3}')" "$(cat "$train/wall_s.txt")"
}

run CoOp_KDPL_online CoOp_KDPL CoOp_KDPL/toyshapes.yaml TRAINER.KDPL.TEACHER models/toy_teacher.pt
run CoOp_KDPL_table CoOp_KDPL CoOp_KDPL/toyshapes.yaml TRAINER.KDPL.RIL_DIR "$TABLE"
run FDBPL FDBPL FDBPL/toyshapes.yaml TRAINER.FDBPL.RIL_DIR "$TABLE"
