#!/usr/bin/env bash
# bash scripts/vpt_kdpl/base2new_test.sh DATASET SEED [KEY VALUE ...]   (SUB=new|base; LOADEP = last epoch, 5)
source "$(dirname "$0")/_common.sh"
b2n_test VPT_KDPL "$CFG" "$1" "$2" "$LOADEP" "${@:3}"
