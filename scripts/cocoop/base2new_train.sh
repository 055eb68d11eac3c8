#!/usr/bin/env bash
# bash scripts/cocoop/base2new_train.sh DATASET SEED [KEY VALUE ...]
# Trains on the base classes. CFG, DATA, SHOTS, OUT from the environment (scripts/lib/protocols.sh).
source "$(dirname "$0")/../lib/protocols.sh"
need_args 2 "$@"
b2n_train CoCoOp "$(cfg_for CoCoOp "$1" vit_b32_c4_ep10_batch1_ctxv1)" "$1" "$2" "${@:3}"
