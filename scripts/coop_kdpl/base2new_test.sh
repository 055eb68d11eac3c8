#!/usr/bin/env bash
# bash scripts/coop_kdpl/base2new_test.sh DATASET SEED   (SUB=new|base, LOADEP=50; the teacher is not loaded)
source "$(dirname "$0")/_common.sh"
b2n_test CoOp_KDPL "$CFG" "$1" "$2" "$LOADEP" "${KDPL_OPTS[@]}"
