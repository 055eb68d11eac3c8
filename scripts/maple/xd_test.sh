#!/usr/bin/env bash
# bash scripts/maple/xd_test.sh DATASET SEED [KEY VALUE ...]   (the 10 cross-dataset targets, imagenet and
# imagenetv2/imagenet_sketch/imagenet_a/imagenet_r; tables: python scripts/parse_results.py --xd|--dg $OUT)
source "$(dirname "$0")/../lib/protocols.sh"
xd_test MaPLe "${CFG:-vit_b32_c2_ep5_batch4_2ctx}" "$1" "$2" "${LOADEP:-5}" "${@:3}"
