#!/usr/bin/env bash
# Shared by scripts/fdbpl/*.sh: the protocol bodies (scripts/lib/protocols.sh) and where RIL tables live.
#
# RIL path convention (one table per dataset, shots, few-shot seed, class subset, teacher, M and K), shared with
# scripts/demo.py so that the demo's tables serve these scripts:
#   $RIL_ROOT/<dataset>/shots_<SHOTS>/seed<SEED>/<subsample>_<teacher-slug>_M<NUM_CROPS>_K<TOPK>
#   (..._full instead of _K<TOPK> when LABEL_KIND=full), e.g. ril/oxford_pets/shots_16/seed1/base_vit_l14_M500_K20
#   or, in the toy world, ril/toyshapes/shots_16/seed1/base_toy_teacher_M64_K10.
# Environment (besides protocols.sh's DATA, SHOTS, PYTHON, OUT, FORCE): CFG, RIL_ROOT (ril), TEACHER, NUM_CROPS,
# TOPK, LABEL_KIND (topk | full). TEACHER, NUM_CROPS and TOPK default to the paper's ViT-L/14, 500, 20, and in the
# toy world (toyshapes) to the demo's models/toy_teacher.pt, 64, 10.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
RIL_ROOT=${RIL_ROOT:-ril}
LABEL_KIND=${LABEL_KIND:-topk}

fdbpl_defaults() {  # DATASET: the table settings for this dataset, unless set in the environment
    if [[ "$1" == toyshapes ]]; then
        TEACHER=${TEACHER:-models/toy_teacher.pt} NUM_CROPS=${NUM_CROPS:-64} TOPK=${TOPK:-10}
    else
        TEACHER=${TEACHER:-ViT-L/14} NUM_CROPS=${NUM_CROPS:-500} TOPK=${TOPK:-20}
    fi
}

teacher_slug() {  # ViT-L/14 -> vit_l14; a weight file (models/toy_teacher.pt) -> its base name (toy_teacher)
    local t=$1
    if [[ -f "$t" || "$t" =~ \.(pt|pth|bin|safetensors)$ ]]; then t=$(basename "${t%.*}"); fi
    echo "$t" | tr '[:upper:]' '[:lower:]' | sed -e 's#/##g' -e 's#[^a-z0-9.]#_#g'
}

ril_dir() {  # DATASET SEED SUBSAMPLE -> the table folder for this setting
    fdbpl_defaults "$1"
    local kind="K${TOPK}"
    [[ "$LABEL_KIND" == "full" ]] && kind="full"
    echo "${RIL_ROOT}/$1/shots_${SHOTS}/seed$2/$3_$(teacher_slug "$TEACHER")_M${NUM_CROPS}_${kind}"
}

ensure_ril() {  # DATASET SEED SUBSAMPLE: build the table unless it exists (once per setting)
    local dir
    dir=$(ril_dir "$1" "$2" "$3")
    if [[ ! -f "$dir/manifest.json" ]]; then
        echo "RIL table $dir not found: building it first (once; resumable; later runs reuse it)"
        SUB=$3 bash "$(dirname "${BASH_SOURCE[0]}")/build_ril.sh" "$1" "$2"
    fi
}
