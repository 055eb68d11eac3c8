#!/usr/bin/env bash
# bash scripts/cocoop/xd_test.sh DATASET SEED [KEY VALUE ...]
# Evaluates the xd_train.sh run on DATASET (cross-dataset targets, imagenetv2/imagenet_sketch/imagenet_a/imagenet_r);
# tables: python scripts/parse_results.py --xd|--dg $OUT.
source "$(dirname "$0")/../lib/protocols.sh"
need_args 2 "$@"
xd_test CoCoOp "$(cfg_for CoCoOp "${SOURCE:-${DATASET:-imagenet}}" vit_b32_c4_ep10_batch1_ctxv1)" "$1" "$2" "${@:3}"
