#!/usr/bin/env bash
# bash scripts/fdbpl/xd_train.sh SEED [KEY VALUE ...]
# SHOTS-shot source DATASET (imagenet by default), all classes, from the SUB=all table (built first if missing).
source "$(dirname "$0")/common.sh"
need_args 1 "$@"
source_ds=${DATASET:-imagenet}
ensure_ril "$source_ds" "$1" all
xd_train FDBPL "$(cfg_for FDBPL "$source_ds" vit_b32_ep50_ctxv1)" "$1" TRAINER.FDBPL.RIL_DIR "$(ril_dir "$source_ds" "$1" all)" "${@:2}"
