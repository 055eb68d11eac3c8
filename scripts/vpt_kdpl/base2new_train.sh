#!/usr/bin/env bash
# bash scripts/vpt_kdpl/base2new_train.sh DATASET SEED [KEY VALUE ...]   (see _common.sh for CFG, TEACHER, CLASS_AGNOSTIC)
source "$(dirname "$0")/_common.sh"
require_classnames_file
b2n_train VPT_KDPL "$CFG" "$1" "$2" ${KDPL_OPTS[@]+"${KDPL_OPTS[@]}"} ${CA_OPTS[@]+"${CA_OPTS[@]}"} "${@:3}"
