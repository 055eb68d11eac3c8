#!/usr/bin/env bash
# bash scripts/fdbpl/base2new_train.sh DATASET SEED [KEY VALUE ...]    (needs the table of build_ril.sh DATASET SEED)
source "$(dirname "$0")/common.sh"
dir=$(ril_dir "$1" "$2" base)
require_ril "$dir"
b2n_train FDBPL "$CFG" "$1" "$2" TRAINER.FDBPL.RIL_DIR "$dir" "${@:3}"
