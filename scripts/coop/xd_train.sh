#!/usr/bin/env bash
# bash scripts/coop/xd_train.sh SEED    (16-shot ImageNet, all classes)
source "$(dirname "$0")/../lib/protocols.sh"
xd_train CoOp "${CFG:-vit_b32_ep50_ctxv1}" "$1" TRAINER.COOP.N_CTX "${N_CTX:-4}"
