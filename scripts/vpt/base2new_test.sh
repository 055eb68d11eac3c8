#!/usr/bin/env bash
# bash scripts/vpt/base2new_test.sh DATASET SEED [KEY VALUE ...]   (SUB=new|base; LOADEP = last epoch, 5)
source "$(dirname "$0")/../lib/protocols.sh"
b2n_test VPT "${CFG:-vit_b32_c2_ep5_batch4_4}" "$1" "$2" "${LOADEP:-5}" "${@:3}"
