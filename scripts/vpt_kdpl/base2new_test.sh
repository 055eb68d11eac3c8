#!/usr/bin/env bash
# bash scripts/vpt_kdpl/base2new_test.sh DATASET SEED [KEY VALUE ...]
# Evaluates the base2new_train.sh run on SUB=new (default) or base; LOADEP = the epoch (default: the last).
source "$(dirname "$0")/_common.sh"
need_args 2 "$@"
b2n_test VPT_KDPL "$(cfg_for VPT_KDPL "$1" vit_b32_c2_ep5_batch4_4)" "$1" "$2" ${KDPL_OPTS[@]+"${KDPL_OPTS[@]}"} "${@:3}"
