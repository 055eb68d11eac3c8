#!/usr/bin/env bash
# bash scripts/maple/base2new_train.sh DATASET SEED [KEY VALUE ...]
# Trains on the base classes. CFG, DATA, SHOTS, OUT from the environment (scripts/lib/protocols.sh).
source "$(dirname "$0")/../lib/protocols.sh"
need_args 2 "$@"
b2n_train MaPLe "$(cfg_for MaPLe "$1" vit_b32_c2_ep5_batch4_2ctx)" "$1" "$2" "${@:3}"
