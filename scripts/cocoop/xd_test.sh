#!/usr/bin/env bash
# bash scripts/cocoop/xd_test.sh DATASET SEED [KEY VALUE ...]   (the 10 cross-dataset targets, imagenet and
# imagenetv2/imagenet_sketch/imagenet_a/imagenet_r; tables: python scripts/parse_results.py --xd|--dg $OUT)
source "$(dirname "$0")/../lib/protocols.sh"
xd_test CoCoOp "${CFG:-vit_b32_c4_ep10_batch1_ctxv1}" "$1" "$2" "${LOADEP:-10}" "${@:3}"
