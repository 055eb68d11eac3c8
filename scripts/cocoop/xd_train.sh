#!/usr/bin/env bash
# bash scripts/cocoop/xd_train.sh SEED [KEY VALUE ...]
# Trains on all classes of the source DATASET (imagenet by default; DATASET=toyshapes in the toy world).
source "$(dirname "$0")/../lib/protocols.sh"
need_args 1 "$@"
xd_train CoCoOp "$(cfg_for CoCoOp "${DATASET:-imagenet}" vit_b32_c4_ep10_batch1_ctxv1)" "$1" "${@:2}"
