#!/usr/bin/env bash
# bash scripts/fdbpl/base2new_train.sh DATASET SEED [KEY VALUE ...]
# Trains on the base classes from the RIL table of build_ril.sh DATASET SEED (built first if missing).
source "$(dirname "$0")/common.sh"
need_args 2 "$@"
ensure_ril "$1" "$2" base
b2n_train FDBPL "$(cfg_for FDBPL "$1" vit_b32_ep50_ctxv1)" "$1" "$2" TRAINER.FDBPL.RIL_DIR "$(ril_dir "$1" "$2" base)" "${@:3}"
