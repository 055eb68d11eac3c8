#!/usr/bin/env bash
# Shared options of the PromptSRC_KDPL scripts (sourced). Environment, besides protocols.sh's:
#   TEACHER (default: the config's TRAINER.KDPL.TEACHER, KDPL's ViT-H-14-quickgelu with DFN5B weights, or the toy
#   teacher in the toy world; any CLIP name or weight file).
# Class-agnostic KDPL is not supported with PromptSRC (use scripts/coop_kdpl for KDPL-CA).
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
KDPL_OPTS=()
if [[ -n "${TEACHER:-}" ]]; then KDPL_OPTS+=(TRAINER.KDPL.TEACHER "$TEACHER"); fi
