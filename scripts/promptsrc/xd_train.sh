#!/usr/bin/env bash
# bash scripts/promptsrc/xd_train.sh SEED [KEY VALUE ...]
# Trains on all classes of the source DATASET (imagenet by default; DATASET=toyshapes in the toy world).
source "$(dirname "$0")/../lib/protocols.sh"
need_args 1 "$@"
xd_train PromptSRC "$(cfg_for PromptSRC "${DATASET:-imagenet}" vit_b32_c2_ep20_batch4_4+4ctx_cross_datasets)" "$1" "${@:2}"
