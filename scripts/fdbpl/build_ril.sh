#!/usr/bin/env bash
# bash scripts/fdbpl/build_ril.sh DATASET SEED [KEY VALUE ...]    (SUB=base (default) for base-to-new, SUB=all for ImageNet xd)
# Builds the RIL table of DATASET's SHOTS-shot training images (few-shot seed SEED) with the teacher; a finished
# table is skipped (FORCE=1 rebuilds it), an interrupted build resumes. Several GPUs: PYTHON="torchrun --nproc_per_node G"
# runs ril_tools/build.py as a script.
source "$(dirname "$0")/common.sh"
dataset=$1 seed=$2 sub=${SUB:-base}
dir=$(ril_dir "$dataset" "$seed" "$sub")
if [[ -z "${FORCE:-}" && -f "$dir/manifest.json" ]]; then echo "RIL table exists at ${dir} (skip; FORCE=1 rebuilds)"; exit 0; fi
extra=()
[[ -n "${FORCE:-}" ]] && extra+=(--overwrite)
if [[ "$LABEL_KIND" == "full" ]]; then extra+=(--label-kind full); else extra+=(--topk "$TOPK"); fi
entry="-m ril_tools.build"
[[ "$PYTHON" == torchrun* ]] && entry="ril_tools/build.py"
$PYTHON $entry --root "$DATA" --seed "$seed" \
    --dataset-config-file "configs/datasets/${dataset}.yaml" \
    --config-file "configs/trainers/FDBPL/${CFG}.yaml" \
    --output "$dir" --teacher "$TEACHER" --num-crops "$NUM_CROPS" "${extra[@]}" \
    DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES "$sub" "${@:3}"
