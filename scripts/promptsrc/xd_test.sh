#!/usr/bin/env bash
# bash scripts/promptsrc/xd_test.sh DATASET SEED [KEY VALUE ...]   (the 10 cross-dataset targets, imagenet and
# imagenetv2/imagenet_sketch/imagenet_a/imagenet_r; tables: python scripts/parse_results.py --xd|--dg $OUT)
source "$(dirname "$0")/../lib/protocols.sh"
xd_test PromptSRC "${CFG:-vit_b32_c2_ep20_batch4_4+4ctx_cross_datasets}" "$1" "$2" "${LOADEP:-20}" "${@:3}"
