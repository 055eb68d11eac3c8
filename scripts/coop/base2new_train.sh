#!/usr/bin/env bash
# bash scripts/coop/base2new_train.sh DATASET SEED [KEY VALUE ...]
# Trains on the base classes. CFG, DATA, SHOTS, OUT from the environment (scripts/lib/protocols.sh), and N_CTX (4).
source "$(dirname "$0")/../lib/protocols.sh"
need_args 2 "$@"
b2n_train CoOp "$(cfg_for CoOp "$1" vit_b32_ep50_ctxv1)" "$1" "$2" TRAINER.COOP.N_CTX "${N_CTX:-4}" "${@:3}"
