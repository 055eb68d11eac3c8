#!/usr/bin/env bash
# Shared bodies of the base-to-new and cross-dataset scripts (CoOp's output-directory conventions).
# Sourced by scripts/<method>/*.sh; each method script only sets TRAINER, CFG and its extra options.
#
# Environment: DATA (dataset root, default ./data), SHOTS (16), PYTHON (python), OUT (output),
# TRAINER_TAG (appended to the trainer's name in output folders, e.g. -CA for class-agnostic KDPL), and
# FORCE=1 to re-run a finished job. A job whose log already shows a final result is skipped; an unfinished one
# is resumed automatically from its last epoch checkpoint.
set -euo pipefail
DATA=${DATA:-data}
SHOTS=${SHOTS:-16}
PYTHON=${PYTHON:-python}
OUT=${OUT:-output}

_finished() {  # $1 = output dir, $2 = end signal
    [[ -z "${FORCE:-}" ]] && [[ -d "$1" ]] && grep -qs -- "$2" "$1"/log.txt* && grep -qs -- "accuracy:" "$1"/log.txt*
}

b2n_train() {  # TRAINER CFG DATASET SEED [KEY VALUE ...]
    local trainer=$1 cfg=$2 dataset=$3 seed=$4; shift 4
    local dir="$OUT/base2new/train_base/${dataset}/shots_${SHOTS}/${trainer}${TRAINER_TAG:-}/${cfg}/seed${seed}"
    if _finished "$dir" "Finish training"; then echo "The results exist at ${dir} (skip; FORCE=1 re-runs)"; return 0; fi
    $PYTHON train.py --root "$DATA" --seed "$seed" --trainer "$trainer" \
        --dataset-config-file "configs/datasets/${dataset}.yaml" \
        --config-file "configs/trainers/${trainer}/${cfg}.yaml" \
        --output-dir "$dir" \
        DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES base "$@"
}

b2n_test() {  # TRAINER CFG DATASET SEED LOADEP [KEY VALUE ...]; SUB=new (default) or base
    local trainer=$1 cfg=$2 dataset=$3 seed=$4 loadep=$5; shift 5
    local sub=${SUB:-new}
    local common="${dataset}/shots_${SHOTS}/${trainer}${TRAINER_TAG:-}/${cfg}/seed${seed}"
    local dir="$OUT/base2new/test_${sub}/${common}"
    if _finished "$dir" "=> result"; then echo "The results exist at ${dir} (skip; FORCE=1 re-runs)"; return 0; fi
    $PYTHON train.py --root "$DATA" --seed "$seed" --trainer "$trainer" \
        --dataset-config-file "configs/datasets/${dataset}.yaml" \
        --config-file "configs/trainers/${trainer}/${cfg}.yaml" \
        --output-dir "$dir" --model-dir "$OUT/base2new/train_base/${common}" --load-epoch "$loadep" --eval-only \
        DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES "$sub" "$@"
}

xd_train() {  # TRAINER CFG SEED [KEY VALUE ...]  (ImageNet, all classes; DATASET=imagenet by default)
    local trainer=$1 cfg=$2 seed=$3; shift 3
    local dataset=${DATASET:-imagenet}
    local dir="$OUT/${dataset}/${trainer}${TRAINER_TAG:-}/${cfg}_${SHOTS}shots/seed${seed}"
    if _finished "$dir" "Finish training"; then echo "The results exist at ${dir} (skip; FORCE=1 re-runs)"; return 0; fi
    $PYTHON train.py --root "$DATA" --seed "$seed" --trainer "$trainer" \
        --dataset-config-file "configs/datasets/${dataset}.yaml" \
        --config-file "configs/trainers/${trainer}/${cfg}.yaml" \
        --output-dir "$dir" DATASET.NUM_SHOTS "$SHOTS" "$@"
}

xd_test() {  # TRAINER CFG DATASET SEED LOADEP [KEY VALUE ...]  (cross-dataset and ImageNet variants)
    local trainer=$1 cfg=$2 dataset=$3 seed=$4 loadep=$5; shift 5
    local source=${SOURCE:-imagenet}
    local dir="$OUT/evaluation/${trainer}${TRAINER_TAG:-}/${cfg}_${SHOTS}shots/${dataset}/seed${seed}"
    if _finished "$dir" "=> result"; then echo "The results exist at ${dir} (skip; FORCE=1 re-runs)"; return 0; fi
    $PYTHON train.py --root "$DATA" --seed "$seed" --trainer "$trainer" \
        --dataset-config-file "configs/datasets/${dataset}.yaml" \
        --config-file "configs/trainers/${trainer}/${cfg}.yaml" \
        --output-dir "$dir" --model-dir "$OUT/${source}/${trainer}${TRAINER_TAG:-}/${cfg}_${SHOTS}shots/seed${seed}" \
        --load-epoch "$loadep" --eval-only "$@"
}
