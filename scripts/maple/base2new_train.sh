#!/usr/bin/env bash
# bash scripts/maple/base2new_train.sh DATASET SEED [KEY VALUE ...]   (CFG=vit_b32_c2_ep5_batch4_2ctx by default; DATA, SHOTS, OUT)
source "$(dirname "$0")/../lib/protocols.sh"
b2n_train MaPLe "${CFG:-vit_b32_c2_ep5_batch4_2ctx}" "$1" "$2" "${@:3}"
