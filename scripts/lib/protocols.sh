#!/usr/bin/env bash
# Shared bodies of the base-to-new and cross-dataset scripts (CoOp's output-directory conventions).
# Sourced by scripts/<method>/*.sh; each method script only sets TRAINER, CFG and its extra options.
#
# Environment: DATA (dataset root, default ./data), SHOTS (16), PYTHON (python), OUT (output),
# CFG (the trainer config; default: configs/trainers/<TRAINER>/<dataset>.yaml when the dataset has its own, as
# ToyShapes does, else the method's ViT-B/32 config), LOADEP (the epoch evaluated; default: the last one saved),
# TRAINER_TAG (appended to the trainer's name in output folders, e.g. -CA for class-agnostic KDPL), and
# FORCE=1 to re-run a finished job. A job whose log already shows a final result is skipped; an unfinished one
# is resumed automatically from its last epoch checkpoint. Every script forwards extra KEY VALUE arguments to
# train.py, e.g. `bash scripts/coop/base2new_train.sh toyshapes 1 OPTIM.MAX_EPOCH 2`.
set -euo pipefail
DATA=${DATA:-data}
SHOTS=${SHOTS:-16}
PYTHON=${PYTHON:-python}
OUT=${OUT:-output}
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
require_env

cfg_for() {  # TRAINER DATASET FALLBACK -> $CFG if set, else the dataset's own config if it has one, else FALLBACK
    if [[ -n "${CFG:-}" ]]; then echo "$CFG"
    elif [[ -f "configs/trainers/$1/$2.yaml" ]]; then echo "$2"
    else echo "$3"; fi
}

need_args() {  # N "$@": stop with the script's usage line (its second line) when fewer than N arguments are given
    local n=$1; shift
    if (( $# < n )); then echo "usage: $(sed -n '2s/^# *//p' "$0")" >&2; exit 2; fi
}

_load_epoch() {  # --load-epoch only when LOADEP is set; without it train.py loads the last (or best) saved epoch
    if [[ -n "${LOADEP:-}" ]]; then echo "--load-epoch $LOADEP"; fi
}

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

b2n_test() {  # TRAINER CFG DATASET SEED [KEY VALUE ...]; SUB=new (default) or base
    local trainer=$1 cfg=$2 dataset=$3 seed=$4; shift 4
    local sub=${SUB:-new}
    local common="${dataset}/shots_${SHOTS}/${trainer}${TRAINER_TAG:-}/${cfg}/seed${seed}"
    local dir="$OUT/base2new/test_${sub}/${common}"
    if _finished "$dir" "=> result"; then echo "The results exist at ${dir} (skip; FORCE=1 re-runs)"; return 0; fi
    if ! grep -qs -- "Finish training" "$OUT/base2new/train_base/${common}"/log.txt*; then
        echo "error: no finished training in $OUT/base2new/train_base/${common}; run the base2new_train.sh of this" \
             "method with the same DATASET, SEED, SHOTS and CFG first" >&2
        exit 2
    fi
    $PYTHON train.py --root "$DATA" --seed "$seed" --trainer "$trainer" \
        --dataset-config-file "configs/datasets/${dataset}.yaml" \
        --config-file "configs/trainers/${trainer}/${cfg}.yaml" \
        --output-dir "$dir" --model-dir "$OUT/base2new/train_base/${common}" $(_load_epoch) --eval-only \
        DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES "$sub" "$@"
}

xd_train() {  # TRAINER CFG SEED [KEY VALUE ...]  (the source DATASET, default imagenet, all classes)
    local trainer=$1 cfg=$2 seed=$3; shift 3
    local dataset=${DATASET:-imagenet}
    local dir="$OUT/${dataset}/${trainer}${TRAINER_TAG:-}/${cfg}_${SHOTS}shots/seed${seed}"
    if _finished "$dir" "Finish training"; then echo "The results exist at ${dir} (skip; FORCE=1 re-runs)"; return 0; fi
    $PYTHON train.py --root "$DATA" --seed "$seed" --trainer "$trainer" \
        --dataset-config-file "configs/datasets/${dataset}.yaml" \
        --config-file "configs/trainers/${trainer}/${cfg}.yaml" \
        --output-dir "$dir" DATASET.NUM_SHOTS "$SHOTS" "$@"
}

xd_test() {  # TRAINER CFG DATASET SEED [KEY VALUE ...]  (cross-dataset and ImageNet variants)
    local trainer=$1 cfg=$2 dataset=$3 seed=$4; shift 4
    local source=${SOURCE:-${DATASET:-imagenet}}
    local dir="$OUT/evaluation/${trainer}${TRAINER_TAG:-}/${cfg}_${SHOTS}shots/${dataset}/seed${seed}"
    if _finished "$dir" "=> result"; then echo "The results exist at ${dir} (skip; FORCE=1 re-runs)"; return 0; fi
    $PYTHON train.py --root "$DATA" --seed "$seed" --trainer "$trainer" \
        --dataset-config-file "configs/datasets/${dataset}.yaml" \
        --config-file "configs/trainers/${trainer}/${cfg}.yaml" \
        --output-dir "$dir" --model-dir "$OUT/${source}/${trainer}${TRAINER_TAG:-}/${cfg}_${SHOTS}shots/seed${seed}" \
        $(_load_epoch) --eval-only "$@"
}
