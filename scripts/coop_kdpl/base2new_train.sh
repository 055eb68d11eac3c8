#!/usr/bin/env bash
# bash scripts/coop_kdpl/base2new_train.sh DATASET SEED   (see _common.sh for CFG, N_CTX, TEACHER, CLASS_AGNOSTIC)
source "$(dirname "$0")/_common.sh"
require_classnames_file
b2n_train CoOp_KDPL "$CFG" "$1" "$2" "${KDPL_OPTS[@]}" "${CA_OPTS[@]}"
