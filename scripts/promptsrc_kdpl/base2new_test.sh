#!/usr/bin/env bash
# bash scripts/promptsrc_kdpl/base2new_test.sh DATASET SEED [KEY VALUE ...]   (SUB=new|base; LOADEP = last epoch, 20)
source "$(dirname "$0")/_common.sh"
b2n_test PromptSRC_KDPL "${CFG:-vit_b32_c2_ep20_batch4_4+4ctx}" "$1" "$2" "${LOADEP:-20}" ${KDPL_OPTS[@]+"${KDPL_OPTS[@]}"} "${@:3}"
