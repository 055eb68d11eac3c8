#!/usr/bin/env bash
# bash scripts/maple_kdpl/base2new_train.sh DATASET SEED [KEY VALUE ...]
# Trains on the base classes. CFG, DATA, SHOTS, OUT from the environment (scripts/lib/protocols.sh); TEACHER, CLASS_AGNOSTIC: see _common.sh.
source "$(dirname "$0")/_common.sh"
need_args 2 "$@"
require_classnames_file
b2n_train MaPLe_KDPL "$(cfg_for MaPLe_KDPL "$1" vit_b32_c2_ep5_batch4_2ctx)" "$1" "$2" ${KDPL_OPTS[@]+"${KDPL_OPTS[@]}"} ${CA_OPTS[@]+"${CA_OPTS[@]}"} "${@:3}"
