#!/usr/bin/env bash
# bash scripts/cocoop/base2new_test.sh DATASET SEED [KEY VALUE ...]   (SUB=new|base; LOADEP = last epoch, 10)
source "$(dirname "$0")/../lib/protocols.sh"
b2n_test CoCoOp "${CFG:-vit_b32_c4_ep10_batch1_ctxv1}" "$1" "$2" "${LOADEP:-10}" "${@:3}"
