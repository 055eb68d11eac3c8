#!/usr/bin/env bash
# PromptKD, base-to-new reporting with PromptKD's TRANSDUCTIVE training data (not the few-shot protocol):
#   bash scripts/promptkd/base2new.sh DATASET SEED TEACHER_DIR [KEY VALUE ...]
# TEACHER_DIR: output folder of a PromptSRC (or IVLP) run on the teacher backbone, e.g. made by
#   CFG=vit_l14_... bash scripts/promptsrc/base2new_train.sh DATASET SEED MODEL.BACKBONE.NAME ViT-L/14
# 1. distil on the unlabelled images of the whole training split, ALL classes (labels unused), checkpoint
#    chosen on the validation split; 2. evaluate that checkpoint on the base and the new test classes.
# Environment: DATA (./data), CFG (vit_b16_c2_ep20_batch8_4+4ctx), PYTHON (python), OUT (output).
set -euo pipefail
DATA=${DATA:-data}; CFG=${CFG:-vit_b16_c2_ep20_batch8_4+4ctx}; PYTHON=${PYTHON:-python}; OUT=${OUT:-output}
dataset=$1 seed=$2 teacher=$3; shift 3
common=(--root "$DATA" --seed "$seed" --trainer PromptKD --dataset-config-file "configs/datasets/${dataset}.yaml"
        --config-file "configs/trainers/PromptKD/${CFG}.yaml")
train_dir="$OUT/base2new/train_all_transductive/${dataset}/PromptKD/${CFG}/seed${seed}"
grep -qs "Finish training" "$train_dir/log.txt" ||
  $PYTHON train.py "${common[@]}" --output-dir "$train_dir" TRAINER.PROMPTKD.TEACHER_CKPT "$teacher" \
    TRAINER.PROMPTKD.TRANSDUCTIVE True DATASET.SUBSAMPLE_CLASSES all DATASET.NUM_SHOTS -1 "$@"
for sub in base new; do
  dir="$OUT/base2new/test_${sub}/${dataset}/PromptKD/${CFG}/seed${seed}"
  grep -qs "accuracy:" "$dir/log.txt" ||
    $PYTHON train.py "${common[@]}" --output-dir "$dir" --model-dir "$train_dir" --eval-only \
      DATASET.SUBSAMPLE_CLASSES "$sub" "$@"
done
