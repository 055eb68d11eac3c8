#!/usr/bin/env bash
# bash scripts/vpt_kdpl/xd_train.sh SEED [KEY VALUE ...]
# Trains on all classes of the source DATASET (imagenet by default; DATASET=toyshapes in the toy world).
source "$(dirname "$0")/_common.sh"
need_args 1 "$@"
require_classnames_file
xd_train VPT_KDPL "$(cfg_for VPT_KDPL "${DATASET:-imagenet}" vit_b32_c2_ep5_batch4_4)" "$1" ${KDPL_OPTS[@]+"${KDPL_OPTS[@]}"} ${CA_OPTS[@]+"${CA_OPTS[@]}"} "${@:2}"
