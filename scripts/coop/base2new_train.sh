#!/usr/bin/env bash
# bash scripts/coop/base2new_train.sh DATASET SEED    (CFG, DATA, SHOTS, N_CTX from the environment)
source "$(dirname "$0")/../lib/protocols.sh"
b2n_train CoOp "${CFG:-vit_b32_ep50_ctxv1}" "$1" "$2" TRAINER.COOP.N_CTX "${N_CTX:-4}"
