#!/usr/bin/env bash
# bash scripts/cocoop/base2new_train.sh DATASET SEED [KEY VALUE ...]   (CFG=vit_b32_c4_ep10_batch1_ctxv1 by default; DATA, SHOTS, OUT)
source "$(dirname "$0")/../lib/protocols.sh"
b2n_train CoCoOp "${CFG:-vit_b32_c4_ep10_batch1_ctxv1}" "$1" "$2" "${@:3}"
