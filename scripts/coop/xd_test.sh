#!/usr/bin/env bash
# bash scripts/coop/xd_test.sh DATASET SEED    (cross-dataset targets and imagenetv2/imagenet_sketch/imagenet_a/imagenet_r)
source "$(dirname "$0")/../lib/protocols.sh"
xd_test CoOp "${CFG:-vit_b32_ep50_ctxv1}" "$1" "$2" "${LOADEP:-50}" TRAINER.COOP.N_CTX "${N_CTX:-4}"
