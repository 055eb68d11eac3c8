#!/usr/bin/env bash
# bash scripts/cocoop/base2new_test.sh DATASET SEED [KEY VALUE ...]
# Evaluates the base2new_train.sh run on SUB=new (default) or base; LOADEP = the epoch (default: the last).
source "$(dirname "$0")/../lib/protocols.sh"
need_args 2 "$@"
b2n_test CoCoOp "$(cfg_for CoCoOp "$1" vit_b32_c4_ep10_batch1_ctxv1)" "$1" "$2" "${@:3}"
