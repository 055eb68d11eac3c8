#!/usr/bin/env bash
# bash scripts/vpt/xd_test.sh DATASET SEED [KEY VALUE ...]   (the 10 cross-dataset targets, imagenet and
# imagenetv2/imagenet_sketch/imagenet_a/imagenet_r; tables: python scripts/parse_results.py --xd|--dg $OUT)
source "$(dirname "$0")/../lib/protocols.sh"
xd_test VPT "${CFG:-vit_b32_c2_ep5_batch4_4}" "$1" "$2" "${LOADEP:-5}" "${@:3}"
