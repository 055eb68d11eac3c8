#!/usr/bin/env bash
# bash scripts/coop_kdpl/xd_test.sh DATASET SEED   (cross-dataset targets and the ImageNet variants)
source "$(dirname "$0")/_common.sh"
xd_test CoOp_KDPL "$CFG" "$1" "$2" "$LOADEP" "${KDPL_OPTS[@]}"
