#!/usr/bin/env bash
# bash scripts/promptsrc/xd_train.sh SEED [KEY VALUE ...]   (16-shot ImageNet, all classes; CFG=vit_b32_c2_ep20_batch4_4+4ctx_cross_datasets by default)
source "$(dirname "$0")/../lib/protocols.sh"
xd_train PromptSRC "${CFG:-vit_b32_c2_ep20_batch4_4+4ctx_cross_datasets}" "$1" "${@:2}"
