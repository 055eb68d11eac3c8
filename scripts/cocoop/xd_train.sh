#!/usr/bin/env bash
# bash scripts/cocoop/xd_train.sh SEED [KEY VALUE ...]   (16-shot ImageNet, all classes; CFG=vit_b32_c4_ep10_batch1_ctxv1 by default)
source "$(dirname "$0")/../lib/protocols.sh"
xd_train CoCoOp "${CFG:-vit_b32_c4_ep10_batch1_ctxv1}" "$1" "${@:2}"
