#!/usr/bin/env bash
# Shared by scripts/fdbpl/*.sh: the protocol bodies (scripts/lib/protocols.sh) and where RIL tables live.
#
# One table per dataset and class subset (issue 17): by default a run's table is the UNION table of the few-shot
# subsets of seeds SEEDS (0 1 2) at shots UNION_SHOTS (the run's SHOTS), built once with
# `python -m ril_tools.build --seeds ... --shots ...` and shared by every run of those seeds and shots (a run
# trains on its own images of it; crops and schedules are keyed by image path, so a run gets the same labels
# as from a table of its own):
#   $RIL_ROOT/<dataset>/shots_<UNION_SHOTS joined by ->/seeds_<SEEDS joined by ->/<subsample>_<teacher-slug>_M<NUM_CROPS>_K<TOPK>
#   e.g. ril/oxford_pets/shots_16/seeds_0-1-2/base_vit_l14_M500_K20
# A single-run table (SEEDS=<one seed>, or a seed or SHOTS outside SEEDS / UNION_SHOTS) keeps the older name,
#   $RIL_ROOT/<dataset>/shots_<SHOTS>/seed<SEED>/<subsample>_<teacher-slug>_M<NUM_CROPS>_K<TOPK>,
# which scripts/demo.py uses too (ril/toyshapes/shots_16/seed1/base_toy_teacher_M64_K10): a run whose union table
# is missing but whose single-run table exists (the demo's) uses that one instead of building the union.
# (..._full instead of _K<TOPK> when LABEL_KIND=full.)
# Environment (besides protocols.sh's DATA, SHOTS, PYTHON, OUT, FORCE): CFG, RIL_ROOT (ril), SEEDS ("0 1 2"),
# UNION_SHOTS ("$SHOTS"; e.g. "1 2 4 8 16" for one table serving the shot sweep), TEACHER, NUM_CROPS, TOPK,
# LABEL_KIND (topk | full). TEACHER, NUM_CROPS and TOPK default to the paper's ViT-L/14, 500, 20, and in the toy
# worlds to the demo's: toyshapes models/toy_teacher.pt, toyscenes models/scenes_teacher_large.pt, both 64, 10.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
RIL_ROOT=${RIL_ROOT:-ril}
LABEL_KIND=${LABEL_KIND:-topk}
SEEDS=${SEEDS:-0 1 2}
UNION_SHOTS=${UNION_SHOTS:-$SHOTS}

fdbpl_defaults() {  # DATASET: the table settings for this dataset, unless set in the environment
    if [[ "$1" == toyshapes ]]; then
        TEACHER=${TEACHER:-models/toy_teacher.pt} NUM_CROPS=${NUM_CROPS:-64} TOPK=${TOPK:-10}
    elif [[ "$1" == toyscenes* ]]; then
        TEACHER=${TEACHER:-models/scenes_teacher_large.pt} NUM_CROPS=${NUM_CROPS:-64} TOPK=${TOPK:-10}
    else
        TEACHER=${TEACHER:-ViT-L/14} NUM_CROPS=${NUM_CROPS:-500} TOPK=${TOPK:-20}
    fi
}

teacher_slug() {  # ViT-L/14 -> vit_l14; a weight file (models/toy_teacher.pt) -> its base name (toy_teacher)
    local t=$1
    if [[ -f "$t" || "$t" =~ \.(pt|pth|bin|safetensors)$ ]]; then t=$(basename "${t%.*}"); fi
    echo "$t" | tr '[:upper:]' '[:lower:]' | sed -e 's#/##g' -e 's#[^a-z0-9.]#_#g'
}

_table_name() {  # DATASET SUBSAMPLE -> the table folder's own name (subset, teacher, M, K)
    fdbpl_defaults "$1"
    local kind="K${TOPK}"
    [[ "$LABEL_KIND" == "full" ]] && kind="full"
    echo "$2_$(teacher_slug "$TEACHER")_M${NUM_CROPS}_${kind}"
}

_words() { echo $*; }  # normalise a list's spacing
_in_list() { [[ " $(_words $2) " == *" $1 "* ]]; }  # WORD LIST

single_ril_dir() {  # DATASET SEED SUBSAMPLE -> the single-run table of this seed and SHOTS
    echo "${RIL_ROOT}/$1/shots_${SHOTS}/seed$2/$(_table_name "$1" "$3")"
}

union_ril_dir() {  # DATASET SUBSAMPLE -> the union table of SEEDS x UNION_SHOTS
    local seeds shots
    seeds=$(_words $SEEDS | tr ' ' '-') shots=$(_words $UNION_SHOTS | tr ' ' '-')
    echo "${RIL_ROOT}/$1/shots_${shots}/seeds_${seeds}/$(_table_name "$1" "$2")"
}

is_union() {  # SEED: true when this seed's table is the union one (seed in SEEDS, SHOTS in UNION_SHOTS, > 1 subset)
    _in_list "$1" "$SEEDS" && _in_list "$SHOTS" "$UNION_SHOTS" \
        && (( $(_words $SEEDS | wc -w) * $(_words $UNION_SHOTS | wc -w) > 1 ))
}

ril_target() {  # DATASET SEED SUBSAMPLE -> the table build_ril.sh builds for this run
    if is_union "$2"; then union_ril_dir "$1" "$3"; else single_ril_dir "$1" "$2" "$3"; fi
}

ril_dir() {  # DATASET SEED SUBSAMPLE -> the table this run trains from: its target, or an existing single-run one
    local target single
    target=$(ril_target "$1" "$2" "$3") single=$(single_ril_dir "$1" "$2" "$3")
    if [[ ! -f "$target/manifest.json" && -f "$single/manifest.json" ]]; then echo "$single"; else echo "$target"; fi
}

ensure_ril() {  # DATASET SEED SUBSAMPLE: build the table unless it exists (once per setting)
    local dir
    dir=$(ril_dir "$1" "$2" "$3")
    if [[ ! -f "$dir/manifest.json" ]]; then
        echo "RIL table $dir not found: building it first (once; resumable; later runs reuse it)"
        SUB=$3 bash "$(dirname "${BASH_SOURCE[0]}")/build_ril.sh" "$1" "$2"
    fi
}
