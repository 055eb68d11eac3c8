#!/usr/bin/env bash
# bash scripts/ivlp/base2new_test.sh DATASET SEED [KEY VALUE ...]   (SUB=new|base; LOADEP = last epoch, 20)
source "$(dirname "$0")/../lib/protocols.sh"
b2n_test IVLP "${CFG:-vit_b32_c2_ep20_batch4_4+4ctx}" "$1" "$2" "${LOADEP:-20}" "${@:3}"
