#!/usr/bin/env bash
# bash scripts/coop/base2new_test.sh DATASET SEED    (LOADEP = the training's last epoch; SUB=new|base)
source "$(dirname "$0")/../lib/protocols.sh"
b2n_test CoOp "${CFG:-vit_b32_ep50_ctxv1}" "$1" "$2" "${LOADEP:-50}" TRAINER.COOP.N_CTX "${N_CTX:-4}"
