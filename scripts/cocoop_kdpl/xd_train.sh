#!/usr/bin/env bash
# bash scripts/cocoop_kdpl/xd_train.sh SEED [KEY VALUE ...]   (16-shot ImageNet, all classes, with the base-to-new config as KDPL)
source "$(dirname "$0")/_common.sh"
require_classnames_file
xd_train CoCoOp_KDPL "$CFG" "$1" ${KDPL_OPTS[@]+"${KDPL_OPTS[@]}"} ${CA_OPTS[@]+"${CA_OPTS[@]}"} "${@:2}"
