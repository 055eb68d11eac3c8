#!/usr/bin/env bash
# bash scripts/coop/xd_train.sh SEED [KEY VALUE ...]
# Trains on all classes of the source DATASET (imagenet by default; DATASET=toyshapes in the toy world).
source "$(dirname "$0")/../lib/protocols.sh"
need_args 1 "$@"
xd_train CoOp "$(cfg_for CoOp "${DATASET:-imagenet}" vit_b32_ep50_ctxv1)" "$1" TRAINER.COOP.N_CTX "${N_CTX:-4}" "${@:2}"
