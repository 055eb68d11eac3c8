#!/usr/bin/env bash
# bash scripts/fdbpl/xd_train.sh SEED [KEY VALUE ...]    (SHOTS-shot ImageNet, all classes; table: SUB=all bash scripts/fdbpl/build_ril.sh imagenet SEED)
source "$(dirname "$0")/common.sh"
dir=$(ril_dir "${DATASET:-imagenet}" "$1" all)
require_ril "$dir"
xd_train FDBPL "$CFG" "$1" TRAINER.FDBPL.RIL_DIR "$dir" "${@:2}"
