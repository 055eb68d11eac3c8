#!/usr/bin/env bash
# PromptKD in the toy world, both stages, one seed:
#   bash scripts/promptkd/toy.sh [SEED] [KEY VALUE ...]        (extra options go to the distillation run)
# 1. teacher: PromptSRC on models/toy_teacher.pt, TEACHER_SHOTS (16)-shot labelled BASE classes (PromptSRC/toyshapes.yaml);
# 2. student: PromptKD on models/toy_student.pt, TRANSDUCTIVE: unlabelled images of the whole ToyShapes training
#    split, all 64 classes (labels unused), checkpoint chosen on the validation split;
# 3. evaluation of that checkpoint on the base and new test classes (stored teacher class vectors, no teacher).
# Outputs: output/promptkd_toy/t$TEACHER_SHOTS is an output root in scripts/promptkd/base2new.sh's layout
# (base2new/{train_all_transductive,test_base,test_new}/toyshapes/PromptKD/toyshapes/seedS), so
#   python scripts/parse_results.py output/promptkd_toy/t16      reports it (marked transductive).
# Table-fed: TABLE_M=10 bash scripts/promptkd/toy.sh SEED builds an RIL table of the prompted teacher (python -m
# ril_tools.build --teacher-prompts, all classes, M crops per image, dense log-probabilities) after stage 1 and
# distils from it instead (TRAINER.PROMPTKD.RIL_DIR; run folder toyshapes_table_M<M> beside toyshapes).
# Needs data/toy (made here if missing). A finished step is skipped; PY picks the interpreter; WORKERS sets
# DATALOADER.NUM_WORKERS of every run (default: the configs'); each training writes wall_s.txt and cpu_s.txt
# (user + system CPU time of the process and its loader workers) beside its log.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
SEED=${1:-1}; shift || true
TEACHER_SHOTS=${TEACHER_SHOTS:-16}
OUT=output/promptkd_toy/t$TEACHER_SHOTS
export TQDM_DISABLE=1
DATA=(--root data/toy --seed "$SEED" --dataset-config-file configs/datasets/toyshapes.yaml)
WORKER_OPTS=(); [ -n "${WORKERS:-}" ] && WORKER_OPTS=(DATALOADER.NUM_WORKERS "$WORKERS")
teacher=output/promptkd_toy/teacher_PromptSRC_shots$TEACHER_SHOTS/seed$SEED
NAME=toyshapes; TABLE_OPTS=()
if [ -n "${TABLE_M:-}" ]; then
  NAME=toyshapes_table_M$TABLE_M
  table=output/promptkd_toy/ril/t$TEACHER_SHOTS/seed$SEED/prompted_M$TABLE_M
  TABLE_OPTS=(TRAINER.PROMPTKD.RIL_DIR "$table")
fi
run_dir() { echo "$OUT/base2new/$1/toyshapes/PromptKD/$NAME/seed$SEED"; }
student=$(run_dir train_all_transductive)

"$PY" -c "from datasets.toyshapes import ensure_toyshapes; ensure_toyshapes('data/toy', size=64, seed=0, verbose=False, train=40, val=10, test=30)"
timed() {  # DIR COMMAND...: run unless DIR/log.txt has a result; write DIR/wall_s.txt and DIR/cpu_s.txt
  local dir=$1; shift
  grep -qs "^\* accuracy" "$dir/log.txt" && return 0
  mkdir -p "$dir"
  local TIMEFORMAT='%3R %3U %3S'
  { time "$@" > /dev/null 2>&3; } 3>&2 2> "$dir/time.txt"
  awk '{print $1}' "$dir/time.txt" > "$dir/wall_s.txt"
  awk '{printf "%.3f\n", $2 + $3}' "$dir/time.txt" > "$dir/cpu_s.txt"
}
timed "$teacher" "$PY" train.py "${DATA[@]}" --trainer PromptSRC --config-file configs/trainers/PromptSRC/toyshapes.yaml \
  --output-dir "$teacher" MODEL.BACKBONE.NAME models/toy_teacher.pt DATASET.NUM_SHOTS "$TEACHER_SHOTS" \
  DATASET.SUBSAMPLE_CLASSES base "${WORKER_OPTS[@]}"
if [ -n "${TABLE_M:-}" ] && [ ! -f "$table/manifest.json" ]; then
  mkdir -p "$(dirname "$table")"
  TIMEFORMAT='%3R %3U %3S'
  { time "$PY" -m ril_tools.build "${DATA[@]}" --config-file configs/trainers/PromptKD/toyshapes.yaml --output "$table" \
      --teacher models/toy_teacher.pt --teacher-prompts "$teacher" --label-kind full --num-crops "$TABLE_M" \
      --workers 0 > /dev/null 2>&3; } 3>&2 2> "$table.time.txt"
fi
PKD=("${DATA[@]}" --trainer PromptKD --config-file configs/trainers/PromptKD/toyshapes.yaml)  # flags before KEY VALUE opts
timed "$student" "$PY" train.py "${PKD[@]}" --output-dir "$student" MODEL.BACKBONE.NAME models/toy_student.pt \
  TRAINER.PROMPTKD.TEACHER_CKPT "$teacher" "${WORKER_OPTS[@]}" "${TABLE_OPTS[@]}" "$@"
for sub in base new; do
  dir=$(run_dir "test_$sub")
  grep -qs "^\* accuracy" "$dir/log.txt" ||
    "$PY" train.py "${PKD[@]}" --output-dir "$dir" --model-dir "$student" --eval-only \
      MODEL.BACKBONE.NAME models/toy_student.pt DATASET.SUBSAMPLE_CLASSES "$sub" "${WORKER_OPTS[@]}" > /dev/null
done
acc() { grep '^\* accuracy' "$1/log.txt" | tail -1 | awk '{print $3}'; }
printf "teacher PromptSRC ($TEACHER_SHOTS-shot base): base %s  (train wall %s s, CPU %s s)\n" \
  "$(acc "$teacher")" "$(cat "$teacher/wall_s.txt")" "$(cat "$teacher/cpu_s.txt")"
if [ -n "${TABLE_M:-}" ] && [ -f "$table.time.txt" ]; then
  printf 'RIL table of the prompted teacher, M=%s: build wall %s s, CPU %s s\n' "$TABLE_M" \
    "$(awk '{print $1}' "$table.time.txt")" "$(awk '{printf "%.3f", $2 + $3}' "$table.time.txt")"
fi
printf "PromptKD student ($NAME, transductive): base %s  new %s  (distillation wall %s s, CPU %s s)\n" \
  "$(acc "$(run_dir test_base)")" "$(acc "$(run_dir test_new)")" "$(cat "$student/wall_s.txt")" "$(cat "$student/cpu_s.txt")"
