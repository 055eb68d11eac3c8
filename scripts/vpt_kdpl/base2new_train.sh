#!/usr/bin/env bash
# bash scripts/vpt_kdpl/base2new_train.sh DATASET SEED [KEY VALUE ...]
# Trains on the base classes. CFG, DATA, SHOTS, OUT from the environment (scripts/lib/protocols.sh); TEACHER, CLASS_AGNOSTIC: see _common.sh.
source "$(dirname "$0")/_common.sh"
need_args 2 "$@"
require_classnames_file
b2n_train VPT_KDPL "$(cfg_for VPT_KDPL "$1" vit_b32_c2_ep5_batch4_4)" "$1" "$2" ${KDPL_OPTS[@]+"${KDPL_OPTS[@]}"} ${CA_OPTS[@]+"${CA_OPTS[@]}"} "${@:3}"
