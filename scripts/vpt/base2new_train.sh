#!/usr/bin/env bash
# bash scripts/vpt/base2new_train.sh DATASET SEED [KEY VALUE ...]   (CFG=vit_b32_c2_ep5_batch4_4 by default; DATA, SHOTS, OUT)
source "$(dirname "$0")/../lib/protocols.sh"
b2n_train VPT "${CFG:-vit_b32_c2_ep5_batch4_4}" "$1" "$2" "${@:3}"
