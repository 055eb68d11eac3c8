#!/usr/bin/env bash
# bash scripts/vpt_kdpl/xd_test.sh DATASET SEED [KEY VALUE ...]   (the 10 cross-dataset targets, imagenet and
# imagenetv2/imagenet_sketch/imagenet_a/imagenet_r; tables: python scripts/parse_results.py --xd|--dg $OUT)
source "$(dirname "$0")/_common.sh"
xd_test VPT_KDPL "$CFG" "$1" "$2" "$LOADEP" "${@:3}"
