#!/usr/bin/env bash
# bash scripts/cocoop_kdpl/base2new_test.sh DATASET SEED [KEY VALUE ...]
# Evaluates the base2new_train.sh run on SUB=new (default) or base; LOADEP = the epoch (default: the last).
source "$(dirname "$0")/_common.sh"
need_args 2 "$@"
b2n_test CoCoOp_KDPL "$(cfg_for CoCoOp_KDPL "$1" vit_b32_c4_ep10_batch1_ctxv1)" "$1" "$2" ${KDPL_OPTS[@]+"${KDPL_OPTS[@]}"} "${@:3}"
