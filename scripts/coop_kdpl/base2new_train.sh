#!/usr/bin/env bash
# bash scripts/coop_kdpl/base2new_train.sh DATASET SEED [KEY VALUE ...]
# Trains on the base classes. CFG, DATA, SHOTS, OUT from the environment (scripts/lib/protocols.sh);
# N_CTX, TEACHER, CLASS_AGNOSTIC: see _common.sh.
source "$(dirname "$0")/_common.sh"
need_args 2 "$@"
require_classnames_file
b2n_train CoOp_KDPL "$(cfg_for CoOp_KDPL "$1" vit_b32_ctxv1)" "$1" "$2" "${KDPL_OPTS[@]}" "${CA_OPTS[@]}" "${@:3}"
