#!/usr/bin/env bash
# bash scripts/coop_kdpl/xd_train.sh SEED [KEY VALUE ...]
# Trains on all classes of the source DATASET (imagenet by default; DATASET=toyshapes in the toy world).
source "$(dirname "$0")/_common.sh"
need_args 1 "$@"
require_classnames_file
xd_train CoOp_KDPL "$(cfg_for CoOp_KDPL "${DATASET:-imagenet}" vit_b32_ctxv1)" "$1" "${KDPL_OPTS[@]}" "${CA_OPTS[@]}" "${@:2}"
