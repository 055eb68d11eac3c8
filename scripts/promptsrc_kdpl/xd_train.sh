#!/usr/bin/env bash
# bash scripts/promptsrc_kdpl/xd_train.sh SEED [KEY VALUE ...]
# Trains on all classes of the source DATASET (imagenet by default; DATASET=toyshapes in the toy world).
source "$(dirname "$0")/_common.sh"
need_args 1 "$@"
xd_train PromptSRC_KDPL "$(cfg_for PromptSRC_KDPL "${DATASET:-imagenet}" vit_b32_c2_ep20_batch4_4+4ctx_cross_datasets)" "$1" ${KDPL_OPTS[@]+"${KDPL_OPTS[@]}"} "${@:2}"
