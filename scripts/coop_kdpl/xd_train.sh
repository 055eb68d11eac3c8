#!/usr/bin/env bash
# bash scripts/coop_kdpl/xd_train.sh SEED   (16-shot ImageNet, all classes; see _common.sh)
source "$(dirname "$0")/_common.sh"
require_classnames_file
xd_train CoOp_KDPL "$CFG" "$1" "${KDPL_OPTS[@]}" "${CA_OPTS[@]}"
