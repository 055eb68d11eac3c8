#!/usr/bin/env bash
# bash scripts/maple/xd_train.sh SEED [KEY VALUE ...]   (16-shot ImageNet, all classes; CFG=vit_b32_c2_ep5_batch4_2ctx by default, as KDPL;
# MaPLe's own: CFG=vit_b16_c2_ep5_batch4_2ctx_cross_datasets with LOADEP=2 for the tests)
source "$(dirname "$0")/../lib/protocols.sh"
xd_train MaPLe "${CFG:-vit_b32_c2_ep5_batch4_2ctx}" "$1" "${@:2}"
