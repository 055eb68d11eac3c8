#!/usr/bin/env bash
# bash scripts/cocoop_kdpl/xd_test.sh DATASET SEED [KEY VALUE ...]
# Evaluates the xd_train.sh run on DATASET (cross-dataset targets, imagenetv2/imagenet_sketch/imagenet_a/imagenet_r);
# tables: python scripts/parse_results.py --xd|--dg $OUT.
source "$(dirname "$0")/_common.sh"
need_args 2 "$@"
xd_test CoCoOp_KDPL "$(cfg_for CoCoOp_KDPL "${SOURCE:-${DATASET:-imagenet}}" vit_b32_c4_ep10_batch1_ctxv1)" "$1" "$2" ${KDPL_OPTS[@]+"${KDPL_OPTS[@]}"} "${@:3}"
