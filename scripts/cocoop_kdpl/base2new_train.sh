#!/usr/bin/env bash
# bash scripts/cocoop_kdpl/base2new_train.sh DATASET SEED [KEY VALUE ...]
# Trains on the base classes. CFG, DATA, SHOTS, OUT from the environment (scripts/lib/protocols.sh); TEACHER, CLASS_AGNOSTIC: see _common.sh.
source "$(dirname "$0")/_common.sh"
need_args 2 "$@"
require_classnames_file
b2n_train CoCoOp_KDPL "$(cfg_for CoCoOp_KDPL "$1" vit_b32_c4_ep10_batch1_ctxv1)" "$1" "$2" ${KDPL_OPTS[@]+"${KDPL_OPTS[@]}"} ${CA_OPTS[@]+"${CA_OPTS[@]}"} "${@:3}"
