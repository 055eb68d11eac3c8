#!/usr/bin/env bash
# bash scripts/fdbpl/base2new_test.sh DATASET SEED [KEY VALUE ...]    (SUB=new (default) or base; LOADEP = the last epoch, 50)
# Evaluation uses the positive prompts only and needs no RIL table.
source "$(dirname "$0")/common.sh"
b2n_test FDBPL "$CFG" "$1" "$2" "${LOADEP:-50}" "${@:3}"
