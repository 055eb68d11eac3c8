#!/usr/bin/env bash
# bash scripts/fdbpl/xd_test.sh DATASET SEED [KEY VALUE ...]    (cross-dataset targets and imagenetv2/imagenet_sketch/imagenet_a/imagenet_r)
source "$(dirname "$0")/common.sh"
xd_test FDBPL "$CFG" "$1" "$2" "${LOADEP:-50}" "${@:3}"
