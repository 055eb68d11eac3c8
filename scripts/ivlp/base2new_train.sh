#!/usr/bin/env bash
# bash scripts/ivlp/base2new_train.sh DATASET SEED [KEY VALUE ...]   (CFG=vit_b32_c2_ep20_batch4_4+4ctx by default; DATA, SHOTS, OUT)
source "$(dirname "$0")/../lib/protocols.sh"
b2n_train IVLP "${CFG:-vit_b32_c2_ep20_batch4_4+4ctx}" "$1" "$2" "${@:3}"
