#!/usr/bin/env bash
# bash scripts/fdbpl/build_ril.sh DATASET SEED [KEY VALUE ...]
# Builds the RIL table of DATASET's SHOTS-shot training images (few-shot seed SEED; SUB=base (default) for
# base-to-new, SUB=all for xd) with the teacher, where scripts/fdbpl/common.sh says tables live; a finished table is
# skipped (FORCE=1 rebuilds it), an interrupted build resumes. The training scripts call it when their table is
# missing. Several GPUs: PYTHON="torchrun --nproc_per_node G" runs ril_tools/build.py as a script.
source "$(dirname "$0")/common.sh"
need_args 2 "$@"
dataset=$1 seed=$2 sub=${SUB:-base}
fdbpl_defaults "$dataset"
dir=$(ril_dir "$dataset" "$seed" "$sub")
if [[ -z "${FORCE:-}" && -f "$dir/manifest.json" ]]; then echo "RIL table exists at ${dir} (skip; FORCE=1 rebuilds)"; exit 0; fi
extra=()
[[ -n "${FORCE:-}" ]] && extra+=(--overwrite)
if [[ "$LABEL_KIND" == "full" ]]; then extra+=(--label-kind full); else extra+=(--topk "$TOPK"); fi
entry="-m ril_tools.build"
[[ "$PYTHON" == torchrun* ]] && entry="ril_tools/build.py"
$PYTHON $entry --root "$DATA" --seed "$seed" \
    --dataset-config-file "configs/datasets/${dataset}.yaml" \
    --config-file "configs/trainers/FDBPL/$(cfg_for FDBPL "$dataset" vit_b32_ep50_ctxv1).yaml" \
    --output "$dir" --teacher "$TEACHER" --num-crops "$NUM_CROPS" "${extra[@]}" \
    DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES "$sub" "${@:3}"
