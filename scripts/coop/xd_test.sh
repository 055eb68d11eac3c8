#!/usr/bin/env bash
# bash scripts/coop/xd_test.sh DATASET SEED [KEY VALUE ...]
# Evaluates the xd_train.sh run on DATASET (cross-dataset targets, imagenetv2/imagenet_sketch/imagenet_a/imagenet_r);
# tables: python scripts/parse_results.py --xd|--dg $OUT.
source "$(dirname "$0")/../lib/protocols.sh"
need_args 2 "$@"
xd_test CoOp "$(cfg_for CoOp "${SOURCE:-${DATASET:-imagenet}}" vit_b32_ep50_ctxv1)" "$1" "$2" TRAINER.COOP.N_CTX "${N_CTX:-4}" "${@:3}"
