#!/usr/bin/env bash
# bash scripts/coop/base2new_test.sh DATASET SEED [KEY VALUE ...]
# Evaluates the base2new_train.sh run on SUB=new (default) or base; LOADEP = the epoch (default: the last).
source "$(dirname "$0")/../lib/protocols.sh"
need_args 2 "$@"
b2n_test CoOp "$(cfg_for CoOp "$1" vit_b32_ep50_ctxv1)" "$1" "$2" TRAINER.COOP.N_CTX "${N_CTX:-4}" "${@:3}"
