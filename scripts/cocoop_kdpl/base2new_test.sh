#!/usr/bin/env bash
# bash scripts/cocoop_kdpl/base2new_test.sh DATASET SEED [KEY VALUE ...]   (SUB=new|base; LOADEP = last epoch, 10)
source "$(dirname "$0")/_common.sh"
b2n_test CoCoOp_KDPL "$CFG" "$1" "$2" "$LOADEP" "${@:3}"
