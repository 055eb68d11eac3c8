#!/usr/bin/env bash
# bash scripts/vpt/xd_train.sh SEED [KEY VALUE ...]   (16-shot ImageNet, all classes; CFG=vit_b32_c2_ep5_batch4_4 by default)
source "$(dirname "$0")/../lib/protocols.sh"
xd_train VPT "${CFG:-vit_b32_c2_ep5_batch4_4}" "$1" "${@:2}"
