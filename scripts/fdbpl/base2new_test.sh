#!/usr/bin/env bash
# bash scripts/fdbpl/base2new_test.sh DATASET SEED [KEY VALUE ...]
# Evaluates on SUB=new (default) or base with the positive prompts only (no RIL table); LOADEP (default: the last).
source "$(dirname "$0")/common.sh"
need_args 2 "$@"
b2n_test FDBPL "$(cfg_for FDBPL "$1" vit_b32_ep50_ctxv1)" "$1" "$2" "${@:3}"
