#!/usr/bin/env bash
# bash scripts/maple/xd_train.sh SEED [KEY VALUE ...]
# Trains on all classes of the source DATASET (imagenet by default; DATASET=toyshapes in the toy world).
source "$(dirname "$0")/../lib/protocols.sh"
need_args 1 "$@"
xd_train MaPLe "$(cfg_for MaPLe "${DATASET:-imagenet}" vit_b32_c2_ep5_batch4_2ctx)" "$1" "${@:2}"
