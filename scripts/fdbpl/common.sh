#!/usr/bin/env bash
# Shared by scripts/fdbpl/*.sh: the protocol bodies (scripts/lib/protocols.sh) and where RIL tables live.
#
# RIL path convention (one table per dataset, shots, few-shot seed, class subset, teacher, M and K):
#   $RIL_ROOT/<dataset>/shots_<SHOTS>/seed<SEED>/<subsample>_<teacher-slug>_M<NUM_CROPS>_K<TOPK>
#   (..._full instead of _K<TOPK> when LABEL_KIND=full), e.g. ril/oxford_pets/shots_16/seed1/base_vit_l14_M500_K20
# Environment (besides protocols.sh's DATA, SHOTS, PYTHON, OUT, FORCE): CFG (vit_b32_ep50_ctxv1), RIL_ROOT (ril),
# TEACHER (ViT-L/14), NUM_CROPS (500), TOPK (20), LABEL_KIND (topk | full).
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
CFG=${CFG:-vit_b32_ep50_ctxv1}
RIL_ROOT=${RIL_ROOT:-ril}
TEACHER=${TEACHER:-ViT-L/14}
NUM_CROPS=${NUM_CROPS:-500}
TOPK=${TOPK:-20}
LABEL_KIND=${LABEL_KIND:-topk}

teacher_slug() {  # ViT-L/14 -> vit_l14; a weight file -> its base name without extension
    local t=$1
    [[ -f "$t" ]] && t=$(basename "${t%.*}")
    echo "$t" | tr '[:upper:]' '[:lower:]' | sed -e 's#/##g' -e 's#[^a-z0-9.]#_#g'
}

ril_dir() {  # DATASET SEED SUBSAMPLE -> the table folder for this setting
    local kind="K${TOPK}"
    [[ "$LABEL_KIND" == "full" ]] && kind="full"
    echo "${RIL_ROOT}/$1/shots_${SHOTS}/seed$2/$3_$(teacher_slug "$TEACHER")_M${NUM_CROPS}_${kind}"
}

require_ril() {  # DIR: stop with the build command when the table is missing
    if [[ ! -f "$1/manifest.json" ]]; then
        echo "error: RIL table $1 not found; build it first: bash scripts/fdbpl/build_ril.sh DATASET SEED" >&2
        exit 2
    fi
}
