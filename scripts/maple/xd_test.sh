#!/usr/bin/env bash
# bash scripts/maple/xd_test.sh DATASET SEED [KEY VALUE ...]
# Evaluates the xd_train.sh run on DATASET (cross-dataset targets, imagenetv2/imagenet_sketch/imagenet_a/imagenet_r);
# tables: python scripts/parse_results.py --xd|--dg $OUT.
source "$(dirname "$0")/../lib/protocols.sh"
need_args 2 "$@"
xd_test MaPLe "$(cfg_for MaPLe "${SOURCE:-${DATASET:-imagenet}}" vit_b32_c2_ep5_batch4_2ctx)" "$1" "$2" "${@:3}"
