#!/usr/bin/env bash
# PromptKD in the toy world, both stages, one seed:
#   bash scripts/promptkd/toy.sh [SEED] [KEY VALUE ...]        (extra options go to the distillation run)
# 1. teacher: PromptSRC on models/toy_teacher.pt, TEACHER_SHOTS (16)-shot labelled BASE classes (PromptSRC/toyshapes.yaml);
# 2. student: PromptKD on models/toy_student.pt, TRANSDUCTIVE: unlabelled images of the whole ToyShapes training
#    split, all 64 classes (labels unused), checkpoint chosen on the validation split;
# 3. evaluation of that checkpoint on the base and new test classes (stored teacher class vectors, no teacher).
# Needs data/toy (bash scripts/demo.sh makes it). A finished step is skipped; PY picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
SEED=${1:-1}; shift || true
OUT=output/promptkd_toy
TEACHER_SHOTS=${TEACHER_SHOTS:-16}
export TQDM_DISABLE=1
DATA=(--root data/toy --seed "$SEED" --dataset-config-file configs/datasets/toyshapes.yaml)
teacher=$OUT/teacher_PromptSRC_shots$TEACHER_SHOTS/seed$SEED student=$OUT/t$TEACHER_SHOTS/train_all_transductive/seed$SEED

"$PY" -c "from datasets.toyshapes import ensure_toyshapes; ensure_toyshapes('data/toy', size=64, seed=0, verbose=False, train=40, val=10, test=30)"
timed() {  # DIR COMMAND...: run unless DIR/log.txt has a result, write the wall time to DIR/wall_s.txt
  local dir=$1; shift
  grep -qs "^\* accuracy" "$dir/log.txt" && return 0
  local start; start=$(date +%s.%N)
  "$@" > /dev/null
  echo "$(date +%s.%N) - $start" | bc > "$dir/wall_s.txt"
}
timed "$teacher" "$PY" train.py "${DATA[@]}" --trainer PromptSRC --config-file configs/trainers/PromptSRC/toyshapes.yaml \
  --output-dir "$teacher" MODEL.BACKBONE.NAME models/toy_teacher.pt DATASET.NUM_SHOTS "$TEACHER_SHOTS" DATASET.SUBSAMPLE_CLASSES base
PKD=("${DATA[@]}" --trainer PromptKD --config-file configs/trainers/PromptKD/toyshapes.yaml)  # flags before KEY VALUE opts
timed "$student" "$PY" train.py "${PKD[@]}" --output-dir "$student" MODEL.BACKBONE.NAME models/toy_student.pt \
  TRAINER.PROMPTKD.TEACHER_CKPT "$teacher" "$@"
for sub in base new; do
  dir=$OUT/t$TEACHER_SHOTS/test_$sub/seed$SEED
  grep -qs "^\* accuracy" "$dir/log.txt" ||
    "$PY" train.py "${PKD[@]}" --output-dir "$dir" --model-dir "$student" --eval-only \
      MODEL.BACKBONE.NAME models/toy_student.pt DATASET.SUBSAMPLE_CLASSES "$sub" > /dev/null
done
printf "teacher PromptSRC ($TEACHER_SHOTS-shot base): base %s  (train wall %s s)\n" \
  "$(grep '^\* accuracy' "$teacher/log.txt" | tail -1 | awk '{print $3}')" "$(cat "$teacher/wall_s.txt")"
printf 'PromptKD student: base %s  new %s  (distillation wall %s s)\n' \
  "$(grep '^\* accuracy' "$OUT/t$TEACHER_SHOTS/test_base/seed$SEED/log.txt" | tail -1 | awk '{print $3}')" \
  "$(grep '^\* accuracy' "$OUT/t$TEACHER_SHOTS/test_new/seed$SEED/log.txt" | tail -1 | awk '{print $3}')" "$(cat "$student/wall_s.txt")"
