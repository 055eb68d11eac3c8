#!/usr/bin/env bash
# bash scripts/fdbpl/xd_test.sh DATASET SEED [KEY VALUE ...]
# Evaluates the xd_train.sh run on DATASET (cross-dataset targets, imagenetv2/imagenet_sketch/imagenet_a/imagenet_r).
source "$(dirname "$0")/common.sh"
need_args 2 "$@"
xd_test FDBPL "$(cfg_for FDBPL "${SOURCE:-${DATASET:-imagenet}}" vit_b32_ep50_ctxv1)" "$1" "$2" "${@:3}"
