#!/usr/bin/env bash
# bash scripts/fdbpl/build_ril.sh DATASET SEED [KEY VALUE ...]
# Builds the RIL table that SEED's SHOTS-shot run trains from (SUB=base (default) for base-to-new, SUB=all for
# xd), with the teacher, where scripts/fdbpl/common.sh says tables live. By default that is ONE table per dataset
# and class subset: the union of the few-shot subsets of seeds SEEDS ("0 1 2") at shots UNION_SHOTS (the run's
# SHOTS), so the three seeds' runs share one build; the first of SEEDS seeds the crops, so whichever seed's run
# triggers the build, the table is the same. SEEDS=<one seed> (or a SEED outside SEEDS) builds the single-run
# table instead. Why only the run's SHOTS by default: CoOp's few-shot subsets of different shot counts are drawn
# independently, so adding shots 1 2 4 8 to 16 adds up to 15 more images per class and seed (up to about twice
# the build) that only the shot sweep (Table 3) uses; UNION_SHOTS="1 2 4 8 16" builds that table when wanted.
# A finished table is skipped (FORCE=1 rebuilds it), an interrupted build resumes. The training scripts call it
# when their table is missing. Several GPUs: PYTHON="torchrun --nproc_per_node G" runs ril_tools/build.py as a script.
source "$(dirname "$0")/common.sh"
need_args 2 "$@"
dataset=$1 seed=$2 sub=${SUB:-base}
fdbpl_defaults "$dataset"
dir=$(ril_target "$dataset" "$seed" "$sub")
if [[ -z "${FORCE:-}" && -f "$dir/manifest.json" ]]; then echo "RIL table exists at ${dir} (skip; FORCE=1 rebuilds)"; exit 0; fi
extra=()
[[ -n "${FORCE:-}" ]] && extra+=(--overwrite)
if [[ "$LABEL_KIND" == "full" ]]; then extra+=(--label-kind full); else extra+=(--topk "$TOPK"); fi
crop_seed=$seed
if is_union "$seed"; then
    read -r -a seeds <<< "$SEEDS"
    read -r -a shots <<< "$UNION_SHOTS"
    crop_seed=${seeds[0]}
    extra+=(--seeds "${seeds[@]}" --shots "${shots[@]}")
    echo "RIL table for seeds ${seeds[*]} x shots ${shots[*]} (one build for all their runs): ${dir}"
fi
entry="-m ril_tools.build"
[[ "$PYTHON" == torchrun* ]] && entry="ril_tools/build.py"
# flags first: --seeds/--shots hand what follows their integers back to the KEY VALUE options
$PYTHON $entry --root "$DATA" --seed "$crop_seed" \
    --dataset-config-file "configs/datasets/${dataset}.yaml" \
    --config-file "configs/trainers/FDBPL/$(cfg_for FDBPL "$dataset" vit_b32_ep50_ctxv1).yaml" \
    --output "$dir" --teacher "$TEACHER" --num-crops "$NUM_CROPS" "${extra[@]}" \
    DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES "$sub" "${@:3}"
