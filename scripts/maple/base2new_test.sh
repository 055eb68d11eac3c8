#!/usr/bin/env bash
# bash scripts/maple/base2new_test.sh DATASET SEED [KEY VALUE ...]
# Evaluates the base2new_train.sh run on SUB=new (default) or base; LOADEP = the epoch (default: the last).
source "$(dirname "$0")/../lib/protocols.sh"
need_args 2 "$@"
b2n_test MaPLe "$(cfg_for MaPLe "$1" vit_b32_c2_ep5_batch4_2ctx)" "$1" "$2" "${@:3}"
